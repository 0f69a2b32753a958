"""The training recipe of a `Forecaster`, read top to bottom (like nanoGPT's train.py).

    check the config against the data -> feature spec -> training and validation origins
    -> scalers -> (feature ranking) -> network -> early stopping on validation windows
    -> conformal intervals from validation residuals -> refit on train + validation
    -> metadata

Windows are gathered and encoded lazily per batch, so memory does not grow with the data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch

from lstm.config import ForecastConfig
from lstm.errors import DataValidationError, TrainingError
from lstm.features import FeatureScaler, FeatureSpec, TargetScaler, encode
from lstm.forecaster import Forecaster
from lstm.intervals import ConformalIntervals
from lstm.model import LSTMConfig, LSTMModel
from lstm.panel import Panel
from lstm.selection import select_features_lstm
from lstm.slots import freq_to_ns
from lstm.training import (
    BatchIterator,
    TrainResult,
    set_seed,
    set_threads,
    train,
    train_schedule,
)
from lstm.windows import Split, expand_ranges, gather, protocol_split, train_origins, val_origins

log = logging.getLogger(__name__)

VAL_BATCH = 8192  # validation batches are forward-only: larger is faster


def fit_forecaster(
    panel: Panel,
    split: Split | None = None,
    config: ForecastConfig | None = None,
    calibration: tuple[Panel, Split] | None = None,
) -> Forecaster:
    """Train on each series' train part, early-stop on its validation part, then (by
    default) refit on train + validation with the schedule early stopping chose.

    Intervals: with `calibration` (a panel of series the model never trains on, and its
    split), split-conformal quantiles of the final network's residuals on their validation
    windows; without it, of the first network's residuals on the training series'
    validation windows."""
    cfg = config or ForecastConfig()
    tc = cfg.train
    t_start = time.monotonic()
    set_seed(tc.seed)
    set_threads(tc.num_threads)

    # 1. the data and the features the model sees
    if freq_to_ns(cfg.freq) != panel.freq_ns:
        raise DataValidationError(
            f"config freq {cfg.freq!r} does not match the data's grid "
            f"({pd.Timedelta(panel.freq_ns, 'ns')})"
        )
    split = split or protocol_split(panel)
    spec = _feature_spec(panel, cfg)
    tr = train_origins(panel, split, spec.window, spec.horizon)
    va = val_origins(panel, split, spec.window, spec.horizon)
    _check_windows(panel, split, spec, tr, va)
    train_pos = _train_positions(panel, split)

    selection = None
    if cfg.select_top_k is not None or cfg.rank_features:
        selection = select_features_lstm(
            panel, origins=tr, spec=spec, top_k=cfg.select_top_k, seed=tc.seed
        )
        spec = selection.apply(spec)
    exog_idx = [panel.exog_names.index(c) for c in spec.exog]
    feature_scaler = FeatureScaler().fit(spec.exog, panel.exog[np.ix_(train_pos, exog_idx)])
    target_scaler = cfg.target_scaler

    # 2. the network and lazy batches of windows
    mcfg = LSTMConfig(
        **{
            **asdict(cfg.model),
            "input_size": spec.input_size,
            "future_size": spec.future_size,
            "horizon": spec.horizon,
        }
    )
    model = LSTMModel(mcfg)
    weights = _series_weights(panel, split) if tc.series_weighting else None
    batches = _Batches(panel, spec, target_scaler, feature_scaler, exog_idx, weights)
    train_loader = BatchIterator(
        len(tr), batches.of(tr), tc.batch_size, True, tc.seed, tc.max_windows_per_epoch
    )
    val_loader = _CachedBatches(
        BatchIterator(len(va), batches.of(va), VAL_BATCH, False, tc.seed, tc.max_val_windows)
    )
    log.info(
        "fit: %d series, %d train / %d validation windows, features in %s, future %s",
        panel.n_series,
        len(tr),
        len(va),
        spec.input_names,
        spec.future_names,
    )

    # 3. early stopping on the validation windows, within its share of the budget
    deadline = t_start + tc.max_seconds if tc.max_seconds else None
    refit_on = tc.refit_on_validation
    result: TrainResult = train(
        model, train_loader, val_loader, tc, deadline=_share(t_start, tc, refit_on)
    )
    forecaster = Forecaster(spec, model, target_scaler, feature_scaler, None)

    # 4. intervals: split-conformal quantiles of held-out residuals
    if calibration is None:
        forecaster.intervals = _calibrate(forecaster, panel, va, cfg)
        calibrated_on = {"series": "training series", "network": "early-stopping network"}

    # 5. refit a fresh network on train + validation (the most recent data matter most),
    #    with the schedule early stopping chose, in what is left of the budget
    refit = None
    if refit_on and result.best_epoch > 0:
        both = expand_ranges(
            panel.offsets,
            np.full(panel.n_series, spec.window - 1),
            split.n_train + split.n_val - 1 - spec.horizon,
        )
        lrs = [row["lr"] for row in result.history[: result.best_epoch]]
        lrs += [lrs[-1] * 0.5] * tc.refit_extra_epochs
        per_epoch, skipped = _refit_windows(result, len(tr), len(both), len(lrs), deadline, tc)
        refit = {"epochs": len(lrs), "windows_per_epoch": per_epoch, "skipped": skipped}
        if skipped is None:
            set_seed(tc.seed)
            model_b = LSTMModel(mcfg)
            loader_b = BatchIterator(
                len(both), batches.of(both), tc.batch_size, True, tc.seed, per_epoch
            )
            refit["history"] = train_schedule(
                model_b, loader_b, lrs, tc, tc.refit_average_last, deadline
            )
            forecaster.model = model_b.eval()
        else:
            log.warning("refit skipped: %s", skipped)
    if calibration is not None:
        cal_panel, cal_split = calibration
        cal = val_origins(cal_panel, cal_split, spec.window, spec.horizon)
        if len(cal) == 0:
            raise TrainingError("no calibration windows in the held-out series' validation parts")
        forecaster.intervals = _calibrate(forecaster, cal_panel, cal, cfg)
        calibrated_on = {"series": "held-out series", "network": "final network"}
    calibrated_on["windows"] = int(forecaster.intervals.n_calibration)

    # 6. what was trained on, and how
    first = panel.timestamps(panel.offsets[:-1])
    end_train = panel.timestamps(panel.offsets[:-1] + split.n_train + split.n_val - 1)
    forecaster.metadata = {
        "config": cfg.to_dict(),
        "features": spec.to_dict(),
        "feature_selection": None if selection is None else selection.to_dict(),
        "training": {
            "series": int(panel.n_series),
            "train_windows": int(len(tr)),
            "val_windows": int(len(va)),
            "data_start": str(first.min()),
            "data_end": str(end_train.max()),
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "epochs_run": len(result.history),
            "steps": result.steps,
            "stop_reason": result.stop_reason,
            "seconds": round(time.monotonic() - t_start, 3),
            "budget_s": tc.max_seconds,
            "history": result.history,
            "refit": refit,
            "calibration": calibrated_on,
        },
    }
    return forecaster


# ----------------------------------------------------------------------- pure helpers
#: the refit is skipped when the budget left would give it less than this share of the
#: windows per epoch early stopping trained on (too few steps to beat the first network)
MIN_REFIT_SHARE = 0.25


def _share(t_start: float, tc, refit_on: bool) -> float | None:
    """The deadline of early stopping: all of the budget, or its share before a refit."""
    if not tc.max_seconds:
        return None
    return t_start + tc.max_seconds * (tc.early_stop_share if refit_on else 0.95)


def _refit_windows(
    result: TrainResult, n_train: int, n_both: int, n_epochs: int, deadline, tc
) -> tuple[int | None, str | None]:
    """Windows per refit epoch so that the whole schedule fits the budget left, from the
    measured speed of early stopping; (None, reason) when the refit should be skipped."""
    full = min(n_both, tc.max_windows_per_epoch or n_both)
    if deadline is None:
        return tc.max_windows_per_epoch, None
    done = [r for r in result.history if r.get("steps")]
    seen = sum(min(r["steps"] * tc.batch_size, n_train) for r in done)
    busy = sum(r["train_seconds"] for r in done)
    if seen == 0 or busy <= 0:
        return None, "no measured training speed"
    per_window = busy / seen
    left = deadline - time.monotonic()
    fits = int(left / (per_window * n_epochs)) if left > 0 else 0
    if fits >= full:
        return tc.max_windows_per_epoch, None
    if fits < MIN_REFIT_SHARE * full:
        return None, (
            f"{max(left, 0):.0f}s of the budget left; the schedule ({n_epochs} epochs of "
            f"{full} windows) needs about {per_window * n_epochs * full:.0f}s"
        )
    return fits, None


def _feature_spec(panel: Panel, cfg: ForecastConfig) -> FeatureSpec:
    lags = cfg.check_horizon()
    exog = tuple(panel.exog_names) if cfg.exog is None else tuple(cfg.exog)
    missing = [c for c in exog if c not in panel.exog_names]
    if missing:
        raise DataValidationError(
            f"exogenous feature(s) {missing} not in the data; it has {list(panel.exog_names)}"
        )
    return FeatureSpec(
        window=cfg.window,
        horizon=cfg.horizon,
        freq_ns=panel.freq_ns,
        calendar=tuple(cfg.calendar),
        exog=exog,
        lags=lags,
        use_level=cfg.use_level,
        lags_in_window=cfg.lags_in_window,
    )


def _check_windows(
    panel: Panel, split: Split, spec: FeatureSpec, tr: np.ndarray, va: np.ndarray
) -> None:
    if len(tr) == 0:
        short = panel.ids[split.n_train < spec.window + spec.horizon]
        raise TrainingError(
            f"no training windows: every series needs at least window + horizon = "
            f"{spec.window + spec.horizon} slots in its train part; too short: "
            f"{list(short[:5])}"
        )
    if len(va) == 0:
        raise TrainingError(
            "no validation windows: series are too short for a validation part of "
            f"{spec.horizon} slots after the window"
        )


def _calibrate(
    forecaster: Forecaster, panel: Panel, origins: np.ndarray, cfg: ForecastConfig
) -> ConformalIntervals:
    """Split-conformal intervals from the residuals of at most `max_calibration_windows`
    windows ending at `origins` (a fixed-seed sample when there are more)."""
    if cfg.max_calibration_windows and len(origins) > cfg.max_calibration_windows:
        rng = np.random.default_rng(cfg.train.seed)
        origins = np.sort(rng.choice(origins, cfg.max_calibration_windows, replace=False))
    spec = forecaster.spec
    exog_idx = [panel.exog_names.index(c) for c in spec.exog]
    raw = gather(panel, origins, spec.window, spec.horizon, spec.lags)
    enc = encode(raw, spec, forecaster.target_scaler, forecaster.feature_scaler, exog_idx)
    residuals = enc.z_target - forecaster._forward(enc)
    return ConformalIntervals.fit(residuals, enc.loc, cfg.levels, n_bins=cfg.interval_bins)


def _series_weights(panel: Panel, split: Split) -> np.ndarray:
    """[N] float32: 1 / each series' in-sample naive MAE in log space, mean 1 over series.

    The loss then weighs every series like MASE does (error relative to how hard the
    series is), instead of letting noisy low-count series dominate log-space errors.
    Training-only: inference needs no per-series state.
    """
    ly = np.log1p(np.maximum(panel.y, 0.0))
    diff = np.abs(np.diff(ly, prepend=ly[:1]))
    pos = _train_positions(panel, split)
    series = panel.series_index[pos]
    first = np.isin(pos, panel.offsets[:-1])  # no difference across a series boundary
    sums = np.bincount(series[~first], weights=diff[pos][~first], minlength=panel.n_series)
    counts = np.bincount(series[~first], minlength=panel.n_series)
    scale = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    scale = np.where(np.isfinite(scale) & (scale > 1e-3), scale, np.nanmedian(scale))
    w = 1.0 / scale
    return (w / w.mean()).astype(np.float32)


def _train_positions(panel: Panel, split: Split) -> np.ndarray:
    return expand_ranges(panel.offsets, np.zeros(panel.n_series, np.int64), split.n_train - 1)


class _Batches:
    """Turns index arrays into encoded tensor batches of windows ending at given origins."""

    def __init__(
        self,
        panel: Panel,
        spec: FeatureSpec,
        target_scaler: TargetScaler,
        feature_scaler: FeatureScaler,
        exog_idx: list[int],
        weights: np.ndarray | None,
    ) -> None:
        self.panel, self.spec = panel, spec
        self.target_scaler, self.feature_scaler = target_scaler, feature_scaler
        self.exog_idx, self.weights = exog_idx, weights

    def of(self, origins: np.ndarray):
        def batch(idx: np.ndarray) -> tuple[torch.Tensor, ...]:
            s = self.spec
            raw = gather(self.panel, origins[idx], s.window, s.horizon, s.lags)
            enc = encode(raw, s, self.target_scaler, self.feature_scaler, self.exog_idx)
            out = (
                torch.from_numpy(enc.x),  # [B, W, F_in]
                torch.from_numpy(enc.fut),  # [B, H, F_fut]
                torch.from_numpy(enc.z_target),  # [B, H]
            )
            if self.weights is not None:
                out = (*out, torch.from_numpy(self.weights[raw.series]))  # [B]
            return out

        return batch


class _CachedBatches:
    """Materialise a fixed (validation) batch sequence once and replay it every epoch."""

    def __init__(self, source) -> None:
        self.source = source
        self.batches = None

    def __iter__(self):
        if self.batches is None:
            self.batches = list(self.source)
        return iter(self.batches)
