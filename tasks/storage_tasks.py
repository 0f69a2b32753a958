"""Prefect tasks that read and write the store (thin wrappers; the work is in storage/)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from prefect import task

from lstm.features import FeatureSpec
from lstm.slots import slot_ts, to_slot
from tasks.common import STORAGE_TASK, get_store
from tasks.settings import Settings


@task(name="read-history", **STORAGE_TASK)
def read_history(settings: Settings, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """The last `history_days` of every series, up to `end` (default: the newest slot)."""
    store = get_store(settings)
    if end is None:
        rng = store.metrics_range()
        if rng is None:
            return store.read_metrics()
        end = rng[1]
    start = pd.Timestamp(end) - pd.Timedelta(days=settings.history_days)
    return store.read_metrics(start=start, end=end)


@task(name="read-windows", **STORAGE_TASK)
def read_windows(
    settings: Settings, spec: FeatureSpec, slots: Sequence[pd.Timestamp]
) -> pd.DataFrame:
    """Every series' rows the model reads for forecasts issued at `slots`: one query."""
    store = get_store(settings)
    last, ranges = spec.read_ranges([to_slot(s, spec.freq_ns) for s in slots])
    return store.read_recent(slot_ts(last, spec.freq_ns), 1, extra_ranges=ranges)


@task(name="write-forecasts", **STORAGE_TASK)
def write_forecasts(settings: Settings, frame: pd.DataFrame) -> int:
    """Upsert one run's forecasts in one transaction (all rows land, or none)."""
    if frame.empty:
        return 0
    return get_store(settings).write_forecasts(frame)


@task(name="score-forecasts", **STORAGE_TASK)
def score_forecasts(
    settings: Settings, as_of: pd.Timestamp, lookback_slots: int | None = None
) -> int:
    """Score earlier forecasts whose actuals have arrived by `as_of`."""
    return get_store(settings).score_forecasts(
        as_of, lookback_slots or settings.score_lookback_slots
    )


@task(name="issued-slots", **STORAGE_TASK)
def issued_slots(settings: Settings, start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """Forecast origins already written in [start, end] (for catch-up)."""
    return list(get_store(settings).issued_slots(start, end))


@task(name="metrics-range", **STORAGE_TASK)
def metrics_range(settings: Settings) -> tuple[pd.Timestamp, pd.Timestamp, int] | None:
    """(first ts, last ts, number of series) of the metrics, or None when there are none."""
    return get_store(settings).metrics_range()
