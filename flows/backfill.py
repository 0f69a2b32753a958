"""Backfill: the forecasts predict would have written for every slot of a past range,
computed in batches of slots (one read, one vectorised forecast, one write per batch)."""

# No `from __future__ import annotations` in flow modules: `flow.serve()` ships the flow
# to its run process by value (cloudpickle), where string annotations such as
# 'datetime | None' no longer resolve and every run fails parameter validation.

from datetime import datetime

import pandas as pd
from prefect import flow, get_run_logger

from flows.settings import get_settings
from tasks.common import get_store, retrying
from tasks.model_tasks import forecast_batch, load_champion_cached
from tasks.storage_tasks import read_windows, score_forecasts, write_forecasts

MAX_WINDOWS_PER_BATCH = 200_000  # series x slots per batch: bounds memory


@flow(name="backfill", timeout_seconds=24 * 3600)
def backfill(
    start: datetime,
    end: datetime,
    store_url: str | None = None,
    models_dir: str | None = None,
    batch_slots: int | None = None,
) -> dict:
    """Forecast every slot in [start, end] with the current champion, as predict would
    have; idempotent (re-running replaces the same rows)."""
    log = get_run_logger()
    settings = get_settings(store_url=store_url, models_dir=models_dir)
    step = pd.Timedelta(settings.freq)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    lo = (lo.tz_localize("UTC") if lo.tzinfo is None else lo.tz_convert("UTC")).floor(step)
    hi = (hi.tz_localize("UTC") if hi.tzinfo is None else hi.tz_convert("UTC")).floor(step)
    if hi < lo:
        raise ValueError(f"backfill end {hi} is before start {lo}")
    slots = list(pd.date_range(lo, hi, freq=step))
    forecaster, version = load_champion_cached(settings)
    rng = get_store(settings).metrics_range()
    n_series = rng[2] if rng else 1
    k = batch_slots or max(1, min(288, MAX_WINDOWS_PER_BATCH // max(n_series, 1)))
    written = skipped = 0
    for i in range(0, len(slots), k):
        chunk = slots[i : i + k]
        history = retrying(read_windows, settings)(settings, forecaster.spec, chunk)
        frame, report = forecast_batch(forecaster, version, history, chunk, settings)
        written += retrying(write_forecasts, settings)(settings, frame)
        skipped += report.n_skipped
        log.info(
            "backfill %s .. %s: %d rows (%d/%d slots)",
            chunk[0],
            chunk[-1],
            len(frame),
            min(i + k, len(slots)),
            len(slots),
        )
    scored = retrying(score_forecasts, settings)(settings, hi, len(slots) + settings.horizon)
    return {
        "slots": len(slots),
        "batches": -(-len(slots) // k),
        "written": written,
        "skipped": skipped,
        "scored": scored,
        "model_version": version,
    }
