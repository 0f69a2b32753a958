"""Forecast accuracy metrics, exactly as ../shared/BENCHMARK_PROTOCOL.md defines them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

METRIC_NAMES = ("MAE", "RMSE", "sMAPE", "WAPE", "MAPE", "MASE")


def calculate_mape(y_true, y_pred) -> float:
    """MAPE % over the points with y > 0 only (NaN when there are none)."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    pos = y_true > 0
    if not pos.any():
        return float("nan")
    return float(np.mean(np.abs(y_true[pos] - y_pred[pos]) / y_true[pos]) * 100.0)


def calculate_smape(y_true, y_pred) -> float:
    """sMAPE % = mean(200|e| / (|y| + |yhat|)); terms with |y| + |yhat| = 0 count as 0."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    denom = np.abs(y_true) + np.abs(y_pred)
    terms = np.divide(
        200.0 * np.abs(y_true - y_pred), denom, out=np.zeros_like(denom), where=denom > 0
    )
    return float(terms.mean()) if terms.size else float("nan")


def naive_scale(y_train: np.ndarray) -> float:
    """In-sample MAE of the one-step naive forecast: the MASE denominator of one series."""
    y_train = np.asarray(y_train, dtype=np.float64)
    if len(y_train) < 2:
        return float("nan")
    return float(np.mean(np.abs(np.diff(y_train))))


def calculate_metrics(
    y_true,
    y_pred,
    series: Sequence | np.ndarray | None = None,
    scale: Mapping | Sequence | np.ndarray | None = None,
) -> dict[str, float]:
    """MAE, RMSE, sMAPE %, WAPE %, MAPE % (y > 0) and, given series and scales, MASE.

    `series` labels every forecast (broadcast against y_true: e.g. shape [B] for [B, H]
    forecasts); `scale` gives each series' naive in-sample MAE, as a mapping from label or
    an array indexed by integer label. MASE is the per-series MAE / scale, averaged over
    series (protocol step 4). Also returns MSE for the seed's callers.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true shape {y_true.shape} != y_pred shape {y_pred.shape}")
    err = (y_pred - y_true).ravel()
    abs_err = np.abs(err)
    total_y = float(np.abs(y_true).sum())
    out = {
        "MAE": float(abs_err.mean()) if err.size else float("nan"),
        "RMSE": float(np.sqrt(np.mean(err**2))) if err.size else float("nan"),
        "sMAPE": calculate_smape(y_true, y_pred),
        "WAPE": float(abs_err.sum() / total_y * 100.0) if total_y > 0 else float("nan"),
        "MAPE": calculate_mape(y_true, y_pred),
        "MSE": float(np.mean(err**2)) if err.size else float("nan"),
    }
    if series is not None and scale is not None:
        labels = np.broadcast_to(
            np.asarray(series).reshape(np.asarray(series).shape + (1,) * (y_true.ndim - 1)),
            y_true.shape,
        ).ravel()
        codes, uniques = pd.factorize(labels)
        if isinstance(scale, Mapping):
            scales = np.array([scale[u] for u in uniques], dtype=np.float64)
        else:
            scales = np.asarray(scale, dtype=np.float64)[np.asarray(uniques, dtype=np.int64)]
        sums = np.bincount(codes, weights=abs_err, minlength=len(uniques))
        counts = np.bincount(codes, minlength=len(uniques))
        mase = (sums / counts) / scales
        finite = np.isfinite(mase)
        out["MASE"] = float(mase[finite].mean()) if finite.any() else float("nan")
    return out


def per_series_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, series: np.ndarray, scale: Mapping
) -> dict[str, dict[str, float]]:
    """{series: {"MAE": f, "MASE": f}} over all steps of that series' forecasts."""
    y_true = np.asarray(y_true, dtype=np.float64)
    abs_err = np.abs(np.asarray(y_pred, dtype=np.float64) - y_true).reshape(len(y_true), -1)
    codes, uniques = pd.factorize(np.asarray(series))
    sums = np.bincount(codes, weights=abs_err.sum(axis=1), minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques)) * abs_err.shape[1]
    out = {}
    for i, sid in enumerate(uniques):
        mae = float(sums[i] / counts[i])
        sc = scale[sid]
        # a flat train part has no naive error: MASE is undefined there (NaN, not inf)
        out[str(sid)] = {"MAE": mae, "MASE": float(mae / sc) if sc > 0 else float("nan")}
    return out


def per_step_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    series: np.ndarray | None = None,
    scale: Mapping | None = None,
) -> pd.DataFrame:
    """One row of metrics per horizon step (columns of [B, H] arrays)."""
    rows = []
    for h in range(y_true.shape[1]):
        row = calculate_metrics(y_true[:, h], y_pred[:, h], series, scale)
        row["step"] = h + 1
        rows.append(row)
    return pd.DataFrame(rows).set_index("step")


def interval_coverage(y_true, lower, upper) -> tuple[float, float]:
    """(coverage %, mean width) of prediction intervals."""
    y_true = np.asarray(y_true, dtype=np.float64)
    inside = (y_true >= lower) & (y_true <= upper)
    return float(inside.mean() * 100.0), float(np.mean(np.asarray(upper) - np.asarray(lower)))


def interval_score(y_true, lower, upper, level: float) -> np.ndarray:
    """The interval (Winkler) score of each forecast, as the M4 competition defines it:
    width + (2 / alpha) x how far the actual falls outside, alpha = 1 - level. Lower is
    better; a calibrated, narrow interval scores best."""
    y, lo, hi = (np.asarray(a, dtype=np.float64) for a in (y_true, lower, upper))
    alpha = 1.0 - float(level)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level!r}")
    below = np.maximum(lo - y, 0.0)
    above = np.maximum(y - hi, 0.0)
    return (hi - lo) + (2.0 / alpha) * (below + above)


def msis(y_true, lower, upper, level: float, series: Sequence, scale: Mapping[str, float]) -> float:
    """Mean scaled interval score (M4): each forecast's interval score divided by its
    series' MASE scale (in-sample naive MAE), averaged over every forecast and step."""
    score = interval_score(y_true, lower, upper, level)  # [B, H]
    denom = np.array([scale.get(str(s), np.nan) for s in series], dtype=np.float64)
    if score.ndim == 2:
        denom = denom[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = score / denom
    ok = np.isfinite(scaled)
    return float(scaled[ok].mean()) if ok.any() else float("nan")


def quantile_crps(y_true, quantiles: Mapping[float, np.ndarray]) -> np.ndarray:
    """Approximate CRPS of each forecast from a few predictive quantiles: twice the mean
    pinball loss over the quantile levels given (the median and the interval bounds).
    Equals |y - median| when only the median is given (CRPS of a point forecast)."""
    y = np.asarray(y_true, dtype=np.float64)
    taus = sorted(quantiles)
    total = np.zeros_like(y)
    for tau in taus:
        q = np.asarray(quantiles[tau], dtype=np.float64)
        diff = y - q
        total += np.maximum(tau * diff, (tau - 1.0) * diff)
    return 2.0 * total / len(taus)
