"""Batch window preparation: a long history frame of N series -> the raw model inputs of
every forecast a run makes, plus what was skipped or repaired (`InferenceReport`).

This is the part of inference below the `Forecaster`: no network, only validation,
scattering rows into dense arrays, and per-series repair decisions. Predict (one as_of)
and backfill (many) share it, so backfill writes exactly what predict would have written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from lstm.features import FeatureSpec
from lstm.panel import ColumnNames, interpolate_flat, to_ns, validate_columns
from lstm.slots import slot_ts, to_slot
from lstm.windows import RawWindows


@dataclass
class InferenceReport:
    """What a batch forecast skipped or repaired, per series."""

    n_input_series: int = 0
    n_forecast: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # series -> reason
    repaired: dict[str, int] = field(default_factory=dict)  # series -> values interpolated
    lags_imputed: int = 0
    n_skipped: int = 0  # skipped forecasts (series x origin)
    off_grid_rows: int = 0
    duplicate_rows: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # features_s, model_s, frame_s

    def as_dict(self) -> dict:
        return asdict(self)

    def merge(self, other: InferenceReport) -> None:
        """Add the report of another chunk of series (disjoint from this one's)."""
        for name in ("n_input_series", "n_forecast", "lags_imputed", "n_skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.off_grid_rows += other.off_grid_rows
        self.duplicate_rows += other.duplicate_rows
        self.skipped.update(other.skipped)
        self.repaired.update(other.repaired)
        for key, seconds in other.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + seconds

    def skip(self, series_id: str, reason: str, forecasts: int = 1) -> None:
        """Record that `forecasts` forecasts of a series were dropped, and why."""
        self.skipped.setdefault(str(series_id), reason)
        self.n_skipped += forecasts
        self.n_forecast -= forecasts


def series_chunks(history: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    """The rows of `history` in chunks of at most `size` series, in sorted series order:
    the whole frame when it holds no more than `size` series (no copy).

    Window preparation holds a few dense [series, slots] arrays per feature (about 5 KiB
    per series with the default spec), so a run over 1,000,000 series at once needs
    ~5 GiB on top of its input; chunks bound that to the chunk's share."""
    ids = history[ColumnNames().id_col]
    codes, uniques = pd.factorize(ids, sort=True)
    if len(uniques) <= size or (codes < 0).any():  # missing ids: validation names them
        yield history
        return
    chunk = (codes // size).astype(np.int32)
    if len(chunk) and (np.diff(chunk) >= 0).all():  # sorted by series: slices, no gather
        bounds = np.searchsorted(chunk, np.arange(chunk[-1] + 2))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
            yield history.iloc[lo:hi]
        return
    order = np.argsort(chunk, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(chunk))])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        yield history.take(order[lo:hi])


def prepare_latest(
    history: pd.DataFrame,
    spec: FeatureSpec,
    as_of: pd.Timestamp | str | None = None,
    *,
    max_missing: int | None = None,
    exog_fill: np.ndarray | None = None,
) -> tuple[RawWindows, np.ndarray, InferenceReport]:
    """Raw model inputs of every series for one forecast issued at `as_of` (default: the
    latest slot in `history`). See `prepare_windows`."""
    return prepare_windows(
        history,
        spec,
        None if as_of is None else [as_of],
        max_missing=max_missing,
        exog_fill=exog_fill,
    )


def prepare_windows(
    history: pd.DataFrame,
    spec: FeatureSpec,
    as_of: Sequence | None = None,
    *,
    max_missing: int | None = None,
    exog_fill: np.ndarray | None = None,
) -> tuple[RawWindows, np.ndarray, InferenceReport]:
    """Long history of N series -> raw model inputs for forecasts issued at each `as_of`.

    Only the slots the model reads are used: the window ending at each as_of and, per lag,
    the H slots `lag` earlier than each target step. Per series and origin: rows in one
    slot are summed; NaN/Inf/negative or non-numeric values count as missing; up to
    `max_missing` missing window slots (default window // 4) are interpolated and counted;
    without a value at as_of, or with more gaps, that forecast is skipped and the reason
    named. Rows of the result are ordered by origin, then series; returns (raw windows,
    series id per row, report). Predict (one as_of) and backfill (many) share this code,
    so backfill writes exactly what predict would have written.
    """
    w, h = spec.window, spec.horizon
    max_missing = w // 4 if max_missing is None else max_missing
    cols, _ = validate_columns(history, ColumnNames(), spec.exog, strict=False)
    report = InferenceReport()
    codes, ids = pd.factorize(cols.ids, sort=True)
    ids = np.asarray(ids, dtype=object).astype(str)
    n = len(ids)
    report.n_input_series = n
    if n == 0:
        return empty_raw(spec), ids, report
    ts_ns = to_ns(cols.ts)
    slot = ts_ns // spec.freq_ns
    report.off_grid_rows = int(np.count_nonzero(ts_ns - slot * spec.freq_ns))  # no int modulo
    if as_of is None:
        origins = np.array([slot.max()], dtype=np.int64)
    else:
        origins = np.array([to_slot(a, spec.freq_ns) for a in as_of], dtype=np.int64)
    k = len(origins)

    # the slots the model reads, as columns of a dense [N, S] matrix
    win_slots = origins[:, None] + np.arange(-w + 1, 1)  # [K, W]
    lag_arr = np.asarray(spec.lags, dtype=np.int64)
    steps = np.arange(-w + 1, h + 1)  # every window and target step
    lag_slots = origins[:, None, None] + steps[None, :, None] - lag_arr  # [K, W+H, L]
    needed = np.unique(np.concatenate([win_slots.ravel(), lag_slots.ravel()]))
    # column of each row's slot (-1: not read), by a lookup table over the needed span
    lut = np.full(needed[-1] - needed[0] + 2, -1, dtype=np.int64)  # last entry: out of span
    lut[needed - needed[0]] = np.arange(len(needed))
    rel = slot - needed[0]
    pos = lut[np.where((rel >= 0) & (rel < len(lut) - 1), rel, len(lut) - 1)]
    hit = pos >= 0
    y = cols.y
    bad = ~np.isfinite(y) | (y < 0)
    flat = codes[hit] * len(needed) + pos[hit]  # cell of each row in the [N, S] matrix
    cells, dups, bad_cell = _scatter(flat, y[hit], bad[hit], n * len(needed))
    report.duplicate_rows = dups
    exog_cells = [
        _scatter_mean(flat, cols.exog[c][hit], n * len(needed), unique=dups == 0) for c in spec.exog
    ]
    cells, bad_cell = cells.reshape(n, -1), bad_cell.reshape(n, -1)
    exog_cells = [m.reshape(n, -1) for m in exog_cells]

    win = cells[:, np.searchsorted(needed, win_slots)]  # [N, K, W]
    win = win.transpose(1, 0, 2).reshape(k * n, w)  # row = origin * N + series
    lags = cells[:, np.searchsorted(needed, lag_slots)]  # [N, K, W+H, L]
    lags = lags.transpose(1, 0, 2, 3).reshape(k * n, w + h, len(spec.lags))
    exog = np.zeros((k * n, w, len(spec.exog)))
    for j, m in enumerate(exog_cells):
        exog[:, :, j] = (
            m[:, np.searchsorted(needed, win_slots)].transpose(1, 0, 2).reshape(k * n, w)
        )
    row_series = np.tile(np.arange(n), k)
    row_origin = np.repeat(origins, n)

    missing = np.isnan(win)
    n_missing = missing.sum(axis=1)
    skip = missing[:, -1] | (n_missing > max_missing)
    report.n_skipped = int(skip.sum())
    if skip.any():
        bad_win = (
            bad_cell[:, np.searchsorted(needed, win_slots)].transpose(1, 0, 2).reshape(k * n, w)
        )
        last_seen = _last_seen(codes, slot, n)
        for r in np.flatnonzero(skip)[::-1]:  # the earliest origin's reason wins per series
            i, at = int(row_series[r]), _fmt(int(row_origin[r]), spec)
            seen = f" (last value at {_fmt(int(last_seen[i]), spec)})" if last_seen[i] >= 0 else ""
            if n_missing[r] == w and not bad_win[r].any():
                reason = f"no value in the {w}-slot window ending {at}{seen}"
            elif missing[r, -1]:
                what = "an invalid (NaN/Inf/negative/non-numeric)" if bad_win[r, -1] else "no"
                reason = f"{what} value at as_of {at}{seen}"
            else:
                reason = (
                    f"{int(n_missing[r])} of {w} window slots missing at {at} (max {max_missing})"
                )
            report.skipped[str(ids[i])] = reason
    keep = ~skip
    for r in np.flatnonzero(keep & (n_missing > 0)):
        sid = str(ids[row_series[r]])
        report.repaired[sid] = report.repaired.get(sid, 0) + int(n_missing[r])

    kept = int(keep.sum())
    offsets = np.arange(0, kept * w + 1, w)
    win_k = interpolate_flat(win[keep].ravel(), offsets).reshape(kept, w)
    exog_k = exog[keep]
    if len(spec.exog):
        fill = np.zeros(len(spec.exog)) if exog_fill is None else np.asarray(exog_fill, float)
        for j in range(len(spec.exog)):
            col_j = interpolate_flat(exog_k[:, :, j].ravel(), offsets).reshape(kept, w)
            exog_k[:, :, j] = np.where(np.isnan(col_j), fill[j], col_j)
    report.n_forecast = kept
    raw = RawWindows(
        y=win_k,
        exog=exog_k,
        origin_slot=row_origin[keep],
        lags=lags[keep],
        series=np.arange(kept),
    )
    return raw, ids[row_series[keep]], report


def _scatter(flat, values, bad, size) -> tuple[np.ndarray, int, np.ndarray]:
    """Per cell (`flat` gives each row's cell of `size`): the sum of the valid values (NaN
    where a cell has none), the number of duplicate rows, and which cells held an invalid
    value."""
    ok = ~bad
    bad_cell = np.zeros(size, dtype=bool)
    bad_cell[flat[bad]] = True
    all_count = np.bincount(flat, minlength=size)
    if len(flat) == 0 or all_count.max() <= 1:  # the usual case: a store keyed by (series, ts)
        cells = np.full(size, np.nan)
        cells[flat[ok]] = values[ok]
        return cells, 0, bad_cell
    total = np.bincount(flat[ok], weights=values[ok], minlength=size)
    count = np.bincount(flat[ok], minlength=size)
    dups = int(np.maximum(all_count - 1, 0).sum())
    return np.where(count > 0, total, np.nan), dups, bad_cell


def _scatter_mean(flat, values, size, unique: bool) -> np.ndarray:
    """Per cell: the mean of the finite values (NaN where none); `unique`: one row per cell."""
    ok = np.isfinite(values)
    if unique:
        cells = np.full(size, np.nan)
        cells[flat[ok]] = values[ok]
        return cells
    total = np.bincount(flat[ok], weights=values[ok], minlength=size)
    count = np.bincount(flat[ok], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _last_seen(codes, slot, n) -> np.ndarray:
    """Last slot with any row, per series (-1 when none)."""
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, codes, slot)
    return last


def _fmt(slot: int, spec: FeatureSpec) -> str:
    return str(slot_ts(slot, spec.freq_ns))


def empty_raw(spec: FeatureSpec) -> RawWindows:
    """Zero windows in the layout of `spec`."""
    return RawWindows(
        y=np.zeros((0, spec.window)),
        exog=np.zeros((0, spec.window, len(spec.exog))),
        origin_slot=np.zeros(0, dtype=np.int64),
        lags=np.zeros((0, spec.window + spec.horizon, len(spec.lags))),
        series=np.zeros(0, dtype=np.int64),
    )
