from __future__ import annotations

import pytest

from lstm import ForecastConfig, Forecaster, LSTMConfig, TrainConfig, generate_metrics, regularize


def small_config(**train) -> ForecastConfig:
    """A tiny, fast configuration for tests (one-day lag only, small network)."""
    return ForecastConfig(
        lags=(288,),
        model=LSTMConfig(hidden_size=16, num_layers=1, context_size=4, decoder_hidden=16),
        train=TrainConfig(**{"epochs": 4, "batch_size": 256, "max_windows_per_epoch": 4000, **train}),
    )


@pytest.fixture(scope="session")
def synth_frame():
    return generate_metrics(n_series=6, days=6, seed=3)


@pytest.fixture(scope="session")
def synth_panel(synth_frame):
    panel, _ = regularize(synth_frame)
    return panel


@pytest.fixture(scope="session")
def small_forecaster(synth_panel) -> Forecaster:
    return Forecaster.fit(synth_panel, config=small_config())
