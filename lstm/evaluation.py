"""One evaluation for every caller (backtest, promotion, tuning): MASE scales, the Naive
and SeasonalNaive baselines, and scores of [B, H] forecasts against their actuals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lstm.forecaster import Forecaster
from lstm.intervals import level_key
from lstm.metrics import METRIC_NAMES, calculate_metrics, interval_coverage, per_step_metrics
from lstm.panel import Panel
from lstm.windows import RawWindows, Split, expand_ranges

BASELINES = ("naive", "seasonal_naive")


def seasonal_period(freq_ns: int) -> int:
    """Slots in one day: the SeasonalNaive season."""
    return int(pd.Timedelta(days=1).value // freq_ns)


def mase_scales(panel: Panel, split: Split) -> dict[str, float]:
    """Each series' in-sample MAE of the one-step naive forecast over its train part (the
    MASE denominators; NaN for a series with fewer than 2 train slots)."""
    pos = expand_ranges(panel.offsets, np.ones(panel.n_series, np.int64), split.n_train - 1)
    series = panel.series_index[pos]
    diff = np.abs(panel.y[pos] - panel.y[pos - 1])
    sums = np.bincount(series, weights=diff, minlength=panel.n_series)
    counts = np.bincount(series, minlength=panel.n_series)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return dict(zip(panel.ids.tolist(), scale.tolist(), strict=True))


def baseline_forecasts(raw: RawWindows) -> dict[str, np.ndarray]:
    """Naive (last value) and SeasonalNaive (the value one season earlier; the last value
    where that is unknown) for windows gathered with `lags=(season,)`: name -> [B, H]."""
    h = raw.target_lags.shape[1]
    last = raw.y[:, -1:]
    seasonal = raw.target_lags[:, :, 0]
    return {
        "naive": np.repeat(last, h, axis=1),
        "seasonal_naive": np.where(np.isnan(seasonal), last, seasonal),
    }


def scores(target: np.ndarray, pred: np.ndarray, series: np.ndarray, scale) -> dict:
    """The protocol's metrics over all steps ('avg') and at step 1 ('step1')."""
    avg = calculate_metrics(target, pred, series, scale)
    step1 = calculate_metrics(target[:, 0], pred[:, 0], series, scale)
    return {
        "avg": {k: avg[k] for k in METRIC_NAMES},
        "step1": {k: step1[k] for k in METRIC_NAMES},
    }


def evaluate(
    forecaster: Forecaster,
    panel: Panel,
    origins: np.ndarray,
    scale: dict[str, float] | None = None,
) -> dict:
    """Forecast from `origins` and score against the actuals that follow them.

    Returns {'metrics': avg over steps, 'step1': ..., 'per_step': DataFrame,
    'coverage': {level: %}, 'predictions': [B, H], 'actuals': [B, H], 'series': [B]}.
    """
    arrays, raw = forecaster.predict_panel(panel, origins)
    target = raw.target
    complete = ~np.isnan(target).any(axis=1)
    target, yhat = target[complete], arrays.yhat[complete]
    ids = panel.ids[raw.series[complete]]
    coverage = {}
    for lv in forecaster.levels:
        cov, _ = interval_coverage(target, arrays.lower[lv][complete], arrays.upper[lv][complete])
        coverage[level_key(lv)] = cov
    return {
        "metrics": calculate_metrics(target, yhat, ids, scale),
        "step1": calculate_metrics(target[:, 0], yhat[:, 0], ids, scale),
        "per_step": per_step_metrics(target, yhat, ids, scale),
        "coverage": coverage,
        "predictions": yhat,
        "actuals": target,
        "series": ids,
    }


def scored_mase(rows: pd.DataFrame, by: Sequence[str], freq_ns: int) -> pd.DataFrame:
    """MASE of scored forecasts (the store's accuracy rows), per group of `by`: each
    series' mean absolute error divided by its one-step naive error over the same actuals
    (consecutive target slots in the rows), averaged over the series of the group. NaN
    where a series has no two consecutive actuals."""
    by = list(by)
    if rows.empty:
        return pd.DataFrame(columns=[*by, "mase"])
    actuals = rows.drop_duplicates(["series_id", "target_ts"])[["series_id", "target_ts", "y"]]
    actuals = actuals.sort_values(["series_id", "target_ts"])
    slot = pd.DatetimeIndex(actuals["target_ts"]).as_unit("ns").asi8 // freq_ns
    sid = actuals["series_id"].to_numpy()
    y = actuals["y"].to_numpy(dtype=np.float64)
    step = (sid[1:] == sid[:-1]) & (np.diff(slot) == 1)
    diffs = pd.DataFrame({"series_id": sid[1:][step], "d": np.abs(np.diff(y))[step]})
    scale = diffs.groupby("series_id")["d"].mean()
    per = rows.groupby([*by, "series_id"] if "series_id" not in by else by, observed=True)
    mae = per["abs_error"].mean().rename("mae").reset_index()
    mae["scale"] = mae["series_id"].map(scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        mae["mase"] = np.where(mae["scale"] > 0, mae["mae"] / mae["scale"], np.nan)
    if not by:
        return pd.DataFrame({"mase": [mae["mase"].mean()]})
    return mae.groupby(by, observed=True)["mase"].mean().reset_index()
