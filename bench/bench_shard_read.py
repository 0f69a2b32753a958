"""A shard's read of the model's input window: read only its series (the push-down) versus
read the whole window and mask it (what the first sharded build did), per store.

    python -m bench.bench_shard_read '{"backend": "parquet", "series": 100000, "root": "/tmp/b", "shards": [1, 2, 4]}'

Metrics are loaded once for the slots three predict runs read (`load_read_slots`). Each
(mode, K) is timed in a fresh process (clean peak RSS): shard 0 of K reads the window of
the newest slot, the same call the predict flow makes (`read_windows`), median of 3. K=1
is the unsharded read. ``backend``: parquet, sqlite or postgres (its tables dropped after).
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pandas as pd

from bench.bench_predict_flow import cleanup, set_tables, store_url
from bench.common import AS_OF, median_time, peak_rss_mb, run_isolated

REPEAT = 3


def read_once(args: dict) -> dict:
    """The child side: one mode and shard count, timed."""
    set_tables(args["suffix"])
    from storage import Shard, Store
    from tasks.common import get_store
    from tasks.settings import get_settings

    store = get_store(get_settings(store_url=args["url"]), create=False)
    if args["mode"] == "mask":  # the whole window, then the hash (the generic version)
        type(store)._read_shard_metrics = Store._read_shard_metrics
    from bench.common import bench_forecaster

    spec = bench_forecaster().spec
    last, ranges = spec.read_ranges([AS_OF.value // spec.freq_ns])
    k = int(args["shards"])
    shard = None if k == 1 else Shard(0, k)
    as_of = pd.Timestamp(last * spec.freq_ns, tz="UTC")  # as `read_windows` does
    seconds, frame = median_time(
        lambda: store.read_recent(as_of, 1, extra_ranges=ranges, shard=shard), REPEAT
    )
    return {"read_s": seconds, "rows": len(frame), "peak_rss_mb": peak_rss_mb()}


def run(backend: str, n_series: int, root: str, ks: list[int]) -> dict:
    work = Path(root) / f"shard-read-{backend}-{n_series}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    suffix = uuid.uuid4().hex[:8]
    prep = {"backend": backend, "series": n_series, "work": str(work), "suffix": suffix}
    loaded = run_isolated(
        "bench.bench_predict_flow", {"phase": "prepare", **prep, "read_slots_only": True}, 7200
    )
    common = {"suffix": suffix, "url": store_url(backend, work)}
    out: dict = {"backend": backend, "series": n_series, "load": loaded, "reads": []}
    try:
        for k in ks:
            for mode in ("mask", "pushdown") if k > 1 else ("whole",):
                args = {**common, "phase": "read", "mode": mode, "shards": k}
                out["reads"].append(
                    {"shards": k, "mode": mode, **run_isolated("bench.bench_shard_read", args)}
                )
    finally:
        set_tables(suffix)
        cleanup(backend, work)
    return out


if __name__ == "__main__":
    a = json.loads(sys.argv[1])
    if a.get("phase") == "read":
        result = read_once(a)
    else:
        result = run(a["backend"], int(a["series"]), a["root"], list(a.get("shards", [1, 2])))
    print(json.dumps(result))
