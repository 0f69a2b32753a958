"""The accuracy protocol of ../shared/BENCHMARK_PROTOCOL.md for the LSTM and baselines.

regularise -> 70/10/20 split per series -> rolling origins every 12 slots over the test part
-> MAE, RMSE, sMAPE, WAPE, MAPE, MASE (avg over the horizon and step 1), interval coverage,
fit and predict seconds, and the same for Naive and SeasonalNaive (season = 1 day).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from lstm.config import ForecastConfig
from lstm.errors import DataValidationError
from lstm.evaluation import baseline_forecasts, mase_scales, scores, seasonal_period
from lstm.fit import fit_forecaster
from lstm.intervals import level_key
from lstm.metrics import interval_coverage, msis, per_series_metrics, quantile_crps
from lstm.online import half_width_scores, online_factors, stretch
from lstm.panel import ColumnNames, Panel, PrepReport, regularize
from lstm.windows import gather, protocol_split, test_origins

log = logging.getLogger(__name__)


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def report_json(report: dict) -> str:
    """The report as strict JSON: undefined figures (NaN, inf) become null."""

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float | np.floating):
            return float(v) if np.isfinite(v) else None
        return v

    return json.dumps(clean(report), indent=2, allow_nan=False)


def run_backtest(
    df: pd.DataFrame,
    freq: str = "5min",
    horizon: int = 12,
    columns: ColumnNames = ColumnNames(),
    config: ForecastConfig | None = None,
    dataset: str = "data",
    feature_cols: Sequence[str] | None = None,
    panel: Panel | None = None,
    prep: PrepReport | None = None,
    train_ids: Sequence[str] | None = None,
) -> dict:
    """Run the protocol on a long frame and return the report (the `--json` shape).

    With `train_ids`, the model trains on those series only and is scored on every series;
    the report then also splits its MASE into trained and unseen series (`by_sample`)."""
    if panel is None:
        panel, prep = regularize(df, freq, columns, feature_cols, strict=True)
    if prep is not None and prep.dropped:
        named = ", ".join(f"{k!r} ({v})" for k, v in list(prep.dropped.items())[:5])
        if panel.n_series == 0:
            raise DataValidationError(f"no series left to backtest: every one was dropped: {named}")
        log.warning("%d series dropped: %s", len(prep.dropped), named)
    cfg = config or ForecastConfig()
    cfg = replace(cfg, horizon=horizon, freq=freq)
    cfg.check_horizon()
    split = protocol_split(panel)
    need = cfg.window + horizon
    short = [
        (str(panel.ids[i]), int(n))
        for i, n in enumerate(split.lengths)
        if split.n_val[i] < horizon
        or split.n_train[i] < need
        or split.lengths[i] - split.test_start[i] < horizon
    ]
    if short:
        raise DataValidationError(
            f"{len(short)} series too short for the protocol (70/10/20 split with window "
            f"{cfg.window} and horizon {horizon}; each part needs at least {need} slots in "
            f"train and {horizon} in validation and test): "
            + ", ".join(f"{s!r} ({n} slots)" for s, n in short[:5])
        )
    origins = test_origins(panel, split, cfg.window, horizon, stride=12)
    raw = gather(panel, origins, cfg.window, horizon, lags=(seasonal_period(panel.freq_ns),))
    ids = panel.ids[raw.series]
    scale = mase_scales(panel, split)
    target = raw.target

    trained = np.ones(panel.n_series, dtype=bool)
    if train_ids is not None:
        trained = np.isin(panel.ids, np.asarray(list(train_ids), dtype=object))
        if not trained.any():
            raise DataValidationError(
                f"none of the {len(train_ids)} train_ids is a series of the data "
                f"(first: {list(train_ids)[:3]})"
            )
    t0 = time.monotonic()
    if trained.all():
        forecaster = fit_forecaster(panel, split, cfg)
    else:
        sub = panel.select(trained)
        forecaster = fit_forecaster(sub, protocol_split(sub), cfg)
    fit_s = time.monotonic() - t0
    t0 = time.monotonic()
    arrays, _ = forecaster.predict_panel(panel, origins)
    predict_s = time.monotonic() - t0

    lstm_report = scores(target, arrays.yhat, ids, scale)
    lstm_report["coverage"] = {}
    lstm_report["width"] = {}
    lstm_report["msis"] = {}
    quantiles = {0.5: arrays.yhat}
    for lv in forecaster.levels:
        cov, width = interval_coverage(target, arrays.lower[lv], arrays.upper[lv])
        lstm_report["coverage"][level_key(lv)] = cov
        lstm_report["width"][level_key(lv)] = width
        lstm_report["msis"][level_key(lv)] = msis(
            target, arrays.lower[lv], arrays.upper[lv], lv, ids, scale
        )
        quantiles[(1 - lv) / 2], quantiles[(1 + lv) / 2] = arrays.lower[lv], arrays.upper[lv]
    # CRPS from the median and the interval bounds, scaled like MASE (comparable to it:
    # with the median alone it equals the scaled MAE)
    lstm_report["scaled_crps"] = _scaled_mean(quantile_crps(target, quantiles), ids, scale)
    lstm_report["online"] = _online_intervals(
        panel, origins, target, arrays, forecaster.levels, ids, scale
    )
    lstm_report["fit_s"] = round(fit_s, 2)
    lstm_report["predict_s"] = round(predict_s, 3)
    lstm_report["per_series"] = per_series_metrics(target, arrays.yhat, ids, scale)
    lstm_report["training"] = {
        k: forecaster.metadata["training"][k]
        for k in ("best_epoch", "epochs_run", "steps", "stop_reason", "train_windows")
    }

    if not trained.all():
        seen = trained[raw.series]
        lstm_report["by_sample"] = {
            name: {
                "series": int(mask_s.sum()),
                "MASE": scores(target[m], arrays.yhat[m], ids[m], scale)["avg"]["MASE"],
            }
            for name, mask_s, m in (
                ("trained", trained, seen),
                ("unseen", ~trained, ~seen),
            )
        }
    models = {"lstm": lstm_report}
    t0 = time.monotonic()
    baselines = baseline_forecasts(raw)
    baseline_s = round(time.monotonic() - t0, 4)
    for name, pred in baselines.items():
        rep = scores(target, pred, ids, scale)
        rep["scaled_crps"] = _scaled_mean(quantile_crps(target, {0.5: pred}), ids, scale)
        rep["fit_s"] = 0.0
        rep["predict_s"] = baseline_s
        rep["per_series"] = per_series_metrics(target, pred, ids, scale)
        models[name] = rep

    return {
        "dataset": dataset,
        "freq": freq,
        "horizon": int(horizon),
        "series": int(panel.n_series),
        "filled_slots": int(prep.filled_slots if prep else 0),
        "forecasts": int(len(origins)),
        "models": models,
        "settings": {
            "window": cfg.window,
            "lags": list(cfg.lag_slots()),
            "features": forecaster.spec.input_names,
            "future_features": forecaster.spec.future_names,
            "hidden_size": cfg.model.hidden_size,
            "num_layers": cfg.model.num_layers,
            "loss": cfg.train.loss,
            "max_seconds": cfg.train.max_seconds,
            "seed": cfg.train.seed,
        },
        "machine": machine_info(),
        "prep": prep.as_dict() if prep else None,
    }


def _online_intervals(panel, origins, target, arrays, levels, ids, scale) -> dict:
    """Replay the test part with online recalibration (lstm.online): each forecast's
    interval stretched by the rolling conformal factor of the scores observed before its
    origin (slot o + h is known to origins after it). Coverage, width and MSIS per level."""
    h = target.shape[1]
    issued = panel.slot[origins].astype(np.float64)  # slot numbers: one clock for all series
    observed = issued[:, None] + np.arange(1, h + 1)[None, :]
    out: dict = {"coverage": {}, "width": {}, "msis": {}, "mean_factor": {}}
    for lv in levels:
        lo, hi = arrays.lower[lv], arrays.upper[lv]
        s = half_width_scores(target, arrays.yhat, lo, hi)
        f = online_factors(issued, np.where(np.isnan(target), np.nan, observed), s, lv)
        lo2, hi2 = stretch(arrays.yhat, lo, hi, f)
        key = level_key(lv)
        out["coverage"][key], out["width"][key] = interval_coverage(target, lo2, hi2)
        out["msis"][key] = msis(target, lo2, hi2, lv, ids, scale)
        out["mean_factor"][key] = float(np.mean(f))
    return out


def _scaled_mean(values: np.ndarray, ids: np.ndarray, scale: dict[str, float]) -> float:
    """Mean of per-forecast [B, H] values divided by their series' MASE scale."""
    denom = np.array([scale.get(str(s), np.nan) for s in ids], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = values / denom
    ok = np.isfinite(scaled)
    return float(scaled[ok].mean()) if ok.any() else float("nan")


def format_table(report: dict) -> str:
    """The backtest report as a fixed-width table (MASE, WAPE, sMAPE, coverage, time)."""
    head = (
        f"{'model':<16}{'MASE avg':>9}{'MASE s1':>9}{'WAPE %':>8}{'sMAPE %':>9}"
        f"{'MAE':>9}{'RMSE':>9}{'cov80':>7}{'cov95':>7}{'MSIS80':>8}{'MSIS95':>8}{'sCRPS':>7}"
        f"{'fit s':>8}"
    )
    lines = [
        f"dataset {report['dataset']}: {report['series']} series, freq {report['freq']}, "
        f"horizon {report['horizon']}, {report['forecasts']} forecast origins, "
        f"{report['filled_slots']} slots filled",
        head,
        "-" * len(head),
    ]
    for name, m in report["models"].items():
        cov, ms, nan = m.get("coverage", {}), m.get("msis", {}), float("nan")
        lines.append(
            f"{name:<16}{m['avg']['MASE']:>9.3f}{m['step1']['MASE']:>9.3f}{m['avg']['WAPE']:>8.1f}"
            f"{m['avg']['sMAPE']:>9.1f}{m['avg']['MAE']:>9.2f}{m['avg']['RMSE']:>9.1f}"
            f"{cov.get('80', nan):>7.1f}{cov.get('95', nan):>7.1f}"
            f"{ms.get('80', nan):>8.2f}{ms.get('95', nan):>8.2f}{m.get('scaled_crps', nan):>7.3f}"
            f"{m['fit_s']:>8.1f}"
        )
        on = m.get("online")
        if on:  # the same forecasts, intervals recalibrated online (lstm.online)
            lines.append(
                f"{'  online intervals':<69}{on['coverage'].get('80', nan):>7.1f}"
                f"{on['coverage'].get('95', nan):>7.1f}{on['msis'].get('80', nan):>8.2f}"
                f"{on['msis'].get('95', nan):>8.2f}"
            )
    return "\n".join(lines)
