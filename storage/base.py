"""The store interface shared by every backend, and the logic common to all of them.

A backend implements a few primitives on canonical Arrow tables (``_read_metrics``,
``_write_metrics``, ...); this class validates arguments and frames, converts timestamps,
and turns Arrow tables into the canonical pandas frames the rest of the product uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
from pandas.tseries.frequencies import to_offset

from storage.accuracy import score_joined, summarize_accuracy
from storage.alerts import AlertsMixin
from storage.columns import (
    ACCURACY_GROUPS,
    FORECAST_SCHEMA,
    SERIES_ID,
    TS,
    VALUE,
    ColumnMap,
    TableNames,
)
from storage.errors import ConfigError
from storage.frames import (
    slot_series_frame,
    sort_table,
    sorted_frame,
    to_frame,
    window_ranges,
)
from storage.retention import RetentionMixin
from storage.scores import ScoresMixin
from storage.shards import Shard, check_in_shard
from storage.timeutil import (
    NaiveWarner,
    RangeSkipper,
    check_on_grid,
    parse_freq,
    scalar_to_us,
    slots_to_us,
    us_to_timestamp,
)
from storage.validate import (
    check_issued_within,
    forecasts_table,
    metrics_table,
    now_us,
)

#: A closed range of epoch microseconds; ``None`` means unbounded on that side.
Range = tuple[int | None, int | None]

#: Longest forecast horizon accepted, in slots (one day of 5-minute slots by default).
DEFAULT_MAX_HORIZON = 288


class Store(RetentionMixin, ScoresMixin, AlertsMixin, ABC):
    """Metrics in, forecasts out. Open one with :func:`storage.open_store`.

    All timestamps in and out are timezone-aware UTC; naive input is taken as UTC (with one
    :class:`~storage.errors.NaiveTimestampWarning` per argument or column). Frames returned
    use the canonical names (``series_id, ts, value`` and the feature names).
    """

    backend: str = ""

    def __init__(
        self,
        url: str,
        columns: ColumnMap | None = None,
        tables: TableNames | None = None,
        freq: str | pd.Timedelta = "5min",
        max_horizon: int = DEFAULT_MAX_HORIZON,
    ) -> None:
        if columns is not None and not isinstance(columns, ColumnMap):
            raise ConfigError(f"columns must be a ColumnMap, got {type(columns).__name__}")
        if tables is not None and not isinstance(tables, TableNames):
            raise ConfigError(f"tables must be a TableNames, got {type(tables).__name__}")
        self.columns = columns or ColumnMap()
        self.tables = tables or TableNames()
        self._freq_us = parse_freq(freq)
        self.freq = pd.Timedelta(microseconds=self._freq_us)
        if not isinstance(max_horizon, int) or max_horizon < 1:
            raise ConfigError(
                f"max_horizon must be a positive number of slots, got {max_horizon!r}"
            )
        self.max_horizon = max_horizon
        self._url = url
        self._warn = NaiveWarner()
        self._skip = RangeSkipper(self.tables.metrics)
        #: Metrics rows reads skipped, by reason (``ts_out_of_range``: a timestamp outside
        #: the supported range or unreadable, e.g. written into a user's table with SQL).
        self.skipped_rows: dict[str, int] = self._skip.counts

    # ------------------------------------------------------------------ helpers
    def _ts_arg(self, value: object, what: str) -> int | None:
        return None if value is None else scalar_to_us(value, what, self._warn)

    def _bounds(self, start: object, end: object) -> tuple[int | None, int | None]:
        lo, hi = self._ts_arg(start, "start"), self._ts_arg(end, "end")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"start {us_to_timestamp(lo)} is after end {us_to_timestamp(hi)}")
        return lo, hi

    @staticmethod
    def _series_arg(series_ids: object) -> list[str] | None:
        if series_ids is None:
            return None
        if isinstance(series_ids, str):
            return [series_ids]
        try:
            return sorted({str(s) for s in series_ids})  # type: ignore[union-attr]
        except TypeError:
            raise ConfigError(
                f"series_ids must be a list of ids, got {type(series_ids).__name__}"
            ) from None

    # ------------------------------------------------------------------ metrics
    def write_metrics(self, df: pd.DataFrame) -> int:
        """Upsert metrics rows keyed by (series, ts); returns the number of rows written.

        ``df`` uses the ColumnMap's names. The whole frame is checked first (NaN/Inf,
        non-numeric, duplicate (series, ts), off-grid or missing timestamps) and nothing is
        written if any check fails.
        """
        tab = metrics_table(df, self.columns, self._freq_us, self._warn)
        if tab.num_rows == 0:
            return 0
        return self._write_metrics(tab)

    def read_metrics(
        self,
        start: object = None,
        end: object = None,
        series_ids: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Rows with ``start <= ts <= end`` (either may be None), sorted by series_id, ts.

        Returns what is stored (NULL -> NaN): gap filling and quality decisions belong to
        the caller.
        """
        lo, hi = self._bounds(start, end)
        ids = self._series_arg(series_ids)
        return sorted_frame(self._skip.filter(self._read_metrics([(lo, hi)], ids)), [SERIES_ID, TS])

    def recent_ranges(
        self, as_of: object, n_slots: int, extra_ranges: Iterable[tuple[int, int]] = ()
    ) -> list[tuple[int, int]]:
        """The closed epoch-microsecond ranges ``read_recent`` reads (merged, sorted)."""
        as_us = scalar_to_us(as_of, "as_of", self._warn)
        check_on_grid(as_us, self._freq_us, "as_of")
        return window_ranges(as_us, n_slots, self._freq_us, extra_ranges)

    def read_recent(
        self,
        as_of: object,
        n_slots: int,
        *,
        extra_ranges: Iterable[tuple[int, int]] = (),
        series_ids: Iterable[str] | None = None,
        shard: Shard | None = None,
    ) -> pd.DataFrame:
        """The model's input window, in one query for all series.

        Rows with ``as_of - (n_slots-1)*freq <= ts <= as_of``, plus for each ``(lo, hi)`` in
        ``extra_ranges`` (slot offsets back from ``as_of``) the rows with
        ``as_of - hi*freq <= ts <= as_of - lo*freq``. A series with fewer rows returns only
        the rows it has; a series with none returns nothing. Sorted by series_id, ts.
        With ``shard``, only the series that shard owns: only their rows are read.
        """
        ranges = list(self.recent_ranges(as_of, n_slots, extra_ranges))
        ids = self._series_arg(series_ids)
        # no local holds the read, so sorted_frame can free it column by column; with a
        # shard and known ids, the shard's share of those ids is read
        return sorted_frame(
            self._skip.filter(
                self._read_shard_metrics(ranges, shard)
                if shard is not None and ids is None
                else self._read_metrics(ranges, ids if shard is None else shard.select(ids))
            ),
            [SERIES_ID, TS],
        )

    def metrics_range(self) -> tuple[pd.Timestamp, pd.Timestamp, int] | None:
        """(first ts, last ts, number of series) of the metrics, or None when empty."""
        r = self._metrics_range()
        if r is None:
            return None
        lo, hi, n, skipped = r
        if skipped:
            self._skip.count(skipped)
        if not n:
            return None
        return us_to_timestamp(lo), us_to_timestamp(hi), int(n)

    # ---------------------------------------------------------------- forecasts
    def write_forecasts(
        self,
        df: pd.DataFrame,
        *,
        slots: Sequence[object] | None = None,
        shard: Shard | None = None,
    ) -> int:
        """Write forecasts keyed by (series_id, issued_at, step) in one transaction.

        Columns: series_id, issued_at, target_ts, step, yhat, yhat_lower, yhat_upper, level,
        model_version, and optionally created_at (set to now when absent). A failure leaves
        the stored forecasts as they were.

        Without ``slots`` the write is an upsert: rows with the same key are replaced, other
        rows stay. With ``slots`` (issued_at values: timestamps, or slot numbers
        ``issued_at // freq`` since the epoch) the write owns those slots: every stored row
        issued at one of them is replaced by ``df``'s rows, so a series skipped by a re-run
        keeps no rows of the earlier run (``df`` may be empty: the slots are emptied). Rows
        of ``df`` issued outside ``slots`` are a DataValidationError. With ``shard`` too, the
        write owns only that shard's series in those slots: the other shards' rows stay
        (rows of ``df`` of another shard's series are a DataValidationError).
        """
        if shard is not None and slots is None:
            raise ConfigError(f"write_forecasts(shard={shard}) needs the slots the shard owns")
        owned = None if slots is None else slots_to_us(slots, self._freq_us, self._warn)
        if owned is not None and isinstance(df, pd.DataFrame) and len(df) == 0:
            tab = FORECAST_SCHEMA.empty_table()
        else:
            tab = forecasts_table(df, self._freq_us, self.max_horizon, self._warn, now_us())
        if owned is None:
            return self._write_forecasts(tab) if tab.num_rows else 0
        check_issued_within(tab, owned)
        if shard is not None:
            check_in_shard(tab, shard)
        return self._replace_forecasts(tab, owned, shard) if owned else 0

    def read_forecasts(
        self,
        issued_at: object = None,
        series_ids: Iterable[str] | None = None,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """Forecasts issued at ``issued_at`` (all when None) with start <= target_ts <= end.

        Sorted by series_id, issued_at, step.
        """
        issued = self._ts_arg(issued_at, "issued_at")
        lo, hi = self._bounds(start, end)
        tab = self._read_forecasts(issued, self._series_arg(series_ids), lo, hi)
        return to_frame(sort_table(tab, ["series_id", "issued_at", "step"]))

    def issued_slots(
        self, start: object = None, end: object = None, shard: Shard | None = None
    ) -> list[pd.Timestamp]:
        """Distinct forecast origins (issued_at) with start <= issued_at <= end, ascending:
        which slots already have forecasts (for catch-up after missed runs). With ``shard``,
        the slots holding a forecast of one of that shard's series."""
        lo, hi = self._bounds(start, end)
        slots = sorted(self._issued_slots(lo, hi))
        if shard is not None and slots:
            tab = shard.filter(self._slot_series(slots))
            slots = sorted(set(tab["issued_at"].cast(pa.int64()).to_pylist()))
        return [us_to_timestamp(us) for us in slots]

    def issued_series(self, slots: Sequence[object]) -> pd.DataFrame:
        """Distinct (issued_at, series_id) of the forecasts issued at ``slots``: which
        series each slot holds (e.g. per shard, after a sharded run)."""
        owned = slots_to_us(slots, self._freq_us, self._warn)
        return slot_series_frame(self._slot_series(owned) if owned else None)

    def read_latest_forecasts(
        self,
        series_ids: Iterable[str] | None = None,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """For each (series_id, target_ts) with start <= target_ts <= end, the row from the
        latest issued_at. Sorted by series_id, target_ts."""
        lo, hi = self._bounds(start, end)
        tab = self._read_latest(self._series_arg(series_ids), lo, hi)
        return to_frame(sort_table(tab, ["series_id", "target_ts"]))

    # ----------------------------------------------------------------- accuracy
    def score_forecasts(self, as_of: object, lookback_slots: int = 288) -> int:
        """Score forecasts with ``as_of - lookback < target_ts <= as_of`` whose actual exists.

        Upserts one accuracy row per (series_id, issued_at, step) (so re-scoring is
        idempotent) and returns how many rows were written. Actuals stored as NULL/NaN are
        not scored.
        """
        hi = scalar_to_us(as_of, "as_of", self._warn)
        check_on_grid(hi, self._freq_us, "as_of")
        if (
            isinstance(lookback_slots, bool)
            or not isinstance(lookback_slots, int)
            or (lookback_slots < 1)
        ):
            raise ConfigError(f"lookback_slots must be a positive integer, got {lookback_slots!r}")
        lo = hi - lookback_slots * self._freq_us
        return self._score(lo, hi, now_us())

    def read_accuracy(
        self,
        start: object = None,
        end: object = None,
        by: Sequence[str] = ("model_version", "step"),
    ) -> pd.DataFrame:
        """Accuracy summary of scored forecasts with start <= target_ts <= end.

        One row per group of ``by`` (series_id, model_version, step, level; none: one row):
        ``n``, ``mae``, ``wape_pct`` (100 sum|err| / sum|y|), ``coverage_pct`` (in %),
        ``interval_score`` (mean M4 interval score), ``sis_pct`` (100 its sum / sum|y|).
        """
        if isinstance(by, str):
            by = (by,)
        by = tuple(by)
        bad = [b for b in by if b not in ACCURACY_GROUPS]
        if bad or len(set(by)) != len(by):
            raise ConfigError(
                f"read_accuracy by={list(by)}: each of {list(ACCURACY_GROUPS)} may appear once"
            )
        lo, hi = self._bounds(start, end)
        out = self._accuracy_summary(lo, hi, by)
        return out.sort_values(list(by), kind="stable").reset_index(drop=True) if by else out

    def read_accuracy_rows(
        self,
        start: object = None,
        end: object = None,
        series_ids: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """The scored rows themselves (start <= target_ts <= end), sorted by key."""
        lo, hi = self._bounds(start, end)
        tab = self._read_accuracy_rows(lo, hi, self._series_arg(series_ids))
        return to_frame(sort_table(tab, ["series_id", "issued_at", "step"]))

    # ------------------------------------------------------------------- admin
    def describe(self) -> dict[str, Any]:
        """URL (password hidden), backend, names, row counts: safe to log or print."""
        return {
            "url": self._url,
            "backend": self.backend,
            "freq": to_offset(self.freq).freqstr,
            "columns": {
                "id": self.columns.id_col,
                "time": self.columns.time_col,
                "target": self.columns.target_col,
                "features": list(self.columns.feature_cols)
                if self.columns.feature_cols is not None
                else "numeric",
            },
            "tables": {
                "metrics": self.tables.metrics,
                "forecasts": self.tables.forecasts,
                "accuracy": self.tables.accuracy,
                "latest_view": self.tables.latest_view,
            },
            "rows": self._row_counts(),
        }

    def close(self) -> None:  # noqa: B027 - backends without resources need nothing
        """Release connections; the store cannot be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend} {self._url}>"

    # ------------------------------------------------- generic implementations
    def _score_generic(self, lo: int, hi: int, scored_at: int) -> int:
        """Score in Python: join forecasts with target_ts in (lo, hi] to their actuals."""
        fc = self._read_forecasts(None, None, lo + 1, hi)
        if fc.num_rows == 0:
            return 0
        actual = self._read_metrics([(lo + 1, hi)], None).select([SERIES_ID, TS, VALUE])
        acc = score_joined(fc, actual, scored_at)
        return 0 if acc is None else self._write_accuracy(acc)

    def _accuracy_summary(
        self, lo: int | None, hi: int | None, by: tuple[str, ...]
    ) -> pd.DataFrame:
        return summarize_accuracy(to_frame(self._read_accuracy_rows(lo, hi, None)), by)

    # ------------------------------------------------------ backend primitives
    @abstractmethod
    def _write_metrics(self, tab: pa.Table) -> int: ...

    @abstractmethod
    def _read_metrics(self, ranges: list[Range], ids: list[str] | None) -> pa.Table:
        """Rows whose ts lies in any of the closed ``ranges``; canonical names."""

    def _read_shard_metrics(self, ranges: list[Range], shard: Shard) -> pa.Table:
        """``_read_metrics(ranges, None)``'s rows of ``shard``'s series; the backends
        override this generic version (whole window, then filtered) to read only those."""
        return shard.filter(self._read_metrics(ranges, None), SERIES_ID)

    @abstractmethod
    def _metrics_range(self) -> tuple[int, int, int, int] | None:
        """(first ts, last ts, series, rows skipped) of readable rows; None when empty."""

    @abstractmethod
    def _write_forecasts(self, tab: pa.Table) -> int: ...

    @abstractmethod
    def _replace_forecasts(self, tab: pa.Table, owned: list[int], shard: Shard | None) -> int:
        """In one transaction: remove every row issued at ``owned`` (of ``shard``'s series
        only, when given), then write ``tab``."""

    @abstractmethod
    def _slot_series(self, owned: list[int]) -> pa.Table:
        """Distinct (issued_at as int64 us, series_id) of the rows issued at ``owned``."""

    @abstractmethod
    def _read_forecasts(
        self, issued: int | None, ids: list[str] | None, lo: int | None, hi: int | None
    ) -> pa.Table: ...

    @abstractmethod
    def _issued_slots(self, lo: int | None, hi: int | None) -> list[int]: ...

    @abstractmethod
    def _read_latest(self, ids: list[str] | None, lo: int | None, hi: int | None) -> pa.Table: ...

    @abstractmethod
    def _score(self, lo: int, hi: int, scored_at: int) -> int: ...

    @abstractmethod
    def _write_accuracy(self, tab: pa.Table) -> int: ...

    @abstractmethod
    def _read_accuracy_rows(
        self, lo: int | None, hi: int | None, ids: list[str] | None
    ) -> pa.Table: ...

    @abstractmethod
    def _row_counts(self) -> dict[str, int]: ...
