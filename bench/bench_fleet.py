"""Fleet scale (issue 18): load N series x D days into a store with the product's own
streaming writer, then run the retrain flow on it, each phase in its own process so the
peak RSS is that phase's alone.

    python -m bench.bench_fleet load    '{"backend": "parquet", "series": 10000, "root": "/tmp/fleet"}'
    python -m bench.bench_fleet retrain '{"backend": "parquet", "series": 10000, "root": "/tmp/fleet"}'
    python -m bench.bench_fleet drop    '{"backend": "postgres", "series": 10000, "root": "/tmp/fleet"}'

Run each under `/usr/bin/time -v` for the peak RSS of the whole process tree's largest
member (the figure BENCHMARKS.md quotes); the JSON line printed last also carries the
process's own `ru_maxrss`. The retrain uses the product's defaults (FORECAST_TRAIN_SERIES,
FORECAST_HOLDOUT_SERIES, FORECAST_TRAIN_MAX_SECONDS) unless the environment sets them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from bench.common import AS_OF, peak_rss_mb

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BLOCK_ROWS = 1_000_000


def _env(backend: str, n_series: int, root: Path) -> str:
    """Point the product's settings at this size's store; return the store URL."""
    work = root / f"{backend}-{n_series}"
    work.mkdir(parents=True, exist_ok=True)
    os.environ["FORECAST_MODELS_DIR"] = str(work / "models")
    if backend == "postgres":
        for kind, prefix in (("METRICS", "fm"), ("FORECASTS", "ff"), ("ACCURACY", "fa")):
            os.environ[f"FORECAST_{kind}_TABLE"] = f"{prefix}_fleet_{n_series}"
        return PG_URL
    if backend == "parquet":
        return str(work / "lake")
    if backend == "sqlite":
        return f"sqlite:///{work / 'forecast.db'}"
    raise ValueError(f"backend must be parquet, postgres or sqlite (got {backend!r})")


def load(backend: str, n_series: int, root: Path, days: float = 30) -> dict:
    from lstm import MetricsGenerator
    from tasks.common import get_store
    from tasks.settings import get_settings

    url = _env(backend, n_series, root)
    settings = get_settings(store_url=url)
    step = pd.Timedelta(settings.freq)
    slots = int(pd.Timedelta(days=days) / step)
    gen = MetricsGenerator(n_series, days, settings.freq, seed=0, start=AS_OF - step * (slots - 1))
    block = max(12, min(288, (BLOCK_ROWS // n_series) // 12 * 12))
    store = get_store(settings)
    t0, rows = time.perf_counter(), 0
    for frame in gen.blocks(block):
        rows += store.write_metrics(frame)
    return {
        "phase": "load",
        "backend": backend,
        "series": n_series,
        "days": days,
        "rows": rows,
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def retrain(backend: str, n_series: int, root: Path) -> dict:
    from flows.retrain import retrain as retrain_flow
    from tasks.settings import get_settings

    url = _env(backend, n_series, root)
    settings = get_settings(store_url=url)
    t0 = time.perf_counter()
    r = retrain_flow(store_url=url, history_end=AS_OF.to_pydatetime())
    wall = time.perf_counter() - t0
    return {
        "phase": "retrain",
        "backend": backend,
        "series": n_series,
        "train_series": settings.train_series,
        "holdout_series": settings.holdout_series,
        "train_max_seconds": settings.train_max_seconds,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "promoted": r["promoted"],
        "comparison": r["comparison"],
        **{k: r[k] for k in ("series", "trained_series", "unseen_series")},
        "trained_series_mase": r["trained_series_mase"],
        "unseen_series_mase": r["unseen_series_mase"],
        "future_rows_ignored": r["future_rows_ignored"],
    }


def drop(backend: str, n_series: int, root: Path) -> dict:
    import shutil

    from tasks.common import get_store
    from tasks.settings import get_settings

    url = _env(backend, n_series, root)
    if backend == "postgres":
        get_store(get_settings(store_url=url)).drop_all()
    shutil.rmtree(root / f"{backend}-{n_series}", ignore_errors=True)
    return {"phase": "drop", "backend": backend, "series": n_series}


if __name__ == "__main__":
    phase, args = sys.argv[1], json.loads(sys.argv[2])
    fn = {"load": load, "retrain": retrain, "drop": drop}[phase]
    kwargs = {"days": float(args["days"])} if phase == "load" and "days" in args else {}
    out = fn(args["backend"], int(args["series"]), Path(args["root"]), **kwargs)
    print(json.dumps(out, default=str))
