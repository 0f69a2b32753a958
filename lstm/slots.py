"""Time on the slot grid: UTC timestamps, slot numbers, the last complete slot, catch-up.

A slot is an interval of `freq` (5 minutes by default) numbered since the epoch
(slot = ts_ns // freq_ns), so calendar features, lags and catch-up are integer arithmetic.
Timezone-naive timestamps are taken to be UTC everywhere (the documented assumption).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from lstm.errors import DataValidationError


def utc(ts: pd.Timestamp | str | object) -> pd.Timestamp:
    """A timestamp as tz-aware UTC; a naive one is taken to be UTC."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def freq_to_ns(freq: str | pd.Timedelta) -> int:
    """'5min' -> 300_000_000_000; rejects non-positive or unparseable frequencies."""
    try:
        ns = int(pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).value)
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"freq {freq!r} is not a fixed frequency like '5min'") from exc
    if ns <= 0:
        raise DataValidationError(f"freq {freq!r} must be positive")
    return ns


def to_slot(ts: pd.Timestamp | str | object, freq_ns: int) -> int:
    """A timestamp -> its slot number, floored to the grid."""
    return int(utc(ts).value // freq_ns)


def slot_ts(slot: int, freq_ns: int) -> pd.Timestamp:
    """A slot number -> the UTC timestamp of its start."""
    return pd.Timestamp(int(slot) * int(freq_ns), tz="UTC")


def last_complete_slot(now: pd.Timestamp | str | object, freq: str = "5min") -> pd.Timestamp:
    """The last slot whose interval has fully elapsed at `now`: a run scheduled for
    12:05:00 (or starting at 12:07) forecasts from the 12:00 slot. Deterministic in the
    scheduled time, so a late or re-run slot gives the same rows."""
    step = pd.Timedelta(freq_to_ns(freq), "ns")
    return utc(now).floor(step) - step


def slot_range(start: object, end: object, freq: str) -> list[pd.Timestamp]:
    """Every slot from `start` to `end` inclusive (both floored to the grid)."""
    step = pd.Timedelta(freq_to_ns(freq), "ns")
    lo, hi = utc(start).floor(step), utc(end).floor(step)
    if hi < lo:
        raise DataValidationError(f"end {hi} is before start {lo}")
    return list(pd.date_range(lo, hi, freq=step))


def catch_up_slots(as_of_slot: int, lookback: int, done: Iterable[int]) -> list[int]:
    """The slots a run forecasts: the `lookback` slots before `as_of_slot` that have no
    forecasts yet (`done`), oldest first, then `as_of_slot` itself."""
    missing = set(range(as_of_slot - max(lookback, 0), as_of_slot)) - set(done)
    return sorted(missing) + [as_of_slot]
