"""The 5-minute batch predict flow."""

# No `from __future__ import annotations` in flow modules: `flow.serve()` ships the flow
# to its run process by value (cloudpickle), where string annotations such as
# 'datetime | None' no longer resolve and every run fails parameter validation.

import time
from datetime import datetime

import pandas as pd
from prefect import flow, get_run_logger, runtime

from flows.settings import get_settings
from lstm.inference import last_complete_slot, to_slot
from tasks.common import retrying
from tasks.model_tasks import forecast_batch, load_champion_cached
from tasks.reporting import publish_predict
from tasks.storage_tasks import issued_slots, read_windows, score_forecasts, write_forecasts


def scheduled_time() -> pd.Timestamp:
    """When this run was scheduled to start (now, for a run started by hand)."""
    return pd.Timestamp(runtime.flow_run.scheduled_start_time).tz_convert("UTC")


def slot_ts(slot: int, freq_ns: int) -> pd.Timestamp:
    return pd.Timestamp(slot * freq_ns, tz="UTC")


@flow(name="predict", timeout_seconds=1800)
def predict(
    as_of: datetime | None = None,
    store_url: str | None = None,
    models_dir: str | None = None,
    catch_up_slots: int | None = None,
) -> dict:
    """Forecast the next hour of every series from the slot `as_of` and upsert it.

    `as_of` defaults to the last complete slot before the run's *scheduled* time, so a late
    or repeated run writes the same rows. A scheduled run more than `max_lateness_slots`
    late skips its own slot (after downtime the backlog does not flood the machine); every
    run also fills slots of the last `catch_up_slots` that have no forecasts yet, in the
    same batch. Forecasts whose actuals have arrived are scored.
    """
    t0 = time.monotonic()
    log = get_run_logger()
    settings = get_settings(
        store_url=store_url, models_dir=models_dir, catch_up_slots=catch_up_slots
    )
    step = pd.Timedelta(settings.freq)
    if as_of is None:
        scheduled = scheduled_time()
        lateness = pd.Timestamp.now(tz="UTC") - scheduled
        if lateness > step * settings.max_lateness_slots:
            log.warning(
                "run scheduled for %s is %s late: skipping its slot (the on-time run catches up)",
                scheduled,
                lateness.floor("s"),
            )
            return {"status": "stale", "scheduled": str(scheduled), "written": 0}
        as_of = last_complete_slot(scheduled, settings.freq)
    forecaster, version = load_champion_cached(settings)
    spec = forecaster.spec
    as_slot = to_slot(as_of, spec.freq_ns)
    slots = [as_slot]
    if settings.catch_up_slots > 0:
        lo = as_slot - settings.catch_up_slots
        written_before = retrying(issued_slots, settings)(
            settings, slot_ts(lo, spec.freq_ns), slot_ts(as_slot - 1, spec.freq_ns)
        )
        done = {to_slot(s, spec.freq_ns) for s in written_before}
        slots = sorted(set(range(lo, as_slot)) - done) + [as_slot]
    slot_stamps = [slot_ts(s, spec.freq_ns) for s in slots]
    clock = time.perf_counter()
    timings = {"setup_s": time.monotonic() - t0}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    history = retrying(read_windows, settings)(settings, spec, slot_stamps)
    lap("read_s")
    frame, report = forecast_batch(forecaster, version, history, slot_stamps, settings)
    lap("forecast_s")
    written = retrying(write_forecasts, settings)(settings, frame)
    lap("write_s")
    # score what matured since the last run: the targets of this run's slots (1 + catch-up)
    scored = retrying(score_forecasts, settings)(settings, slot_stamps[-1], len(slot_stamps))
    lap("score_s")
    timings.update({k: v for k, v in report.timings.items()})
    seconds = time.monotonic() - t0
    series_forecast = int(frame["series_id"].nunique()) if len(frame) else 0
    publish_predict(slot_stamps, version, written, scored, report, seconds, series_forecast)
    log.info(
        "as_of %s: %d forecasts (%d slots; %d rows, model %s), %d skipped, %d scored, %.2fs",
        slot_stamps[-1],
        report.n_forecast,
        len(slot_stamps),
        written,
        version,
        report.n_skipped,
        scored,
        seconds,
    )
    return {
        "status": "ok",
        "as_of": str(slot_stamps[-1]),
        "slots": [str(s) for s in slot_stamps],
        "model_version": version,
        "series_forecast": series_forecast,
        "forecasts": report.n_forecast,  # series x slots
        "written": written,
        "skipped": dict(report.skipped),
        "n_skipped": report.n_skipped,
        "repaired": dict(report.repaired),
        "duplicate_rows": report.duplicate_rows,
        "off_grid_rows": report.off_grid_rows,
        "scored": scored,
        "seconds": round(seconds, 3),
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
