"""Storage benchmark: the predict flow's reads and writes, per backend and size.

For N series (1,000 / 10,000 / 100,000) it times, per backend (Parquet, SQLite, PostgreSQL;
MariaDB/MySQL with ``--backends mariadb``, ``STORAGE_BENCH_MARIADB_URL``):

* ``read``: ``read_recent`` of the model's input window - 12 slots plus the same 12 slots
  one day (288 slots) and one week (2016 slots) earlier - for every series, one call;
* ``write``: ``write_forecasts`` of 12 steps for every series (a new issued_at each run).

The metrics hold 72 slots per series: the three 12-slot ranges read and the 12 slots
before each (so the filters have rows to skip). Each figure is the median of several runs.

    python bench/bench_storage.py [--quick] [--json OUT] [--sizes 1000 10000]

``run(quick)`` returns the results as a dict (for ``bench/run.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import Store, TableNames, open_store  # noqa: E402

PG_URL = os.environ.get("STORAGE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get(
    "STORAGE_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
SERVERS = {"postgres": ("PostgreSQL", PG_URL), "mariadb": ("MariaDB", MARIADB_URL)}
FREQ = pd.Timedelta("5min")
AS_OF = pd.Timestamp("2024-03-11 12:00", tz="UTC")
WINDOW = 12
EXTRA = ((288, 288 + WINDOW - 1), (2016, 2016 + WINDOW - 1))
HORIZON = 12
FULL_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """Where the figures came from."""
    import sqlite3

    import pyarrow
    import sqlalchemy

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": {
            "pandas": pd.__version__,
            "pyarrow": pyarrow.__version__,
            "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version,
        },
    }


def _slots() -> list[int]:
    """Slot offsets back from AS_OF held in the metrics (read ranges + the hour before)."""
    out: set[int] = set()
    for lo, hi in ((0, WINDOW - 1), *EXTRA):
        out.update(range(lo, hi + 1 + WINDOW))
    return sorted(out)


def metrics_frame(n_series: int, seed: int = 0) -> pd.DataFrame:
    """Metrics for ``n_series`` series at the benchmark's 72 slots."""
    rng = np.random.default_rng(seed)
    offsets = np.array(_slots())
    ts = _utc_us(AS_OF) - offsets * _FREQ_US
    ids = np.array([f"svc-{i:06d}" for i in range(n_series)], dtype=object)
    n = n_series * len(offsets)
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, len(offsets)),
            "ts": pd.to_datetime(np.tile(ts, n_series), unit="us", utc=True),
            "value": rng.gamma(2.0, 50.0, n),
        }
    )


def forecast_frame(n_series: int, issued: pd.Timestamp) -> pd.DataFrame:
    """12 steps for each series, issued at ``issued``."""
    steps = np.arange(1, HORIZON + 1)
    ids = np.array([f"svc-{i:06d}" for i in range(n_series)], dtype=object)
    yhat = np.random.default_rng(1).gamma(2.0, 50.0, n_series * HORIZON)
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, HORIZON),
            "issued_at": issued,
            "target_ts": pd.to_datetime(
                np.tile(_utc_us(issued) + steps * _FREQ_US, n_series), unit="us", utc=True
            ),
            "step": np.tile(steps, n_series),
            "yhat": yhat,
            "yhat_lower": yhat * 0.8,
            "yhat_upper": yhat * 1.2,
            "level": 0.8,
            "model_version": "bench",
        }
    )


_FREQ_US = int(FREQ / pd.Timedelta(microseconds=1))


def _utc_us(ts: pd.Timestamp) -> int:
    return int(ts.as_unit("ns").value) // 1000


def _pg_reachable(backend: str = "postgres") -> str | None:
    import sqlalchemy as sa

    what, raw = SERVERS[backend]
    url = sa.engine.make_url(raw)
    if url.host not in ("127.0.0.1", "localhost", "::1"):
        return f"refusing non-loopback host {url.host!r}"
    eng = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with eng.connect():
            return None
    except Exception as exc:  # noqa: BLE001
        return f"{what} unreachable ({type(exc).__name__})"
    finally:
        eng.dispose()


def _open(backend: str, workdir: Path) -> Store:
    s = uuid.uuid4().hex[:8]
    tables = TableNames(f"bm_{s}", f"bf_{s}", f"ba_{s}")
    url = {
        "parquet": f"parquet://{workdir / f'pq_{s}'}",
        "sqlite": f"sqlite:///{workdir / f'bench_{s}.db'}",
        "postgres": PG_URL,
        "mariadb": MARIADB_URL,
    }[backend]
    return open_store(url, tables=tables)


def bench_one(backend: str, n_series: int, repeats: int, workdir: Path) -> dict[str, Any]:
    """Load metrics, then time ``repeats`` recent-window reads and forecast writes."""
    store = _open(backend, workdir)
    try:
        t = time.perf_counter()
        store.write_metrics(metrics_frame(n_series))
        load_s = time.perf_counter() - t
        reads, writes, rows = [], [], 0
        for i in range(repeats):
            t = time.perf_counter()
            window = store.read_recent(AS_OF, WINDOW, extra_ranges=EXTRA)
            reads.append(time.perf_counter() - t)
            rows = len(window)
            frame = forecast_frame(n_series, AS_OF + i * FREQ)
            t = time.perf_counter()
            store.write_forecasts(frame)
            writes.append(time.perf_counter() - t)
        expected = n_series * 3 * WINDOW
        if rows != expected:
            raise RuntimeError(f"{backend}: read {rows} rows, expected {expected}")
        return {
            "backend": backend,
            "n_series": n_series,
            "rows_read": rows,
            "rows_written": n_series * HORIZON,
            "read_s": statistics.median(reads),
            "write_s": statistics.median(writes),
            "read_plus_write_s": statistics.median(reads) + statistics.median(writes),
            "load_metrics_s": load_s,
            "runs": repeats,
        }
    finally:
        if hasattr(store, "drop_all"):
            store.drop_all()
        store.close()


def run(
    quick: bool = False,
    sizes: tuple[int, ...] | None = None,
    backends: tuple[str, ...] = ("parquet", "sqlite", "postgres"),
    repeats: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"machine": ..., "results": [...], "skipped": {...}}``."""
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    skipped: dict[str, str] = {}
    for server in SERVERS:
        reason = _pg_reachable(server) if server in backends else None
        if reason:
            skipped[server] = reason
            backends = tuple(b for b in backends if b != server)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
        for n in sizes:
            reps = repeats or (3 if quick or n >= 100_000 else 5)
            for backend in backends:
                results.append(bench_one(backend, n, reps, Path(tmp)))
    return {
        "benchmark": "storage",
        "command": "python bench/bench_storage.py" + (" --quick" if quick else ""),
        "machine": machine(),
        "window": {"slots": WINDOW, "extra_ranges": [list(r) for r in EXTRA]},
        "horizon": HORIZON,
        "results": results,
        "skipped": skipped,
    }


def table(report: dict[str, Any]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| backend | series | rows read | read (s) | rows written | write (s) | read+write (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['backend']} | {r['n_series']:,} | {r['rows_read']:,} | {r['read_s']:.3f} | "
            f"{r['rows_written']:,} | {r['write_s']:.3f} | {r['read_plus_write_s']:.3f} |"
        )
    for b, why in report["skipped"].items():
        lines.append(f"| {b} | skipped: {why} | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 and 10,000 series, 3 runs")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--sizes", type=int, nargs="+", help="numbers of series")
    ap.add_argument(
        "--backends", nargs="+", default=["parquet", "sqlite", "postgres"], help="backends"
    )
    args = ap.parse_args(argv)
    report = run(args.quick, tuple(args.sizes) if args.sizes else None, tuple(args.backends))
    m = report["machine"]
    print(f"storage benchmark - {m['date']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}")
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
