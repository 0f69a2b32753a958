"""The 5-minute batch predict flow: plan the slots, load the champion, read, forecast,
write, score, update breach alerts, report."""

# No `from __future__ import annotations` in flow modules: `flow.serve()` ships the flow
# to its run process by value (cloudpickle), where string annotations such as
# 'datetime | None' no longer resolve and every run fails parameter validation.

from datetime import datetime

from prefect import flow

from tasks.alert_tasks import update_alerts
from tasks.calibration_tasks import recalibrate_intervals
from tasks.common import flow_run_namer
from tasks.model_tasks import forecast_batch, load_champion
from tasks.predict_tasks import (
    Stopwatch,
    check_forecast_share,
    plan_slots,
    run_shard,
    summarize,
    wait_for_data,
)
from tasks.reporting import publish_predict
from tasks.settings import get_settings
from tasks.storage_tasks import live_accuracy, read_windows, score_forecasts, write_forecasts


@flow(name="predict", flow_run_name=flow_run_namer("predict"), timeout_seconds=1800)
def predict(
    as_of: datetime | None = None,
    store_url: str | None = None,
    models_dir: str | None = None,
    catch_up_slots: int | None = None,
    shard: int | None = None,
    shards: int | None = None,
    score: bool = True,
) -> dict:
    """Forecast the next hour of every series from the slot `as_of` and upsert it.

    `as_of` defaults to the last complete slot before the run's *scheduled* time, so a late
    or repeated run writes the same rows. A scheduled run more than `max_lateness_slots`
    late skips its own slot (after downtime the backlog does not flood the machine); every
    run also fills slots of the last `catch_up_slots` that have no forecasts yet, in the
    same batch. A scheduled run first waits (bounded) for late metrics of its slot.
    Forecasts whose actuals have arrived are scored, and breach alerts updated from them
    (opened, grown, resolved; Prefect events `forecast.breach.*`). A run that forecast
    fewer than FORECAST_MIN_FORECAST_SHARE of the series it read ends Failed, its rows kept.

    With `shard`/`shards` (0/4 is the first of four) the run forecasts only the series
    `storage.Shard` assigns it (a stable hash of the id), replaces only their rows and
    catches up the slots missing them; `score=False` leaves scoring to the caller (the
    predict-sharded parent scores once, after every shard).
    """
    clock = Stopwatch()
    settings = get_settings(
        store_url=store_url, models_dir=models_dir, catch_up_slots=catch_up_slots
    )
    part = run_shard(shard, shards)
    plan = plan_slots(settings, as_of, part)
    if plan.status == "stale":
        return plan.stale_result()
    arrival = wait_for_data(settings, plan)
    clock.lap("wait_s")
    forecaster, version = load_champion(settings)
    clock.lap("setup_s")
    history = read_windows(settings, forecaster.spec, plan.slots, part)
    clock.lap("read_s")
    frame, report = forecast_batch(forecaster, version, history, plan.slots, settings)
    del history  # 60 million rows at 1,000,000 series: not held through the write
    clock.lap("forecast_s")
    frame, calibration = recalibrate_intervals(settings, frame, version, plan.slots)
    clock.lap("calibrate_s")
    written = write_forecasts(settings, frame, plan.slots, part)
    clock.lap("write_s")
    # score what matured since the last run: the targets from the oldest slot to as_of
    scored = score_forecasts(settings, plan.as_of, plan.span(settings.freq)) if score else 0
    live = live_accuracy(settings, plan.as_of, len(plan.slots)) if scored else []
    clock.lap("score_s")
    # breach alerts from what was just scored: opened once, grown, resolved; events emitted
    alerts = update_alerts(settings, plan.as_of, len(plan.slots)) if score else None
    clock.lap("alerts_s")
    summary = summarize(plan, version, frame, report, written, scored, clock, arrival, live, alerts)
    summary.calibration = calibration
    publish_predict(summary)
    check_forecast_share(summary, settings)  # too few forecasts: the run ends Failed
    return {**summary.as_dict(), "shard": str(part) if part else None}
