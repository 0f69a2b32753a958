"""PostgreSQL forecast writes through binary ``COPY`` against CSV ``COPY``, alternating in
one process: N series x 12 steps written into a fresh slot of the forecasts table (the
predict run's write: the slot's rows deleted, then the COPY, in one transaction).

    python -m bench.bench_pg_copy '{"series": 100000, "repeat": 3}'
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid

import numpy as np
import pandas as pd

from bench.common import AS_OF, STEP, machine, peak_rss_mb

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def forecast_rows(n_series: int, issued: pd.Timestamp, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.array([f"svc-{i:07d}" for i in range(n_series)], dtype=object)
    steps = np.tile(np.arange(1, 13), n_series)
    yhat = rng.gamma(2.0, 50.0, n_series * 12)
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, 12),
            "issued_at": issued,
            "target_ts": issued + STEP * steps,
            "step": steps,
            "yhat": yhat,
            "yhat_lower": yhat * 0.8,
            "yhat_upper": yhat * 1.2,
            "level": 0.8,
            "model_version": "bench",
        }
    )


def run(n_series: int, repeat: int) -> dict:
    import storage.dialect_postgres as pgd
    from storage import TableNames, open_store

    suffix = uuid.uuid4().hex[:8]
    store = open_store(
        PG_URL,
        tables=TableNames(
            metrics=f"bm_{suffix}", forecasts=f"bf_{suffix}", accuracy=f"ba_{suffix}"
        ),
    )
    times: dict[str, list[float]] = {"binary": [], "csv": []}
    default = pgd.COPY_BINARY
    try:
        for k in range(2 * repeat):
            fmt = "binary" if k % 2 == 0 else "csv"
            pgd.COPY_BINARY = fmt == "binary"
            issued = AS_OF + STEP * k
            frame = forecast_rows(n_series, issued, k)
            t0 = time.perf_counter()
            store.write_forecasts(frame, slots=[issued])
            times[fmt].append(time.perf_counter() - t0)
    finally:
        pgd.COPY_BINARY = default
        store.drop_all()
        store.close()
    med = {f: statistics.median(v) for f, v in times.items()}
    return {
        "series": n_series,
        "rows": n_series * 12,
        "binary_s": med["binary"],
        "csv_s": med["csv"],
        "ratio": med["binary"] / med["csv"],
        "runs": times,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }


if __name__ == "__main__":
    args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    print(json.dumps(run(int(args.get("series", 100_000)), int(args.get("repeat", 3)))))
