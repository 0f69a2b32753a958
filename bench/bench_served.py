"""The predict flow as a served deployment against a local Prefect server: what a 5-minute
run costs in wall time with Prefect's own overhead (a fresh process per run, imports,
API calls, task and artifact bookkeeping), next to the flow body measured inside it.

    python -m bench.bench_served '{"backend": "sqlite", "series": 10000, "root": "/tmp/b"}'
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.bench_predict_flow import cleanup, set_tables, store_url
from bench.common import AS_OF, ROOT, STEP, run_isolated

SERVE = """
import os, sys
from flows.predict import predict
predict.serve(name="bench", limit=1, print_starting_message=False)
"""


def body_seconds(flow_run_id) -> float:
    """The flow body's duration, from the run's predict-summary table artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    for a in arts:
        rows = json.loads(a.data) if isinstance(a.data, str) else a.data
        for row in rows or []:
            if isinstance(row, dict) and row.get("item") == "duration s":
                return float(row["value"])
    return float("nan")


def run_one(backend: str, n_series: int, root: str, repeat: int = 3) -> dict:
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.serve import local_prefect_server

    work = Path(root) / f"served-{backend}-{n_series}"
    work.mkdir(parents=True, exist_ok=True)
    suffix = uuid.uuid4().hex[:8]
    run_isolated(
        "bench.bench_predict_flow",
        {
            "phase": "prepare",
            "backend": backend,
            "series": n_series,
            "work": str(work),
            "suffix": suffix,
        },
        timeout=7200,
    )
    set_tables(suffix)
    env_job = {
        "FORECAST_STORE_URL": store_url(backend, work),
        "FORECAST_MODELS_DIR": str(work / "models"),
        "FORECAST_METRICS_TABLE": f"bm_{suffix}",
        "FORECAST_FORECASTS_TABLE": f"bf_{suffix}",
        "FORECAST_ACCURACY_TABLE": f"ba_{suffix}",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    runs = []
    with local_prefect_server(work / "prefect", timeout=240) as api:
        env = {
            **os.environ,
            **env_job,
            "PREFECT_API_URL": api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with temporary_settings(updates={PREFECT_API_URL: api}):
                deadline = time.monotonic() + 120
                while True:  # the deployment exists once serve has registered it
                    try:
                        from prefect.client.orchestration import get_client

                        with get_client(sync_client=True) as c:
                            c.read_deployment_by_name("predict/bench")
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(1)
                for k in range(repeat):
                    as_of = AS_OF - STEP * (repeat - 1 - k)
                    t0 = time.perf_counter()
                    fr = run_deployment(
                        "predict/bench",
                        parameters={"as_of": as_of.isoformat(), "catch_up_slots": 0},
                        timeout=900,
                        poll_interval=0.2,  # the default (5 s) rounds the figure up to 5 s
                    )
                    wall = time.perf_counter() - t0
                    assert fr.state.is_completed(), fr.state
                    runs.append(
                        {
                            "trigger_to_done_s": wall,
                            "run_s": (fr.end_time - fr.start_time).total_seconds(),
                            "body_s": body_seconds(fr.id),
                        }
                    )
        finally:
            server.terminate()
            server.wait(timeout=60)
    cleanup(backend, work)
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    out.update(backend=backend, series=n_series, runs=len(runs))
    return out


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(
        json.dumps(
            run_one(args["backend"], int(args["series"]), args["root"], int(args.get("repeat", 3)))
        )
    )
