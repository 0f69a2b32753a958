"""The sharded predict's fan-out: one flow run per shard of a predict deployment on a work
pool (`prefect.deployments.run_deployment`), waited on together, a failed shard submitted
once more on its own, and the report per shard (state, attempts, series written).

Nothing here schedules or moves work itself: Prefect's work pool and workers run the shard
runs; the parent only creates them, polls their states and reads what the store holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pandas as pd
import pyarrow as pa
from prefect import get_client, task
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from storage import Shard
from tasks.alert_tasks import AlertReport
from tasks.common import COMPUTE_TASK, STORAGE_TASK, get_store, run_logger
from tasks.settings import Settings

#: how often the parent polls its shard runs' states (seconds)
POLL_S = 2.0


class ShardsFailed(RuntimeError):
    """A shard of a sharded predict stayed failed: the parent run ends Failed (the other
    shards' rows are written)."""


@dataclass
class ShardResult:
    """What happened to one shard: its runs (one per attempt), final state, series written."""

    shard: Shard
    runs: list[str] = field(default_factory=list)  # flow-run names, one per attempt
    run_ids: list[str] = field(default_factory=list)
    state: str = "PENDING"
    message: str = ""
    series_written: int = 0

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"

    def as_dict(self) -> dict[str, Any]:
        return {
            "shard": str(self.shard),
            "state": self.state,
            "attempts": len(self.runs),
            "flow_runs": list(self.runs),
            "flow_run_ids": list(self.run_ids),
            "series_written": self.series_written,
            "message": self.message,
        }


def shard_parameters(base: dict[str, Any], shard: Shard) -> dict[str, Any]:
    """A shard run's parameters: the parent's (None left out, so the worker's environment
    supplies them), the shard, and no scoring (the parent scores once)."""
    params = {k: v for k, v in base.items() if v is not None}
    return {**params, "shard": shard.index, "shards": shard.count, "score": False}


def submit(deployment: str, params: dict[str, Any], shard: Shard) -> FlowRun:
    """Create the shard's flow run on the deployment's work pool (returns at once)."""
    return run_deployment(
        name=deployment,
        parameters=shard_parameters(params, shard),
        timeout=0,
        as_subflow=True,
        tags=["lstm-forecast", f"shard-{shard.index}-of-{shard.count}"],
    )


def wait(runs: dict[Shard, UUID], timeout_s: float) -> dict[Shard, FlowRun]:
    """Poll the runs until each is final or `timeout_s` passes; a run still going then is
    cancelled (its state says so) so it cannot write after the parent reported."""
    deadline = time.monotonic() + timeout_s
    done: dict[Shard, FlowRun] = {}
    with get_client(sync_client=True) as client:
        while True:
            for shard, run_id in runs.items():
                if shard not in done:
                    fr = client.read_flow_run(run_id)
                    if fr.state is not None and fr.state.is_final():
                        done[shard] = fr
            if len(done) == len(runs) or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        for shard, run_id in runs.items():
            if shard not in done:
                client.set_flow_run_state(run_id, Cancelling(), force=True)
                done[shard] = client.read_flow_run(run_id)
    return done


@task(name="run-shards", **{**COMPUTE_TASK, "timeout_seconds": None})
def run_shards(
    deployment: str, params: dict[str, Any], shards: int, timeout_s: float, retry: bool = True
) -> list[ShardResult]:
    """Run every shard as its own flow run, wait for all, then submit each failed one once
    more (alone) and wait for those. A shard's failure never stops the others."""
    log = run_logger()
    results = {s: ShardResult(s) for s in (Shard(i, shards) for i in range(shards))}
    pending = list(results)
    for attempt in (1, 2) if retry else (1,):
        runs = {}
        for shard in pending:
            fr = submit(deployment, params, shard)
            results[shard].runs.append(fr.name)
            results[shard].run_ids.append(str(fr.id))
            runs[shard] = fr.id
        log.info("attempt %d: %d shard run(s) of %s submitted", attempt, len(runs), deployment)
        for shard, fr in wait(runs, timeout_s).items():
            r = results[shard]
            r.state = fr.state.type.value if fr.state else "UNKNOWN"
            r.message = "" if r.ok else (fr.state.message or fr.state.name if fr.state else "")
            if not r.ok:
                log.warning("shard %s run %s ended %s: %s", shard, fr.name, r.state, r.message)
        pending = [s for s in pending if not results[s].ok]
        if not pending:
            break
    return list(results.values())


def count_series(written: pd.DataFrame, results: list[ShardResult]) -> None:
    """Set each result's `series_written` from the (issued_at, series_id) the store holds."""
    arr = pa.array(written["series_id"].astype(str).tolist(), pa.string())
    for r in results:
        r.series_written = int(r.shard.mask(arr).sum()) if len(arr) else 0


@task(name="series-per-shard", **STORAGE_TASK)
def series_per_shard(settings: Settings, as_of: pd.Timestamp, results: list[ShardResult]) -> None:
    """What each shard wrote for the as-of slot, read back from the store (the truth, not
    what the shard runs say; a shard run on another machine returns nothing to here)."""
    count_series(get_store(settings, create=False).issued_series([as_of]), results)


def report_text(results: list[ShardResult]) -> str:
    """One line per shard: the parent's log and the failure's message."""
    return "; ".join(
        f"shard {r.shard}: {r.state} after {len(r.runs)} attempt(s), {r.series_written} "
        f"series written" + (f" ({r.message})" if r.message else "")
        for r in results
    )


def check_shards(results: list[ShardResult]) -> None:
    """Fail the parent run when a shard stayed failed, naming it."""
    failed = [r for r in results if not r.ok]
    if failed:
        names = ", ".join(str(r.shard) for r in failed)
        raise ShardsFailed(
            f"{len(failed)} of {len(results)} shard(s) failed ({names}); the other shards' "
            f"rows are written; re-run a shard alone with `forecast predict --shard "
            f"{failed[0].shard} --as-of ...`: {report_text(results)}"
        )


@task(name="publish-shards-report", **COMPUTE_TASK)
def publish_shards(
    as_of: pd.Timestamp,
    results: list[ShardResult],
    scored: int,
    alerts: AlertReport | None = None,
) -> None:
    """A table artifact: one row per shard (state, attempts, runs, series written), then
    the run's totals (scored forecasts, breach alerts opened / resolved / open)."""
    note = f"{scored} matured forecasts scored"
    if alerts is not None:
        note += (
            f"; breach alerts opened / resolved / open: {len(alerts.opened)} / "
            f"{len(alerts.resolved)} / {alerts.n_open} ({alerts.events} events)"
        )
    rows = [r.as_dict() for r in results]
    for row in rows:
        row["flow_runs"] = ", ".join(row["flow_runs"])
        del row["flow_run_ids"]
    rows.append(
        {
            "shard": "all",
            "state": "",
            "attempts": "",
            "flow_runs": "",
            "series_written": sum(r.series_written for r in results),
            "message": note,
        }
    )
    create_table_artifact(
        table=rows, key="predict-sharded", description=f"Sharded predict at {as_of}"
    )
