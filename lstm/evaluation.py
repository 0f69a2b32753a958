"""Evaluate a forecaster on chosen windows of a panel: metrics overall, per step, coverage."""

from __future__ import annotations

import numpy as np

from lstm.forecaster import Forecaster
from lstm.intervals import level_key
from lstm.metrics import calculate_metrics, interval_coverage, naive_scale, per_step_metrics
from lstm.panel import Panel
from lstm.windows import Split


def mase_scales(panel: Panel, split: Split) -> dict[str, float]:
    """Each series' naive in-sample MAE over its train part (the MASE denominators)."""
    return {
        sid: naive_scale(panel.y[panel.offsets[i] : panel.offsets[i] + split.n_train[i]])
        for i, sid in enumerate(panel.ids)
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
