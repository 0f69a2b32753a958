"""Inference entry points: the batch path for thousands of series and the seed's
single-series API (`real_time_predict`, `validate_real_time_input`, buffers).

Both end in `Forecaster.predict_raw`, so a batch and a single-series forecast of the same
window agree to float precision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from lstm.features import FeatureSpec
from lstm.forecaster import INFERENCE_CHUNK, Forecaster, InferenceReport
from lstm.intervals import level_key
from lstm.panel import TS, ColumnNames, Y, interpolate_flat, to_ns, validate_columns
from lstm.windows import RawWindows

TARGET_KEYS = (Y, "requests_target")  # the seed called the target requests_target
TIME_KEYS = (TS, "timestamp")


# --------------------------------------------------------------------------- batch path
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


def to_slot(ts: pd.Timestamp | str, freq_ns: int) -> int:
    """A timestamp (naive = UTC) -> its slot number, floored to the grid."""
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.value // freq_ns)


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
        return _empty_raw(spec), ids, report
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
    return str(pd.Timestamp(slot * spec.freq_ns, tz="UTC"))


def _empty_raw(spec: FeatureSpec) -> RawWindows:
    return RawWindows(
        y=np.zeros((0, spec.window)),
        exog=np.zeros((0, spec.window, len(spec.exog))),
        origin_slot=np.zeros(0, dtype=np.int64),
        lags=np.zeros((0, spec.window + spec.horizon, len(spec.lags))),
        series=np.zeros(0, dtype=np.int64),
    )


def as_forecaster(model, scaler_features=None, scaler_target=None, metadata=None) -> Forecaster:
    """Accept a Forecaster, or the seed's (model, scalers, metadata) parts of one."""
    if isinstance(model, Forecaster):
        return model
    from lstm.artifacts import forecaster_from_parts

    if metadata is None:
        raise ValueError("pass the model metadata (it holds the feature spec and intervals)")
    return forecaster_from_parts(model, scaler_features, scaler_target, metadata)


def batch_predict(
    model,
    scaler_features=None,
    scaler_target=None,
    data_list: pd.DataFrame | Sequence[Mapping] | None = None,
    expected_features: Sequence[str] | None = None,
    metadata: dict | None = None,
    device: str = "cpu",
    *,
    as_of: pd.Timestamp | str | None = None,
    level: float | None = None,
    chunk_size: int = INFERENCE_CHUNK,
):
    """Forecast many series in one vectorised pass (chunked to bound memory).

    With a long history DataFrame: returns (forecasts frame, InferenceReport) for every
    series, issued at `as_of` (default: the latest slot in the frame). With a list of the
    seed's input dicts: returns one result dict per input, like `real_time_predict`, with
    'index' and 'status' ('success' or 'error' and the message).
    """
    forecaster = as_forecaster(model, scaler_features, scaler_target, metadata)
    if isinstance(data_list, pd.DataFrame):
        return forecaster.forecast(data_list, as_of, level=level, chunk_size=chunk_size)
    results: list[dict | None] = [None] * len(data_list or [])
    raws, where = [], []
    for i, data in enumerate(data_list or []):
        ok, msg = validate_real_time_input(
            data, expected_features or input_keys(forecaster.spec), forecaster.spec.window
        )
        if not ok:
            results[i] = {"index": i, "status": "error", "error": msg, "prediction": None}
            continue
        raws.append(raw_from_dict(data, forecaster.spec))
        where.append(i)
    if raws:
        raw = _stack(raws)
        arrays = forecaster.predict_raw(raw, chunk_size=chunk_size)
        for k, i in enumerate(where):
            res = _result(forecaster, arrays, raw, k, return_confidence=True)
            res.update(index=i, status="success")
            results[i] = res
    return results


# ------------------------------------------------------------------ single-series path
def input_keys(spec: FeatureSpec) -> list[str]:
    """Keys a real-time input dict must carry: target values, timestamps, exogenous features."""
    return [Y, TS, *spec.exog]


def validate_real_time_input(
    data_dict: Mapping, expected_features: Sequence[str], window_size: int = 12
) -> tuple[bool, str | None]:
    """Check one series' input before prediction; (True, None) or (False, what is wrong).

    The target (`value`, or the seed's `requests_target`) may hold more than `window_size`
    values: the extra history feeds the one-day/one-week lags. Every other feature needs
    at least `window_size` values (the last ones are used).
    """
    if not isinstance(data_dict, Mapping):
        return False, f"input must be a dict of feature -> values, got {type(data_dict).__name__}"
    present = set(data_dict)
    missing = []
    for f in expected_features:
        aliases = TARGET_KEYS if f in TARGET_KEYS else TIME_KEYS if f in TIME_KEYS else (f,)
        if not present.intersection(aliases):
            missing.append(f)
    if missing:
        return False, f"Missing features: {missing} (got {sorted(map(str, present))})"
    for f in expected_features:
        key = _key(data_dict, f)
        values = data_dict[key]
        if key in TIME_KEYS:  # the window's timestamps, or only the last one
            stamps = (
                list(values)
                if isinstance(values, list | tuple | np.ndarray | pd.Series)
                else [values]
            )
            if not stamps:
                return False, f"Feature {key} is empty: give the timestamp of the last value"
            try:
                pd.DatetimeIndex(pd.to_datetime(stamps[-window_size:], utc=True))
            except (ValueError, TypeError) as exc:
                return False, f"Feature {key} holds a value that is not a timestamp: {exc}"
            continue
        if not isinstance(values, list | tuple | np.ndarray | pd.Series):
            return False, f"Feature {key} must be list/array, got {type(values).__name__}"
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (ValueError, TypeError):
            flat = [v for v in values if not _is_number(v)]
            return False, f"Feature {key} has non-numeric values {flat[:3]}"
        if arr.ndim != 1:
            return (
                False,
                f"Feature {key} must be one-dimensional (one value per slot), got shape "
                f"{arr.shape}",
            )
        if len(arr) < window_size:
            return (
                False,
                f"Feature {key} should have at least {window_size} values, got {len(arr)}",
            )
        if np.isnan(arr).any():
            return (
                False,
                f"Feature {key} contains NaN values at positions {np.flatnonzero(np.isnan(arr))[:5].tolist()}",
            )
        if np.isinf(arr).any():
            return (
                False,
                f"Feature {key} contains Inf values at positions {np.flatnonzero(np.isinf(arr))[:5].tolist()}",
            )
        if key in TARGET_KEYS and (arr < 0).any():
            return False, f"Feature {key} must be >= 0 (a count); got {arr[arr < 0][:3].tolist()}"
    return True, None


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (ValueError, TypeError):
        return False


def _key(data: Mapping, name: str) -> str:
    aliases = TARGET_KEYS if name in TARGET_KEYS else TIME_KEYS if name in TIME_KEYS else (name,)
    for a in aliases:
        if a in data:
            return a
    return name


def raw_from_dict(data: Mapping, spec: FeatureSpec) -> RawWindows:
    """One series' input dict -> RawWindows of length 1 (same layout as the batch path)."""
    w, h = spec.window, spec.horizon
    y = np.asarray(data[_key(data, Y)], dtype=np.float64)
    ts = data[_key(data, TS)]
    last = pd.Timestamp(ts[-1] if isinstance(ts, list | tuple | np.ndarray | pd.Series) else ts)
    last = last.tz_localize("UTC") if last.tzinfo is None else last.tz_convert("UTC")
    origin_slot = last.value // spec.freq_ns
    n = len(y)
    lags = np.full((1, w + h, len(spec.lags)), np.nan)
    for j, lag in enumerate(spec.lags):
        pos = n - 1 + np.arange(-w + 1, h + 1) - lag
        ok = pos >= 0
        lags[0, ok, j] = y[pos[ok]]
    exog = np.zeros((1, w, len(spec.exog)))
    for j, name in enumerate(spec.exog):
        exog[0, :, j] = np.asarray(data[name], dtype=np.float64)[-w:]
    return RawWindows(
        y=y[-w:][None, :],
        exog=exog,
        origin_slot=np.array([origin_slot], dtype=np.int64),
        lags=lags,
        series=np.zeros(1, dtype=np.int64),
    )


def _stack(raws: Sequence[RawWindows]) -> RawWindows:
    return RawWindows(
        y=np.concatenate([r.y for r in raws]),
        exog=np.concatenate([r.exog for r in raws]),
        origin_slot=np.concatenate([r.origin_slot for r in raws]),
        lags=np.concatenate([r.lags for r in raws]),
        series=np.arange(len(raws)),
    )


def _result(
    forecaster: Forecaster, arrays, raw: RawWindows, k: int, return_confidence: bool
) -> dict:
    freq = forecaster.spec.freq_ns
    steps = raw.origin_slot[k] + np.arange(1, forecaster.spec.horizon + 1)
    widest = max(forecaster.levels) if forecaster.levels else None
    res = {
        "prediction": float(arrays.yhat[k, 0]),
        "prediction_scaled": float(arrays.z[k, 0]),
        "timestamp": datetime.now(UTC).isoformat(),
        "confidence_interval": None,
        "issued_at": pd.Timestamp(int(raw.origin_slot[k]) * freq, tz="UTC").isoformat(),
        "forecast": arrays.yhat[k].tolist(),
        "target_ts": [pd.Timestamp(int(s) * freq, tz="UTC").isoformat() for s in steps],
        "intervals": {
            level_key(lv): {
                "lower": arrays.lower[lv][k].tolist(),
                "upper": arrays.upper[lv][k].tolist(),
            }
            for lv in arrays.lower
        },
    }
    if return_confidence and widest is not None:
        res["confidence_interval"] = (
            float(arrays.lower[widest][k, 0]),
            float(arrays.upper[widest][k, 0]),
        )
        res["confidence_level"] = widest
    return res


def real_time_predict(
    model,
    scaler_features=None,
    scaler_target=None,
    data_dict: Mapping | None = None,
    expected_features: Sequence[str] | None = None,
    metadata: dict | None = None,
    return_confidence: bool = False,
    device: str = "cpu",
) -> dict:
    """Forecast one series from its latest values (the seed's signature and result fields).

    data_dict: {'value' (or 'requests_target'): [>= window values, oldest first],
    'ts': [timestamps of those values] (or just the last one), <exogenous>: [>= window]}.
    Returns 'prediction' (step 1), 'prediction_scaled', 'timestamp', 'confidence_interval'
    (step 1, widest calibrated level, when return_confidence) and, beyond the seed,
    'forecast' (all H steps), 'target_ts', 'intervals' per level and 'issued_at'.
    """
    forecaster = as_forecaster(model, scaler_features, scaler_target, metadata)
    expected = list(expected_features) if expected_features else input_keys(forecaster.spec)
    ok, msg = validate_real_time_input(data_dict, expected, forecaster.spec.window)
    if not ok:
        raise ValueError(f"Input validation failed: {msg}")
    raw = raw_from_dict(data_dict, forecaster.spec)
    arrays = forecaster.predict_raw(raw, exog_index=None)
    return _result(forecaster, arrays, raw, 0, return_confidence)


class PredictionBuffer:
    """Recent prediction results for monitoring (bounded; oldest dropped first)."""

    def __init__(self, max_size: int = 1000) -> None:
        self.max_size = max_size
        self.predictions: deque[dict] = deque(maxlen=max_size)

    def add(self, prediction_result: dict) -> None:
        self.predictions.append(prediction_result)

    def get_recent(self, n: int = 10) -> list[dict]:
        return list(self.predictions)[-n:] if n > 0 else []

    def get_avg_confidence(self, n: int = 100) -> float | None:
        """Mean width of the step-1 confidence intervals of the last n predictions."""
        widths = [
            p["confidence_interval"][1] - p["confidence_interval"][0]
            for p in list(self.predictions)[-n:]
            if p.get("confidence_interval")
        ]
        return float(np.mean(widths)) if widths else None

    def clear(self) -> None:
        self.predictions.clear()

    def __len__(self) -> int:
        return len(self.predictions)


def create_data_buffer(
    df: pd.DataFrame,
    frequency: str = "5min",
    window_size: int = 12,
    required_cols: Sequence[str] | None = None,
    history: int | None = None,
) -> dict:
    """A sliding buffer of one series' latest rows, for streaming real-time prediction.

    `df` has a datetime index or a `ts` column. `history` keeps more than the window of the
    target (e.g. 2016 + window slots to feed the one-week lag); default: the window.
    """
    if TS in df.columns:
        df = df.set_index(TS)
    required_cols = list(required_cols) if required_cols is not None else [Y]
    missing = [c for c in required_cols if c not in df.columns]
    if missing:
        raise ValueError(f"Missing columns: {missing}; the frame has {list(df.columns)}")
    keep = max(window_size, history or window_size)
    tail = df[required_cols].tail(keep)
    if len(tail) < window_size:
        raise ValueError(f"Not enough rows for the buffer: {len(tail)} < window {window_size}")
    return {
        "data": tail.to_numpy(dtype=np.float64),
        "features": required_cols,
        "timestamp": pd.Timestamp(tail.index[-1]),
        "frequency": frequency,
        "window_size": window_size,
        "size": keep,
    }


def update_buffer(buffer: dict, new_row_dict: Mapping) -> dict:
    """Append the newest row, drop the oldest; the buffer's timestamp advances one slot
    (or takes the row's own `ts`)."""
    new_values = np.array([[float(new_row_dict[f]) for f in buffer["features"]]])
    data = np.vstack([buffer["data"], new_values])
    buffer["data"] = data[-buffer.get("size", buffer["window_size"]) :]
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(buffer["frequency"]))
    buffer["timestamp"] = pd.Timestamp(new_row_dict.get(TS, buffer["timestamp"] + step))
    return buffer


def buffer_to_input(buffer: dict) -> dict:
    """The real_time_predict input dict of a buffer (target history, timestamps, features)."""
    data = buffer["data"]
    n = len(data)
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(buffer["frequency"]))
    last = pd.Timestamp(buffer["timestamp"])
    out = {name: data[:, j].tolist() for j, name in enumerate(buffer["features"])}
    out[TS] = [last - step * (n - 1 - i) for i in range(n)]
    return out


def last_complete_slot(now: pd.Timestamp | str, freq: str = "5min") -> pd.Timestamp:
    """The last slot whose interval has fully elapsed at `now` (UTC): a run scheduled for
    12:05:00 (or starting at 12:07) forecasts from the 12:00 slot. Deterministic in the
    scheduled time, so a late or re-run slot gives the same rows."""
    t = pd.Timestamp(now)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    return t.floor(step) - step
