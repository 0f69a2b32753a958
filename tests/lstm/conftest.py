from __future__ import annotations

import pytest
from lstm_helpers import small_config

from lstm import Forecaster, fit_forecaster, generate_metrics, regularize


@pytest.fixture(scope="session")
def synth_frame():
    return generate_metrics(n_series=6, days=6, seed=3)


@pytest.fixture(scope="session")
def synth_panel(synth_frame):
    panel, _ = regularize(synth_frame)
    return panel


@pytest.fixture(scope="session")
def small_forecaster(synth_panel) -> Forecaster:
    return fit_forecaster(synth_panel, config=small_config())
