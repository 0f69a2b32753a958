"""Timestamp handling: everything becomes integer microseconds since the epoch, UTC.

Timezone-naive input is taken to be UTC (the documented assumption); the first naive value
seen for each column or argument raises one :class:`NaiveTimestampWarning` per store.
"""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage.columns import SERIES_ID, TS, TS_TYPE, TS_UNIT
from storage.errors import (
    ConfigError,
    DataValidationError,
    NaiveTimestampWarning,
    TimestampRangeWarning,
)

US_PER_S = 1_000_000

#: The timestamps a store accepts: ``TS_MIN <= ts < TS_END`` (UTC). The end is where pandas'
#: nanosecond timestamps end (2262-04-11); before 1900 is no metric's time and breaks
#: fixed-width text in SQLite and the folder names of a Parquet store.
TS_MIN = pd.Timestamp("1900-01-01", tz="UTC")
TS_END = pd.Timestamp("2262-04-11", tz="UTC")
TS_MIN_US = int(TS_MIN.value) // 1000
TS_END_US = int(TS_END.value) // 1000
TS_RANGE_TEXT = "1900-01-01 00:00 to 2262-04-11 00:00 UTC (end excluded)"


def parse_freq(freq: str | pd.Timedelta | dt.timedelta) -> int:
    """Return the slot length in microseconds (a positive whole number of seconds)."""
    try:
        td = pd.Timedelta(freq)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"freq {freq!r} is not a time span such as '5min': {exc}") from None
    us = int(td / pd.Timedelta(microseconds=1))
    if us <= 0 or us % US_PER_S:
        raise ConfigError(f"freq {freq!r} must be a positive whole number of seconds")
    return us


class NaiveWarner:
    """Warns once per key that naive timestamps are taken as UTC."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, what: str) -> None:
        if what in self._seen:
            return
        self._seen.add(what)
        warnings.warn(
            f"{what}: timezone-naive timestamps are assumed to be UTC",
            NaiveTimestampWarning,
            stacklevel=4,
        )


def outside_ts_range(ts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """True where a timestamp is NULL (unreadable) or outside ``TS_MIN <= ts < TS_END``."""
    us = ts.cast(pa.int64())
    bad = pc.or_(pc.less(us, TS_MIN_US), pc.greater_equal(us, TS_END_US))
    return pc.fill_null(bad, True)


class RangeSkipper:
    """Drops metrics rows whose ts is unreadable or outside the supported range (a user's
    table written with plain SQL may hold them); counts them in ``counts`` and warns."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.counts = {"ts_out_of_range": 0}

    def filter(self, tab: pa.Table) -> pa.Table:
        bad = outside_ts_range(tab[TS])
        n = int(pc.sum(bad).as_py() or 0)
        if not n:
            return tab
        self.count(n, f" (first: series {tab.filter(bad)[SERIES_ID][0].as_py()!r})")
        return tab.filter(pc.invert(bad))

    def count(self, n: int, where: str = "") -> None:
        self.counts["ts_out_of_range"] += n
        warnings.warn(
            f"{self.table}: {n} metrics row(s) with a timestamp outside {TS_RANGE_TEXT} or "
            f"unreadable were skipped{where}",
            TimestampRangeWarning,
            stacklevel=4,
        )


def fmt_us(us: int | np.integer) -> str:
    """Format epoch microseconds for messages: ``2024-01-01 00:05:00+00:00``."""
    return str(pd.Timestamp(int(us), unit="us", tz="UTC"))


def us_to_timestamp(us: int) -> pd.Timestamp:
    """Epoch microseconds to a tz-aware UTC Timestamp."""
    return pd.Timestamp(int(us), unit="us", tz="UTC")


def us_to_datetime(us: int, aware: bool = True) -> dt.datetime:
    """Epoch microseconds to a ``datetime`` (aware UTC, or naive UTC wall time)."""
    value = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(us))
    return value if aware else value.replace(tzinfo=None)


def scalar_to_us(value: object, what: str, warn: NaiveWarner) -> int:
    """Convert one timestamp argument (str, datetime, Timestamp, datetime64) to epoch us."""
    if value is None or isinstance(value, bool | int | float):
        raise ConfigError(f"{what} must be a timestamp, got {value!r}")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {value!r} is not a timestamp: {exc}") from None
    if ts is pd.NaT:
        raise ConfigError(f"{what} must be a timestamp, got NaT")
    if ts.tzinfo is None:
        warn(what)
        ts = ts.tz_localize("UTC")
    return timestamp_us(ts)


def slots_to_us(slots: object, freq_us: int, warn: NaiveWarner) -> list[int]:
    """Forecast slots (timestamps, or slot numbers ``issued_at // freq``) as sorted, unique
    epoch microseconds on the grid."""
    if isinstance(slots, str | dt.datetime | pd.Timestamp | np.datetime64 | int | np.integer):
        slots = [slots]
    try:
        items = list(slots)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigError(
            f"slots must be a list of issued_at values, got {type(slots).__name__}"
        ) from None
    out = set()
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(f"slots: {item!r} is not a timestamp or slot number")
        if isinstance(item, int | np.integer):
            out.add(int(item) * freq_us)
            continue
        us = scalar_to_us(item, "slots", warn)
        check_on_grid(us, freq_us, "slots")
        out.add(us)
    return sorted(out)


def check_on_grid(us: int, freq_us: int, what: str) -> None:
    """Raise if one timestamp argument is not on the slot grid."""
    if us % freq_us:
        raise ConfigError(
            f"{what} {fmt_us(us)} is not on the {freq_us // US_PER_S}-second slot grid"
        )


def column_to_us(
    frame: pd.DataFrame, col: str, what: str, warn: NaiveWarner, ids: np.ndarray | None = None
) -> np.ndarray:
    """Convert a frame column of timestamps to int64 epoch microseconds (UTC).

    Accepts datetime64 (naive or any timezone), datetime objects and ISO strings. Raises
    DataValidationError naming the column, the first bad value and its series.
    """
    s = frame[col]
    if not (
        pd.api.types.is_datetime64_any_dtype(s.dtype)
        or pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
    ):
        raise DataValidationError(
            f"{what}: column {col!r} must hold timestamps, got dtype {s.dtype}"
        )
    if s.isna().any():
        bad = np.flatnonzero(s.isna().to_numpy())
        raise DataValidationError(
            f"{what}: column {col!r} has {len(bad)} missing timestamp(s)"
            + _first_series(ids, bad[0])
        )
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        try:
            s = pd.to_datetime(s, format="ISO8601")
        except (ValueError, TypeError):
            try:
                s = pd.to_datetime(s, utc=True, format="ISO8601")
            except (ValueError, TypeError) as exc:
                raise DataValidationError(
                    f"{what}: column {col!r} holds values that are not timestamps: {exc}"
                ) from None
    if s.dt.tz is None:
        warn(f"{what} column {col!r}")
        s = s.dt.tz_localize("UTC")
    naive = s.dt.tz_convert("UTC").dt.tz_localize(None)
    try:
        us = naive.to_numpy().astype(f"datetime64[{TS_UNIT}]").view("int64")
    except (ValueError, OverflowError) as exc:  # pragma: no cover - out of range dates
        raise DataValidationError(f"{what}: column {col!r}: {exc}") from None
    outside = np.flatnonzero((us < TS_MIN_US) | (us >= TS_END_US))
    if len(outside):
        i = int(outside[0])
        raise DataValidationError(
            f"{what}: column {col!r} has {len(outside)} timestamp(s) outside the supported "
            f"range {TS_RANGE_TEXT}{_first_series(ids, i)[:-1]}, value "
            f"{naive.iloc[i].isoformat()}+00:00)"
        )
    return us


def us_array(values: np.ndarray) -> pa.Array:
    """int64 epoch microseconds to an Arrow ``timestamp[us, UTC]`` array."""
    return pa.array(np.asarray(values, dtype="int64"), type=pa.int64()).cast(TS_TYPE)


def _first_series(ids: np.ndarray | None, pos: int) -> str:
    if ids is None:
        return f" (first at row {pos})"
    return f" (first: series {ids[pos]!r}, row {pos})"


def timestamp_us(ts: pd.Timestamp) -> int:
    """A tz-aware Timestamp as epoch microseconds (``Timestamp.value`` is always ns)."""
    return int(ts.as_unit("ns").value) // 1000
