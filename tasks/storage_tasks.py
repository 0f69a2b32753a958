"""Prefect tasks that read and write the store (thin wrappers; the work is in storage/)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from prefect import task

from lstm.accumulate import PanelAccumulator
from lstm.features import FeatureSpec
from lstm.panel import Panel, PrepReport
from lstm.sampling import SeriesProfile, profile_series
from lstm.slots import freq_to_ns, last_complete_slot, slot_ts, to_slot, utc
from storage import Shard
from tasks.common import STORAGE_TASK, get_store, scheduled_time
from tasks.settings import Settings


def history_end_slot(settings: Settings, end: object = None) -> pd.Timestamp:
    """The last slot of a retrain's history: `end` (floored to the grid), else the last
    complete slot before the run's scheduled time; never the newest row in the table (one
    row dated a year ahead must not move the window)."""
    if end is not None:
        return utc(end).floor(pd.Timedelta(settings.freq))
    return last_complete_slot(scheduled_time(), settings.freq)


@task(name="read-profile", **STORAGE_TASK)
def read_profile(settings: Settings, end: pd.Timestamp) -> SeriesProfile:
    """Every series' level and noise from three recent hours (ending at `end`, 8 and 16
    hours earlier), in one query: what the training sample is stratified on."""
    step = pd.Timedelta(settings.freq)
    hour = int(pd.Timedelta("1h") / step)
    eight = int(pd.Timedelta("8h") / step)
    ranges = [(eight, eight + hour - 1), (2 * eight, 2 * eight + hour - 1)]
    recent = get_store(settings, create=False).read_recent(end, hour, extra_ranges=ranges)
    return profile_series(recent, freq_to_ns(settings.freq))


@task(name="read-history", **STORAGE_TASK)
def read_history(
    settings: Settings, series_ids: Sequence[str], end: pd.Timestamp
) -> tuple[Panel, PrepReport]:
    """The last `history_days` of `series_ids` up to `end`, read a day at a time into
    compact arrays (bounded memory; repairs counted as `regularize` counts them). Rows dated
    after `end` (a collector's clock in the future) are ignored and counted."""
    store = get_store(settings, create=False)
    freq_ns = freq_to_ns(settings.freq)
    step = pd.Timedelta(freq_ns, "ns")
    start = (end - pd.Timedelta(days=settings.history_days)).ceil(step)
    acc: PanelAccumulator | None = None
    for lo in pd.date_range(start, end, freq="1D"):
        hi = min(lo + pd.Timedelta("1D") - step, end)
        frame = store.read_metrics(start=lo, end=hi, series_ids=series_ids)
        if acc is None:
            exog = [c for c in frame.columns if c not in ("series_id", "ts", "value")]
            acc = PanelAccumulator(
                series_ids, to_slot(start, freq_ns), to_slot(end, freq_ns), freq_ns, exog
            )
        acc.add(frame)
    panel, report = acc.finish()
    report.future_rows = len(store.read_metrics(start=end + step))
    return panel, report


@task(name="read-windows", **STORAGE_TASK)
def read_windows(
    settings: Settings,
    spec: FeatureSpec,
    slots: Sequence[pd.Timestamp],
    shard: Shard | None = None,
) -> pd.DataFrame:
    """Every series' rows the model reads for forecasts issued at `slots`: one query (of
    the series `shard` owns, when given)."""
    store = get_store(settings, create=False)
    last, ranges = spec.read_ranges([to_slot(s, spec.freq_ns) for s in slots])
    return store.read_recent(slot_ts(last, spec.freq_ns), 1, extra_ranges=ranges, shard=shard)


@task(name="write-forecasts", **STORAGE_TASK)
def write_forecasts(
    settings: Settings,
    frame: pd.DataFrame,
    slots: Sequence[pd.Timestamp],
    shard: Shard | None = None,
) -> int:
    """Write one run's forecasts in one transaction (all rows land, or none). The run owns
    its `slots` (a shard's run: its own series in them): afterwards they hold exactly this
    run's rows, so a series skipped by a re-run keeps no rows of an earlier run or model
    version, and the other shards' rows are untouched."""
    return get_store(settings).write_forecasts(frame, slots=list(slots), shard=shard)


@task(name="score-forecasts", **STORAGE_TASK)
def score_forecasts(
    settings: Settings, as_of: pd.Timestamp, lookback_slots: int | None = None
) -> int:
    """Score earlier forecasts whose actuals have arrived by `as_of`."""
    return get_store(settings).score_forecasts(
        as_of, lookback_slots or settings.score_lookback_slots
    )


@task(name="live-accuracy", **STORAGE_TASK)
def live_accuracy(settings: Settings, as_of: pd.Timestamp, slots: int) -> list[dict]:
    """n, MAE, WAPE and coverage per interval level of the forecasts whose targets fell in
    the last `slots` slots up to `as_of` (what this run just scored): one small aggregate."""
    step = pd.Timedelta(settings.freq)
    table = get_store(settings).read_accuracy(
        start=as_of - step * (slots - 1), end=as_of, by=("model_version", "level")
    )
    return table.to_dict(orient="records")


@task(name="issued-slots", **STORAGE_TASK)
def issued_slots(settings: Settings, start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """Forecast origins already written in [start, end] (for catch-up)."""
    return list(get_store(settings, create=False).issued_slots(start, end))


@task(name="metrics-range", **STORAGE_TASK)
def metrics_range(settings: Settings) -> tuple[pd.Timestamp, pd.Timestamp, int] | None:
    """(first ts, last ts, number of series) of the metrics, or None when there are none."""
    return get_store(settings, create=False).metrics_range()


@task(name="apply-retention", **{**STORAGE_TASK, "timeout_seconds": 3 * 3600})
def apply_retention(settings: Settings, now: pd.Timestamp | None = None) -> dict:
    """Delete forecasts older than `forecast_retention_days` and accuracy rows older than
    `accuracy_retention_days` (before `now`, default the clock), in bounded batches, after
    rolling the accuracy up into the daily table; metrics are never deleted. Idempotent, so
    a retried run deletes nothing twice. Returns the store's counts."""
    return get_store(settings, create=False).apply_retention(
        settings.forecast_retention_days, settings.accuracy_retention_days, now=now
    )
