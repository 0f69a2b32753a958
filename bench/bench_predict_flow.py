"""The predict flow end to end, per backend and size: read the latest windows, forecast,
upsert, score; 2 days of 5-minute history per series in the store.

    python -m bench.bench_predict_flow '{"backend": "sqlite", "series": 10000, "root": "/tmp/b"}'
    python -m bench.bench_predict_flow '{"backend": "parquet", "series": 1000000, "root": "/tmp/b", "read_slots_only": true}'

Each size runs in fresh processes: one loads the metrics and registers the champion (not
timed), another runs the flow three times on consecutive slots (no catch-up) and reports
the median body time split into read / features / model / write / scoring, and its peak
RSS (the flow's, not the loader's).

Live recalibration (issue 14): ``"scored_window": true`` also fills, before the timed runs,
the scored forecasts a steady-state run's recalibration reads (every step of every series
over its whole window), so ``calibrate_s`` is its cost at full size;
``"calibration": false`` runs with FORECAST_ONLINE_CALIBRATION=false to compare:

    python -m bench.bench_predict_flow '{"backend": "sqlite", "series": 10000, "root": "/tmp/b", "scored_window": true}'
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from pathlib import Path

import pandas as pd

from bench.common import AS_OF, STEP, bench_forecaster, flow_medians, peak_rss_mb

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HISTORY_DAYS = 2
CHUNK = 10_000


def store_url(backend: str, root: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{root / 'forecast.db'}"
    if backend == "parquet":
        return str(root / "lake")
    if backend == "postgres":
        return PG_URL
    raise ValueError(backend)


def load_metrics(store, n_series: int) -> float:
    """2 days of synthetic metrics ending at AS_OF for n_series series, written in chunks."""
    from lstm import generate_metrics

    slots = int(pd.Timedelta(days=HISTORY_DAYS) / STEP)
    start = AS_OF - STEP * (slots - 1)
    t0 = time.perf_counter()
    for c in range(0, n_series, CHUNK):
        k = min(CHUNK, n_series - c)
        frame = generate_metrics(
            k, HISTORY_DAYS, seed=c, start=start, id_prefix=f"c{c // CHUNK:03d}"
        )
        store.write_metrics(frame)
    return time.perf_counter() - t0


def load_read_slots(store, n_series: int, spec, repeat: int) -> float:
    """Only the rows the `repeat` timed runs read (their windows and lag ranges), written a
    block of at most 12 slots at a time for every series: what makes 1,000,000 series
    loadable in minutes. Actuals of the forecast targets are not written, so these runs
    score nothing (the scoring figure comes from the full-history sizes)."""
    import numpy as np

    origins = [(AS_OF - STEP * (repeat - 1 - k)).value // spec.freq_ns for k in range(repeat)]
    last, ranges = spec.read_ranges(origins)
    slots = np.unique(np.concatenate([last - np.arange(lo, hi + 1) for lo, hi in ranges]))
    rng = np.random.default_rng(0)
    width = len(str(n_series))
    ids = np.array([f"svc-{i:0{width}d}" for i in range(n_series)], dtype=object)
    level = np.exp(rng.uniform(np.log(5), np.log(5000), n_series))
    t0 = time.perf_counter()
    write = store.write_metrics
    # contiguous runs of slots, cut into blocks of <= 12 (one Parquet hour file each)
    breaks = np.flatnonzero(np.diff(slots) != 1) + 1
    for run in np.split(slots, breaks):
        for i in range(0, len(run), 12):
            block = run[i : i + 12]
            k = len(block)
            write(
                pd.DataFrame(
                    {
                        "series_id": np.repeat(ids, k),
                        "ts": pd.DatetimeIndex(np.tile(block, n_series) * spec.freq_ns, tz="UTC"),
                        "value": rng.poisson(np.repeat(level, k)).astype(np.float64),
                        "error_rate": rng.uniform(0, 0.05, n_series * k),
                    }
                )
            )
            if getattr(store, "backend", None) == "postgres":
                write = _pg_copy_writer(store)  # the table exists now
    return time.perf_counter() - t0


def _pg_copy_writer(store):
    """Metrics frames ``COPY``'d straight into the PostgreSQL metrics table, without the
    checks and the upsert of ``write_metrics`` (the loader's blocks hold disjoint keys of
    valid synthetic rows): loading 60 million rows took 658 s through ``write_metrics``."""
    import pyarrow as pa
    import sqlalchemy as sa

    def write(frame: pd.DataFrame) -> int:
        tab = pa.table(
            {
                "series_id": pa.array(frame["series_id"], pa.string()),
                "ts": pa.array(frame["ts"]).cast(pa.timestamp("us", tz="UTC")),
                "value": pa.array(frame["value"], pa.float64()),
                "error_rate": pa.array(frame["error_rate"], pa.float64()),
            }
        )
        with store.engine.begin() as conn:
            table = sa.Table(store.tables.metrics, sa.MetaData(), autoload_with=conn)
            return store.dialect.bulk_insert(conn, table, tab, {"ts": None}, lambda _: None)

    return write


def load_scored_window(
    store, n_series: int, repeat: int, version: str, window: int = 2000
) -> float:
    """Forecasts issued at the slots whose targets the first timed run's recalibration
    reads (``tasks.calibration_tasks.window_slots``: ceil(window / series) target slots up
    to the slot before its origin), and the later runs' scoring needs, all 12 steps, scored
    against the metrics: a full window of scores, as after a day of 5-minute runs."""
    import numpy as np

    first = AS_OF - STEP * (repeat - 1)
    span = max(1, -(-window // n_series))
    slots = [first - STEP * k for k in range(1, span + 13)]
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    steps = np.arange(1, 13)
    actual = store.read_metrics(start=min(slots), end=first - STEP)
    level = actual.groupby("series_id")["value"].median()
    ids = level.index.to_numpy(dtype=object)
    for issued in slots:
        yhat = np.repeat(level.to_numpy(), 12) * rng.normal(1.0, 0.05, len(ids) * 12)
        half = np.abs(yhat) * 0.1 + 1e-6
        store.write_forecasts(
            pd.DataFrame(
                {
                    "series_id": np.repeat(ids, 12),
                    "issued_at": issued,
                    "target_ts": issued + STEP * np.tile(steps, len(ids)),
                    "step": np.tile(steps, len(ids)),
                    "yhat": yhat,
                    "yhat_lower": yhat - half,
                    "yhat_upper": yhat + half,
                    "level": 0.8,
                    "model_version": version,
                }
            )
        )
    store.score_forecasts(first - STEP, lookback_slots=span + 12)
    return time.perf_counter() - t0


def set_tables(suffix: str) -> None:
    import os

    os.environ["FORECAST_METRICS_TABLE"] = f"bm_{suffix}"
    os.environ["FORECAST_FORECASTS_TABLE"] = f"bf_{suffix}"
    os.environ["FORECAST_ACCURACY_TABLE"] = f"ba_{suffix}"


def prepare(
    backend: str,
    n_series: int,
    work: Path,
    suffix: str,
    read_slots_only: bool = False,
    scored_window: bool = False,
) -> dict:
    """Load the metrics and register a champion (the part that is not timed)."""
    set_tables(suffix)
    from lstm import ModelRegistry
    from tasks.common import get_store
    from tasks.settings import get_settings

    store = get_store(get_settings(store_url=store_url(backend, work)))
    model = bench_forecaster()
    if read_slots_only:
        load_s = load_read_slots(store, n_series, model.spec, 3)
    else:
        load_s = load_metrics(store, n_series)
    registry = ModelRegistry(work / "models")
    version = registry.save(model)
    registry.promote(version, "benchmark")
    scored_s = None
    if scored_window:
        scored_s = load_scored_window(store, n_series, 3, version)
    return {
        "load_metrics_s": load_s,
        "load_scored_window_s": scored_s,
        "loader_peak_rss_mb": peak_rss_mb(),
        "read_slots_only": read_slots_only,
    }


def run_one(
    backend: str,
    n_series: int,
    root: str,
    repeat: int = 3,
    read_slots_only: bool = False,
    scored_window: bool = False,
    calibration: bool = True,
) -> dict:
    from bench.common import run_isolated

    work = Path(root) / f"{backend}-{n_series}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    suffix = uuid.uuid4().hex[:8]
    loaded = run_isolated(
        "bench.bench_predict_flow",
        {
            "phase": "prepare",
            "backend": backend,
            "series": n_series,
            "work": str(work),
            "suffix": suffix,
            "read_slots_only": read_slots_only,
            "scored_window": scored_window,
        },
        timeout=7200,
    )
    set_tables(suffix)
    import os

    os.environ["FORECAST_ONLINE_CALIBRATION"] = "true" if calibration else "false"
    from flows.predict import predict

    url = store_url(backend, work)

    runs = []
    for k in range(repeat):
        as_of = AS_OF - STEP * (repeat - 1 - k)  # consecutive new slots, like the schedule
        out = predict(
            as_of=as_of.to_pydatetime(),
            store_url=url,
            models_dir=str(work / "models"),
            catch_up_slots=0,
        )
        assert out["series_forecast"] == n_series, out
        runs.append(out)
    med = flow_medians(runs)
    body = med["body_s"]
    result = {
        "backend": backend,
        "series": n_series,
        "body_s": body,
        "read_s": med["read_s"],
        "features_s": med["features_s"],
        "model_s": med["model_s"],
        "frame_s": med["frame_s"],
        "write_s": med["write_s"],
        "score_s": med["score_s"],
        "calibrate_s": med.get("calibrate_s"),
        "calibration": calibration,
        "scores_read": runs[-1].get("calibration", {}).get("scores_read"),
        "alerts_s": med.get("alerts_s"),
        "scored_rows": runs[-1]["scored"],
        "peak_rss_mb": peak_rss_mb(),
        "runs": len(runs),
        **loaded,
    }
    cleanup(backend, work)
    return result


def cleanup(backend: str, work: Path) -> None:
    """Drop the run's PostgreSQL tables (names from `set_tables`) and its work folder: the
    shared server and the disk keep nothing of a benchmark."""
    if backend == "postgres":
        from tasks.common import get_store
        from tasks.settings import get_settings

        get_store(get_settings(store_url=store_url(backend, work))).drop_all()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    if args.get("phase") == "prepare":
        out = prepare(
            args["backend"],
            int(args["series"]),
            Path(args["work"]),
            args["suffix"],
            bool(args.get("read_slots_only")),
            bool(args.get("scored_window")),
        )
    else:
        out = run_one(
            args["backend"],
            int(args["series"]),
            args["root"],
            int(args.get("repeat", 3)),
            bool(args.get("read_slots_only")),
            bool(args.get("scored_window")),
            bool(args.get("calibration", True)),
        )
    print(json.dumps(out))
