"""The sharded predict: one parent run per slot fans the predict flow out as K flow runs on
a work pool (one per shard of the series), waits for them, scores once, updates the
breach alerts once and reports per shard. The shards run wherever the pool's workers
are: one machine, or several."""

# No `from __future__ import annotations` in flow modules (see flows/predict.py).

from datetime import datetime

from prefect import flow

from tasks.alert_tasks import update_alerts
from tasks.common import flow_run_namer
from tasks.predict_tasks import Stopwatch, plan_slots, wait_for_data
from tasks.settings import get_settings
from tasks.shard_tasks import (
    check_shards,
    publish_shards,
    report_text,
    run_shards,
    series_per_shard,
)
from tasks.storage_tasks import score_forecasts

#: the deployment the shard runs are created on (prefect.yaml's `predict-shard`)
SHARD_DEPLOYMENT = "predict/predict-shard"


@flow(name="predict-sharded", flow_run_name=flow_run_namer("predict-sharded"), timeout_seconds=3600)
def predict_sharded(
    shards: int = 2,
    as_of: datetime | None = None,
    store_url: str | None = None,
    models_dir: str | None = None,
    catch_up_slots: int | None = None,
    deployment: str = SHARD_DEPLOYMENT,
    shard_timeout_s: float = 1500,
    retry_failed: bool = True,
) -> dict:
    """Forecast every series from `as_of` as `shards` flow runs of `deployment`.

    The parent decides the slot once (the last complete slot before its scheduled time;
    a run more than `max_lateness_slots` late skips it; a scheduled run waits for late
    metrics), then creates one run per shard with that `as_of`: each forecasts, writes and
    catches up only its own series. A shard that fails (or does not finish within
    `shard_timeout_s`, then cancelled) is submitted once more, alone; the others' rows are
    written either way. The parent scores what matured and updates the breach alerts from
    it (once, for all series: the shard runs do neither; events as the predict flow emits
    them), reports per shard (state, attempts, series written for `as_of`) and ends Failed
    if a shard stayed failed.
    `store_url`/`models_dir` are passed to the shards only when given: a worker's own
    environment (or a Secret block) normally supplies them, never a parameter.
    """
    clock = Stopwatch()
    settings = get_settings(store_url=store_url, models_dir=models_dir)
    # the slot and its lateness only: each shard plans its own catch-up
    plan = plan_slots(settings.model_copy(update={"catch_up_slots": 0}), as_of)
    if plan.status == "stale":
        return plan.stale_result()
    arrival = wait_for_data(settings, plan)
    params = {
        "as_of": plan.as_of.isoformat(),
        "store_url": store_url,
        "models_dir": models_dir,
        "catch_up_slots": catch_up_slots,
    }
    results = run_shards(deployment, params, shards, shard_timeout_s, retry_failed)
    series_per_shard(settings, plan.as_of, results)
    catch_up = settings.catch_up_slots if catch_up_slots is None else catch_up_slots
    scored = score_forecasts(settings, plan.as_of, 1 + catch_up)
    # alerts judge matured forecasts (issued 12 slots back): a failed shard changes nothing
    alerts = update_alerts(settings, plan.as_of, 1 + catch_up)
    publish_shards(plan.as_of, results, scored, alerts)
    summary = {
        "status": "ok" if all(r.ok for r in results) else "failed",
        "as_of": str(plan.as_of),
        "shards": [r.as_dict() for r in results],
        "series_written": sum(r.series_written for r in results),
        "scored": scored,
        "alerts": alerts.as_dict(),
        "arrival": None if arrival is None else arrival.as_dict(),
        "report": report_text(results),
        "seconds": round(clock.total, 3),
    }
    check_shards(results)  # a shard stayed failed: the run ends Failed, naming it
    return summary
