"""Breach alerts of every store: ``update_alerts`` (called after each scoring) and
``read_alerts``; the rules are ``storage.breaches``'.

State lives in the alerts table ``<forecasts>_alerts`` (SQL; a Parquet store keeps one file,
``<root>/<forecasts>_alerts/alerts.parquet``, replaced atomically), one row per alert keyed
by ``(series_id, direction, started_at)``. ``update_alerts(as_of, n_slots)`` reads the
scored rows of the judged step for the ``n_slots`` target slots up to ``as_of`` and the
``k - 1`` slots before them (one small query: only that step's rows) and the alerts open or
resolved lately (whose quiet span may reach those forecasts), folds the rows in and upserts
what changed, in one write. Re-running it for the same slots changes nothing. Predict runs
are one at a time (the deployments' ``CANCEL_NEW``); two concurrent updates could both open
the same alert.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import astuple, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from storage.breaches import Alert, advance_alerts
from storage.columns import ALERT_COLUMNS, ALERT_SCHEMA, TS_TYPE
from storage.errors import ConfigError
from storage.timeutil import check_on_grid, scalar_to_us

#: The scored-row columns the detector reads (of the accuracy table).
BREACH_COLUMNS = (
    "series_id",
    "target_ts",
    "model_version",
    "y",
    "yhat_lower",
    "yhat_upper",
    "level",
)


@dataclass
class AlertChanges:
    """What one ``update_alerts`` did: the alerts it opened and resolved, every alert open
    afterwards (frames of ``read_alerts``' columns), and how many rows it wrote."""

    opened: pd.DataFrame
    resolved: pd.DataFrame
    open: pd.DataFrame
    written: int


def alerts_table(alerts: list[Alert]) -> pa.Table:
    """Alerts as an Arrow table of ``ALERT_SCHEMA``."""
    cols = list(zip(*(astuple(a) for a in alerts), strict=True)) if alerts else []
    arrays = []
    for i, f in enumerate(ALERT_SCHEMA):
        values = list(cols[i]) if cols else []
        if f.type == TS_TYPE:
            arrays.append(pa.array(values, pa.int64()).cast(TS_TYPE))
        else:
            arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=ALERT_SCHEMA)


def alerts_frame(tab: pa.Table) -> pd.DataFrame:
    """``read_alerts``' frame: its columns, newest first (started_at descending, then
    series_id and direction)."""
    df = tab.select(list(ALERT_COLUMNS)).to_pandas()
    if df.empty:
        return df
    df = df.sort_values(
        ["started_at", "series_id", "direction"], ascending=[False, True, True], kind="stable"
    )
    return df.reset_index(drop=True)


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class AlertsMixin(ABC):
    """``update_alerts`` and ``read_alerts`` of every store (see the module docstring);
    backends implement the four primitives."""

    _freq_us: int

    def read_alerts(
        self,
        open_only: bool = False,
        series_ids: Iterable[str] | None = None,
        since: object = None,
    ) -> pd.DataFrame:
        """Breach alerts, newest first: ``series_id, level, direction ('above'|'below'),
        started_at, last_breach_at, slots_breached, max_excess (interval widths),
        model_version, status ('open'|'resolved'), resolved_at`` (NaT while open).

        ``open_only``: only open alerts. ``series_ids``: only these series. ``since``: only
        alerts active at or after it (open, or resolved at or after ``since``)."""
        ids = self._series_arg(series_ids)  # type: ignore[attr-defined]
        since_us = self._ts_arg(since, "since")  # type: ignore[attr-defined]
        return alerts_frame(self._read_alert_rows(bool(open_only), ids, since_us))

    def update_alerts(
        self,
        as_of: object,
        n_slots: int = 1,
        *,
        k: int,
        m: int = 3,
        level: float = 0.8,
        step: int = 1,
        min_excess: float = 0.0,
        quiet: int = 0,
    ) -> AlertChanges:
        """Judge the scored step-``step`` forecasts at ``level`` whose targets are the
        ``n_slots`` slots up to ``as_of``: open an alert at ``k`` consecutive slots more
        than ``min_excess`` interval widths outside on one side, resolve it after ``m``
        consecutive slots back; forecasts issued while an alert of the series was open, or
        up to ``quiet`` slots after it resolved, open none (rules in ``storage.breaches``).
        Idempotent: re-running it for the same slots changes nothing."""
        hi = scalar_to_us(as_of, "as_of", self._warn)  # type: ignore[attr-defined]
        check_on_grid(hi, self._freq_us, "as_of")
        n, k, m, step = (
            _positive_int(v, w)
            for v, w in ((n_slots, "n_slots"), (k, "k"), (m, "m"), (step, "step"))
        )
        if isinstance(level, bool) or not isinstance(level, float | int) or not 0 < level < 1:
            raise ConfigError(f"level must lie in (0, 1), got {level!r}")
        bad = isinstance(min_excess, bool) or not isinstance(min_excess, float | int)
        if bad or not 0 <= min_excess < 1e6:
            raise ConfigError(f"min_excess must be a number of widths >= 0, got {min_excess!r}")
        if isinstance(quiet, bool) or not isinstance(quiet, int | np.integer) or quiet < 0:
            raise ConfigError(f"quiet must be a number of slots >= 0, got {quiet!r}")
        f = self._freq_us
        lo = hi - (n - 1 + k - 1) * f
        rows = self._read_breach_rows(lo, hi, step).to_pandas()
        rows = rows[np.isclose(rows["level"].to_numpy(dtype="float64"), level, atol=1e-9)]
        # the alerts whose quiet span may cover the first row's forecast, and the open ones
        known = self._read_alert_rows(False, None, lo - (step + int(quiet)) * f).to_pandas()
        delta = advance_alerts(
            rows,
            known,
            k=k,
            m=m,
            freq_us=f,
            level=float(level),
            step=step,
            min_excess=float(min_excess),
            quiet=int(quiet),
        )
        written = self._write_alerts(alerts_table(delta.changed)) if delta.changed else 0
        return AlertChanges(
            opened=alerts_frame(alerts_table(delta.opened)),
            resolved=alerts_frame(alerts_table(delta.resolved)),
            open=alerts_frame(self._read_alert_rows(True, None, None)),
            written=int(written),
        )

    @abstractmethod
    def _read_breach_rows(self, lo: int, hi: int, step: int) -> pa.Table:
        """Scored rows of ``step`` with lo <= target_ts <= hi: ``BREACH_COLUMNS``."""

    @abstractmethod
    def _read_alert_rows(
        self, open_only: bool, ids: list[str] | None, since: int | None
    ) -> pa.Table:
        """Stored alerts (``ALERT_SCHEMA``): only open ones, of ``ids``, open or resolved
        at or after ``since``."""

    @abstractmethod
    def _write_alerts(self, tab: pa.Table) -> int:
        """Upsert alerts (``ALERT_SCHEMA``) on ``ALERT_KEY`` in one transaction or file."""

    @abstractmethod
    def _retain_alerts(self, cutoff: int) -> int:
        """Delete alerts resolved before ``cutoff``; how many."""
