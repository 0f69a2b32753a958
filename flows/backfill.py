"""Backfill: the forecasts predict would have written for every slot of a past range,
computed in batches of slots (one read, one vectorised forecast, one write per batch)."""

# No `from __future__ import annotations` in flow modules: `flow.serve()` ships the flow
# to its run process by value (cloudpickle), where string annotations such as
# 'datetime | None' no longer resolve and every run fails parameter validation.

from datetime import datetime

import pandas as pd
from prefect import flow, get_run_logger

from tasks.calibration_tasks import recalibrate_intervals
from tasks.common import flow_run_namer
from tasks.model_tasks import forecast_batch, load_champion
from tasks.predict_tasks import backfill_batches
from tasks.settings import get_settings
from tasks.storage_tasks import metrics_range, read_windows, score_forecasts, write_forecasts


@flow(name="backfill", flow_run_name=flow_run_namer("backfill"), timeout_seconds=24 * 3600)
def backfill(
    start: datetime,
    end: datetime,
    store_url: str | None = None,
    models_dir: str | None = None,
    batch_slots: int | None = None,
) -> dict:
    """Forecast every slot in [start, end] with the current champion, as predict would
    have, live recalibration included; idempotent (re-running replaces the same rows).

    With recalibration on, each batch is scored after it is written (the next batch's
    windows read those scores), and scoring covers the targets of the range and its
    horizon only, never earlier targets (which belong to the runs of their own slots): the
    rows equal what predict writes for each slot."""
    log = get_run_logger()
    settings = get_settings(store_url=store_url, models_dir=models_dir)
    metrics = metrics_range(settings)  # first: a missing store is named before the model
    forecaster, version = load_champion(settings)
    batches = backfill_batches(settings, start, end, metrics, batch_slots)
    written = skipped = 0
    for i, chunk in enumerate(batches, 1):
        history = read_windows(settings, forecaster.spec, chunk)
        frame, report = forecast_batch(forecaster, version, history, chunk, settings)
        frame, _ = recalibrate_intervals(settings, frame, version, chunk, announce=False)
        written += write_forecasts(settings, frame, chunk)
        if settings.online_calibration:  # the next batch's windows read these scores
            score_forecasts(settings, chunk[-1], len(chunk))
        skipped += report.n_skipped
        log.info(
            "backfill %s .. %s: %d rows (batch %d/%d)",
            chunk[0],
            chunk[-1],
            len(frame),
            i,
            len(batches),
        )
    slots = sum(len(b) for b in batches)
    # the targets of the range and its horizon: [first slot, last slot + horizon]
    last = batches[-1][-1] + pd.Timedelta(settings.freq) * settings.horizon
    scored = score_forecasts(settings, last, slots + settings.horizon)
    return {
        "slots": slots,
        "batches": len(batches),
        "written": written,
        "skipped": skipped,
        "scored": scored,
        "model_version": version,
    }
