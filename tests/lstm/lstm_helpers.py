"""Test helpers for the lstm tests (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lstm import (
    FeatureScaler,
    FeatureSpec,
    ForecastConfig,
    Forecaster,
    LSTMConfig,
    LSTMModel,
    TargetScaler,
    TrainConfig,
    export_model_and_scalers_for_api,
    save_model_weights,
)
from lstm.artifacts import build_metadata
from lstm.intervals import ConformalIntervals


def small_config(**train) -> ForecastConfig:
    """A tiny, fast configuration for tests (one-day lag only, small network)."""
    return ForecastConfig(
        lags=(288,),
        model=LSTMConfig(hidden_size=16, num_layers=1, context_size=4, decoder_hidden=16),
        train=TrainConfig(
            **{"epochs": 4, "batch_size": 256, "max_windows_per_epoch": 4000, **train}
        ),
    )


def export(forecaster: Forecaster, folder: Path) -> Path:
    weights = save_model_weights(forecaster.model, folder.parent / f"{folder.name}-weights.pt")
    md = build_metadata(forecaster, version="v-test", created_at="2026-01-05T00:00:00+00:00")
    info = export_model_and_scalers_for_api(
        weights, forecaster.feature_scaler, forecaster.target_scaler, md, folder
    )
    return Path(info["export_dir"])


def readme_example(folder: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def random_forecaster() -> Forecaster:
    """An untrained network with the features the small trained one lacks: two lags, two
    exogenous features, two layers, per-window std scaling, several level bins."""
    spec = FeatureSpec(exog=("error_rate", "cpu"), lags=(288, 2016), lags_in_window=True)
    torch_seed = np.random.default_rng(5)
    cfg = LSTMConfig(
        input_size=spec.input_size,
        hidden_size=8,
        num_layers=2,
        horizon=spec.horizon,
        future_size=spec.future_size,
        context_size=3,
        decoder_hidden=8,
    )
    model = LSTMModel(cfg)
    for p in model.parameters():  # deterministic weights of a useful size
        p.data = p.data.new_tensor(torch_seed.normal(0, 0.3, tuple(p.shape)))
    fs = FeatureScaler().fit(spec.exog, torch_seed.normal([0.01, 50], [0.005, 10], (500, 2)))
    resid = torch_seed.normal(0, 0.2, (2000, spec.horizon))
    intervals = ConformalIntervals.fit(resid, torch_seed.normal(3, 1, 2000), n_bins=4)
    return Forecaster(spec, model, TargetScaler(use_std=True), fs, intervals)
