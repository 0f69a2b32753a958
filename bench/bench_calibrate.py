"""The predict run's live-recalibration step alone at fleet size (issue 14): a store
holding a full window of scored forecasts (13 origins x 12 steps x `series`, scored), then
the ``recalibrate-intervals`` task body run on one origin's batch, timed `repeat` times.

    python -m bench.bench_calibrate '{"backend": "sqlite", "series": 10000, "root": "/tmp/bc"}'

    python -m bench.bench_calibrate '{"batch": 48, "series": 10000}'

The second form times ``lstm.livecal.recalibrate_batch`` alone on a batch of that many
origins (catch-up, backfill: each origin's window adds the earlier ones' rows), no store.

Reports the median seconds of the step, the scores it read and how (``window_slots`` 1:
the newest target slot by primary key), and for comparison the old read of the whole
target slot (``read_scores`` without ``per_step``: every scored row of it). The
PostgreSQL tables get unique names and are dropped afterwards; the work folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
F = pd.Timedelta("5min")
FIRST = pd.Timestamp("2026-01-02 00:00", tz="UTC")


def _forecasts(ids: np.ndarray, issued: pd.Timestamp, rng) -> pd.DataFrame:
    steps = np.arange(1, 13)
    yhat = rng.normal(100.0, 1.0, len(ids) * 12)
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, 12),
            "issued_at": issued,
            "target_ts": issued + F * np.tile(steps, len(ids)),
            "step": np.tile(steps, len(ids)),
            "yhat": yhat,
            "yhat_lower": yhat - 6.0,
            "yhat_upper": yhat + 6.0,
            "level": 0.8,
            "model_version": "v1",
        }
    )


def run(backend: str, n: int, root: str, repeat: int = 5) -> dict:
    work = Path(root) / f"cal-{backend}-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sfx = uuid.uuid4().hex[:8]
    url = {"sqlite": f"sqlite:///{work / 'f.db'}", "parquet": str(work / "lake")}.get(
        backend, PG_URL
    )
    os.environ.update(
        FORECAST_STORE_URL=url,
        FORECAST_METRICS_TABLE=f"bcm_{sfx}",
        FORECAST_FORECASTS_TABLE=f"bcf_{sfx}",
        FORECAST_ACCURACY_TABLE=f"bca_{sfx}",
    )
    from tasks.calibration_tasks import recalibrate_intervals
    from tasks.common import get_store
    from tasks.settings import get_settings

    settings = get_settings()
    store = get_store(settings)
    try:
        rng = np.random.default_rng(0)
        ids = np.array([f"svc-{i:06d}" for i in range(n)], dtype=object)
        slots = [FIRST - F * k for k in range(14, -1, -1)]
        store.write_metrics(
            pd.DataFrame(
                {
                    "series_id": np.tile(ids, len(slots)),
                    "ts": np.repeat(pd.DatetimeIndex(slots), n),
                    "value": rng.normal(100.0, 5.0, n * len(slots)),
                }
            )
        )
        for k in range(1, 14):
            store.write_forecasts(_forecasts(ids, FIRST - F * k, rng))
        store.score_forecasts(FIRST - F, lookback_slots=14)
        frame = _forecasts(ids, FIRST, rng)
        times, report = [], {}
        for _ in range(repeat):
            t0 = time.perf_counter()
            _, report = recalibrate_intervals.fn(settings, frame, "v1", [FIRST])
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        whole = store.read_scores("v1", FIRST - F, FIRST - F)
        whole_s = time.perf_counter() - t0
        return {
            "backend": backend,
            "series": n,
            "calibrate_s": round(statistics.median(times), 4),
            "calibrate_runs_s": [round(t, 4) for t in times],
            "scores_read": report["scores_read"],
            "window_slots": report["window_slots"],
            "whole_slot_read_s": round(whole_s, 4),
            "whole_slot_rows": len(whole),
        }
    finally:
        if hasattr(store, "drop_all") and backend == "postgres":
            store.drop_all()
        shutil.rmtree(work, ignore_errors=True)


def run_batch(origins: int, n: int) -> dict:
    """Seconds of ``recalibrate_batch`` over `origins` consecutive origins of `n` series."""
    from lstm.livecal import SCORE_COLUMNS, LiveCalibration, recalibrate_batch

    rng = np.random.default_rng(0)
    ids = np.array([f"svc-{i:06d}" for i in range(n)], dtype=object)
    slots = [FIRST + F * k for k in range(origins)]
    frame = pd.concat([_forecasts(ids, o, rng) for o in slots], ignore_index=True)
    ts = [FIRST + F * k for k in range(origins + 1)]
    actuals = pd.DataFrame(
        {
            "series_id": np.tile(ids, len(ts)),
            "ts": np.repeat(pd.DatetimeIndex(ts), n),
            "value": rng.normal(100.0, 5.0, n * len(ts)),
        }
    )
    t0 = time.perf_counter()
    out, _ = recalibrate_batch(
        frame, pd.DataFrame(columns=SCORE_COLUMNS), actuals, 12, LiveCalibration(), F, 2016
    )
    secs = time.perf_counter() - t0
    return {
        "batch_origins": origins,
        "series": n,
        "seconds": round(secs, 3),
        "per_origin_s": round(secs / origins, 4),
        "mean_factor": round(float(out["interval_scale"].mean()), 4),
    }


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    if "batch" in args:
        print(json.dumps(run_batch(int(args["batch"]), int(args["series"]))))
        sys.exit(0)
    out = run(args["backend"], int(args["series"]), args["root"], int(args.get("repeat", 5)))
    print(json.dumps(out))
