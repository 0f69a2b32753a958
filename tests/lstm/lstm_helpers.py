"""Test helpers for the lstm tests (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

from lstm import ForecastConfig, LSTMConfig, TrainConfig


def small_config(**train) -> ForecastConfig:
    """A tiny, fast configuration for tests (one-day lag only, small network)."""
    return ForecastConfig(
        lags=(288,),
        model=LSTMConfig(hidden_size=16, num_layers=1, context_size=4, decoder_hidden=16),
        train=TrainConfig(
            **{"epochs": 4, "batch_size": 256, "max_windows_per_epoch": 4000, **train}
        ),
    )
