"""Sharded predict: one slot's predict as K shard runs, each in its own fresh process (as
a process work pool's worker starts them), all at once, against one local Prefect server.

    python -m bench.bench_sharded '{"backend": "parquet", "series": 100000, "root": "/tmp/b", "shards": [1, 2]}'

Per K and slot (3 consecutive slots, median reported; ``"repeat": 1`` for one slot): the
slot's wall time from starting the K processes to the last one's end, each shard's flow body
(`seconds` of its summary: read, forecast, write), and what each shard run costs around its
body: the process start (interpreter, imports of Prefect, torch, pandas) and Prefect's flow-
and task-run bookkeeping against the server (the flow call's wall time minus its body). K=1
runs the unsharded flow in the same way, so the figures compare like with like. Metrics are
loaded once, for the slots read (`read_slots_only` of bench_predict_flow: nothing is
scored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.bench_predict_flow import set_tables, store_url
from bench.common import AS_OF, ROOT, STEP, medians, peak_rss_mb, run_isolated

REPEAT = 3


def shard_run(args: dict) -> dict:
    """One shard's flow run in this fresh process (the child side)."""
    set_tables(args["suffix"])
    from flows.predict import predict

    ready = time.time()  # the interpreter started and Prefect, torch, pandas imported

    shards = int(args["shards"])
    where = {} if shards == 1 else {"shard": int(args["shard"]), "shards": shards}
    t0 = time.perf_counter()
    out = predict(
        as_of=args["as_of"],
        store_url=args["url"],
        models_dir=args["models"],
        catch_up_slots=0,
        score=False,
        **where,
    )
    call = time.perf_counter() - t0
    return {
        "startup_s": ready - float(args["launched"]),
        "call_s": call,
        "body_s": out["seconds"],
        "prefect_s": call - out["seconds"],
        "series": out["series_forecast"],
        "timings": out["timings"],
        "peak_rss_mb": peak_rss_mb(),
    }


def one_slot(k: int, as_of: str, common: dict) -> dict:
    """Start the K shard processes at once; wait for all."""
    t0 = time.perf_counter()
    launched = time.time()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_sharded",
                json.dumps(
                    {
                        **common,
                        "phase": "shard",
                        "shard": i,
                        "shards": k,
                        "as_of": as_of,
                        "launched": launched,
                    }
                ),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        )
        for i in range(k)
    ]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"shard run failed:\n{stderr[-3000:]}")
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return {"wall_s": time.perf_counter() - t0, "shards": outs}


def run(backend: str, n_series: int, root: str, ks: list[int], repeat: int = REPEAT) -> dict:
    from deployments.serve import local_prefect_server

    work = Path(root) / f"sharded-{backend}-{n_series}"
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
            "read_slots_only": True,
        },
        timeout=7200,
    )
    common = {
        "suffix": suffix,
        "url": store_url(backend, work),
        "models": str(work / "models"),
    }
    results: dict = {"backend": backend, "series": n_series, "load": loaded, "by_shards": {}}
    with local_prefect_server(work / "prefect") as api:
        os.environ["PREFECT_API_URL"] = api
        for k in ks:
            slots = []
            for r in range(repeat):
                as_of = (AS_OF - STEP * (repeat - 1 - r)).isoformat()
                slot = one_slot(k, as_of, common)
                assert sum(s["series"] for s in slot["shards"]) == n_series, slot
                slots.append(slot)
            per = [s for slot in slots for s in slot["shards"]]
            steps = medians([x["timings"] for x in per], ("read_s", "forecast_s", "write_s"))
            shard = medians(per, ("body_s", "startup_s", "prefect_s"))
            results["by_shards"][k] = {
                "slot_wall_s": medians(slots, ["wall_s"])["wall_s"],
                **{f"shard_{key}": v for key, v in {**shard, **steps}.items()},
                "shard_peak_rss_mb_each": [x["peak_rss_mb"] for x in per],
                "shard_peak_rss_mb": max(x["peak_rss_mb"] for x in per),
                "runs": len(per),
            }
        os.environ.pop("PREFECT_API_URL", None)
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    if args.get("phase") == "shard":
        out = shard_run(args)
    else:
        out = run(
            args["backend"],
            int(args["series"]),
            args["root"],
            list(args.get("shards", [1, 2])),
            int(args.get("repeat", REPEAT)),
        )
    print(json.dumps(out))
