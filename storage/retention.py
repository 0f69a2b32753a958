"""Retention: old forecasts and accuracy rows deleted in bounded batches, accuracy rolled up
into a daily table first (kept indefinitely).

``Store.apply_retention`` (the :class:`RetentionMixin` of every store) deletes

* forecasts with ``issued_at`` before ``now - forecast_days`` (floored to the slot grid);
* accuracy rows with ``target_ts`` before ``now - accuracy_days`` (floored to the hour, the
  Parquet store's file width, so every backend deletes the same rows), after adding them to
  ``<accuracy table>_daily``: one row per (day, model_version, step, level) with ``n``,
  ``sum_abs_error``, ``sum_abs_y`` and ``n_covered``. A day's row is the sum over every run
  that deleted rows of that day (a day is usually deleted in two runs: the hours before the
  cutoff, then the rest);
* breach alerts (``storage.alerts``) resolved before the accuracy cutoff (open alerts stay).

Batches are whole slots (SQL: consecutive ``issued_at`` / ``target_ts`` slots, at most about
``batch_rows`` rows per transaction; one slot larger than that is a batch of its own) or
whole files (Parquet). A SQL accuracy batch adds to the daily table and deletes its rows in
one transaction; Parquet first hides the batch's hour files (a rename), then writes the
day's aggregate with the names of the files it absorbed, then removes them, so an
interrupted run is finished by the next one without counting a file twice. The metrics
table is never touched.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage.columns import TS_TYPE
from storage.errors import ConfigError
from storage.timeutil import scalar_to_us, us_to_timestamp
from storage.validate import now_us

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000

DAILY_SCHEMA = pa.schema(
    [
        ("day", TS_TYPE),
        ("model_version", pa.string()),
        ("step", pa.int64()),
        ("level", pa.float64()),
        ("n", pa.int64()),
        ("sum_abs_error", pa.float64()),
        ("sum_abs_y", pa.float64()),
        ("n_covered", pa.int64()),
    ]
)
DAILY_KEY = ("day", "model_version", "step", "level")
DAILY_SUMS = ("n", "sum_abs_error", "sum_abs_y", "n_covered")


def _fault_point(label: str) -> None:
    """No-op hook between the steps of a retention batch; tests replace it to inject a
    failure ("forecasts_deleted", "retired", "aggregated", "accuracy_deleted")."""


def retention_fault(label: str) -> None:
    _fault_point(label)  # looked up at call time, so a replaced hook is seen


def plan_batches(counts: list[tuple[int, int]], batch_rows: int) -> list[tuple[int, int, int]]:
    """Consecutive (slot, rows) pairs, ascending, grouped into (first, last, rows) batches
    of at most ``batch_rows`` rows; a slot is never split (a larger one is its own batch)."""
    out: list[tuple[int, int, int]] = []
    for slot, n in counts:
        if out and out[-1][2] + n <= batch_rows:
            out[-1] = (out[-1][0], slot, out[-1][2] + n)
        else:
            out.append((slot, slot, n))
    return out


def daily_from_rows(rows: pa.Table) -> pa.Table:
    """The daily aggregate (``DAILY_SCHEMA``) of accuracy rows."""
    if rows.num_rows == 0:
        return DAILY_SCHEMA.empty_table()
    ts = rows["target_ts"].cast(pa.int64()).to_numpy()
    work = pa.table(
        {
            "day": pa.array(ts - ts % DAY_US, pa.int64()).cast(TS_TYPE),
            "model_version": rows["model_version"],
            "step": rows["step"].cast(pa.int64()),
            "level": rows["level"].cast(pa.float64()),
            "e": rows["abs_error"].cast(pa.float64()),
            "y": pc.abs(rows["y"].cast(pa.float64())),
            "c": rows["covered"].cast(pa.int64()),
        }
    )
    agg = work.group_by(list(DAILY_KEY)).aggregate(
        [("e", "count"), ("e", "sum"), ("y", "sum"), ("c", "sum")]
    )
    return pa.table(
        {
            **{k: agg[k] for k in DAILY_KEY},
            "n": agg["e_count"].cast(pa.int64()),
            "sum_abs_error": agg["e_sum"],
            "sum_abs_y": agg["y_sum"],
            "n_covered": agg["c_sum"].cast(pa.int64()),
        }
    ).cast(DAILY_SCHEMA)


def add_daily(old: pa.Table | None, new: pa.Table) -> pa.Table:
    """``old`` plus ``new``, summed per key (both ``DAILY_SCHEMA``), sorted by key."""
    both = new if old is None else pa.concat_tables([old.cast(DAILY_SCHEMA), new])
    if both.num_rows == 0:
        return DAILY_SCHEMA.empty_table()
    agg = both.group_by(list(DAILY_KEY)).aggregate([(s, "sum") for s in DAILY_SUMS])
    out = pa.table({**{k: agg[k] for k in DAILY_KEY}, **{s: agg[f"{s}_sum"] for s in DAILY_SUMS}})
    return out.cast(DAILY_SCHEMA).sort_by([(k, "ascending") for k in DAILY_KEY])


def daily_summary(tab: pa.Table) -> pd.DataFrame:
    """Per day, model_version and step (levels summed): n, MAE, WAPE % and coverage %."""
    cols = ["day", "model_version", "step", "n", "mae", "wape_pct", "coverage_pct"]
    frame = tab.to_pandas()
    if frame.empty:
        out = pd.DataFrame({c: pd.Series([], dtype="float64") for c in cols})
        out["day"] = pd.Series([], dtype="datetime64[us, UTC]")
        out["model_version"] = pd.Series([], dtype="object")
        out["step"] = out["step"].astype("int64")
        out["n"] = out["n"].astype("int64")
        return out
    g = frame.groupby(["day", "model_version", "step"], sort=True)[list(DAILY_SUMS)].sum()
    g = g.reset_index()
    n = g["n"].astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        g["mae"] = g["sum_abs_error"] / n
        g["wape_pct"] = np.where(
            g["sum_abs_y"] > 0, 100.0 * g["sum_abs_error"] / g["sum_abs_y"], np.nan
        )
        g["coverage_pct"] = 100.0 * g["n_covered"] / n
    g["n"] = g["n"].astype("int64")
    g["step"] = g["step"].astype("int64")
    return g[cols].reset_index(drop=True)


def _days_arg(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{what} must be a positive number of days, got {value!r}")
    days = float(value)
    if not math.isfinite(days) or days <= 0:
        raise ConfigError(f"{what} must be a positive number of days, got {value!r}")
    return days


class RetentionMixin(ABC):
    """``apply_retention`` and ``read_accuracy_daily`` of every store (see the module
    docstring); backends implement the three primitives."""

    _freq_us: int

    def apply_retention(
        self,
        forecast_days: float,
        accuracy_days: float,
        *,
        now: object = None,
        batch_rows: int = 500_000,
    ) -> dict[str, Any]:
        """Delete forecasts issued before ``now - forecast_days`` and accuracy rows with
        target_ts before ``now - accuracy_days`` (rolled up into the daily table first), in
        batches of at most about ``batch_rows`` rows (whole slots or files), and breach
        alerts resolved before the accuracy cutoff (open ones stay). Re-running deletes and
        adds nothing more. Returns the counts: forecasts_deleted, accuracy_deleted,
        days_aggregated, alerts_deleted, files_removed, batches, and both cutoffs."""
        f_days = _days_arg(forecast_days, "forecast_days")
        a_days = _days_arg(accuracy_days, "accuracy_days")
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ConfigError(f"batch_rows must be a positive integer, got {batch_rows!r}")
        now_ = now_us() if now is None else scalar_to_us(now, "now", self._warn)  # type: ignore[attr-defined]
        f_cut = now_ - round(f_days * DAY_US)
        f_cut -= f_cut % self._freq_us
        a_cut = now_ - round(a_days * DAY_US)
        a_cut -= a_cut % HOUR_US
        f_rows, f_files, f_batches = self._retain_forecasts(f_cut, batch_rows)
        a_rows, days, a_files, a_batches = self._retain_accuracy(a_cut, batch_rows)
        alerts = self._retain_alerts(a_cut)  # type: ignore[attr-defined]
        return {
            "forecasts_deleted": int(f_rows),
            "accuracy_deleted": int(a_rows),
            "days_aggregated": len(days),
            "alerts_deleted": int(alerts),
            "files_removed": int(f_files + a_files),
            "batches": int(f_batches + a_batches),
            "forecast_cutoff": us_to_timestamp(f_cut).isoformat(),
            "accuracy_cutoff": us_to_timestamp(a_cut).isoformat(),
        }

    def read_accuracy_daily(self, start: object = None, end: object = None) -> pd.DataFrame:
        """The daily accuracy of deleted accuracy rows, days with start <= day <= end:
        day, model_version, step, n, mae, wape_pct, coverage_pct (levels summed), sorted.
        Rows still in the accuracy table are not included (``read_accuracy`` has them)."""
        lo, hi = self._bounds(start, end)  # type: ignore[attr-defined]
        return daily_summary(self._read_daily(lo, hi))

    @abstractmethod
    def _retain_forecasts(self, cutoff: int, batch_rows: int) -> tuple[int, int, int]:
        """Delete forecasts issued before ``cutoff``: (rows, files, batches)."""

    @abstractmethod
    def _retain_accuracy(self, cutoff: int, batch_rows: int) -> tuple[int, set[int], int, int]:
        """Roll up, then delete, accuracy rows with target_ts before ``cutoff``:
        (rows, days aggregated (epoch us), files, batches)."""

    @abstractmethod
    def _read_daily(self, lo: int | None, hi: int | None) -> pa.Table:
        """Daily rows (``DAILY_SCHEMA``) with lo <= day <= hi."""
