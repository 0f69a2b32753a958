"""The seed's inference API, kept with its names and meaning: `real_time_predict` for one
series, `batch_predict` for many, `validate_real_time_input`, and the streaming buffers.

Every path ends in `Forecaster.predict_raw`, so a batch and a single-series forecast of the
same window agree to float precision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from lstm.artifacts import forecaster_from_parts
from lstm.errors import DataValidationError
from lstm.features import FeatureSpec
from lstm.forecaster import INFERENCE_CHUNK, Forecaster
from lstm.intervals import level_key
from lstm.panel import TS, Y
from lstm.slots import slot_ts, utc
from lstm.windows import RawWindows

TARGET_KEYS = (Y, "requests_target")  # the seed called the target requests_target
TIME_KEYS = (TS, "timestamp")


def as_forecaster(model, scaler_features=None, scaler_target=None, metadata=None) -> Forecaster:
    """Accept a Forecaster, or the seed's (model, scalers, metadata) parts of one."""
    if isinstance(model, Forecaster):
        return model
    if metadata is None:
        raise DataValidationError(
            f"got a bare {type(model).__name__} without its metadata: pass metadata= (it holds "
            "the feature spec and the intervals), or a Forecaster from ModelRegistry.load()"
        )
    return forecaster_from_parts(model, scaler_features, scaler_target, metadata)


def check_device(device: str | None) -> None:
    """Inference runs on the CPU (the seed's `device` argument is kept, and checked)."""
    if device not in (None, "cpu"):
        raise DataValidationError(
            f"device {device!r} is not supported: this library runs inference on the CPU "
            "(device='cpu')"
        )


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
    check_device(device)
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
    last = utc(ts[-1] if isinstance(ts, list | tuple | np.ndarray | pd.Series) else ts)
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
        "issued_at": slot_ts(raw.origin_slot[k], freq).isoformat(),
        "forecast": arrays.yhat[k].tolist(),
        "target_ts": [slot_ts(s, freq).isoformat() for s in steps],
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
    check_device(device)
    forecaster = as_forecaster(model, scaler_features, scaler_target, metadata)
    expected = list(expected_features) if expected_features else input_keys(forecaster.spec)
    ok, msg = validate_real_time_input(data_dict, expected, forecaster.spec.window)
    if not ok:
        raise DataValidationError(f"Input validation failed: {msg}")
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
        raise DataValidationError(
            f"Missing columns: {missing}; the frame has {list(df.columns)}. Fix: pass "
            "required_cols= naming columns the frame has"
        )
    keep = max(window_size, history or window_size)
    tail = df[required_cols].tail(keep)
    if len(tail) < window_size:
        raise DataValidationError(
            f"Not enough rows for the buffer: {len(tail)} < window {window_size}. Fix: give "
            f"at least {window_size} rows of history"
        )
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
