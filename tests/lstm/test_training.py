import math

import numpy as np
import pytest
import torch
from lstm_helpers import small_config
from torch import nn

from lstm import Forecaster, TrainConfig, TrainingError, train, validate_epoch
from lstm.training import make_loss


class Fixed:
    """A re-iterable list of batches."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def batches(x, y, size=32):
    return Fixed([(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)])


def test_early_stopping_restores_the_best_epoch():
    torch.manual_seed(0)
    x = torch.randn(256, 3)
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    train_loader = batches(x, x @ w)
    val_loader = batches(x, -(x @ w))  # the opposite relation: fitting train hurts validation
    model = nn.Linear(3, 1)
    result = train(
        model, train_loader, val_loader, TrainConfig(epochs=50, patience=3, lr=0.05, min_delta=0.0)
    )
    losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert result.best_epoch < len(losses)  # it did stop after worse epochs
    assert "early stop" in result.stop_reason
    restored = validate_epoch(model, val_loader, make_loss("mae"))
    assert restored == pytest.approx(min(losses), rel=1e-6)
    assert restored < losses[-1]


def test_nan_loss_guard_names_the_problem():
    x = torch.randn(64, 2)
    x[5, 0] = float("nan")
    with pytest.raises(TrainingError, match="training loss became nan"):
        train(
            nn.Linear(2, 1),
            batches(x, torch.zeros(64, 1)),
            batches(x, torch.zeros(64, 1)),
            TrainConfig(epochs=2),
        )


def test_wall_clock_budget_stops_training():
    x = torch.randn(4096, 2)
    result = train(
        nn.Linear(2, 1),
        batches(x, x[:, :1]),
        batches(x, x[:, :1]),
        TrainConfig(epochs=1000, patience=1000, max_seconds=0.2),
    )
    assert "budget" in result.stop_reason
    assert len(result.history) < 1000


def test_same_seed_same_forecasts_different_seed_differs(synth_panel):
    a = Forecaster.fit(synth_panel, config=small_config(epochs=2, seed=7))
    b = Forecaster.fit(synth_panel, config=small_config(epochs=2, seed=7))
    c = Forecaster.fit(synth_panel, config=small_config(epochs=2, seed=8))
    ya, _ = a.predict_panel(synth_panel)
    yb, _ = b.predict_panel(synth_panel)
    yc, _ = c.predict_panel(synth_panel)
    np.testing.assert_allclose(ya.yhat, yb.yhat, rtol=0, atol=1e-6)
    assert np.abs(ya.yhat - yc.yhat).max() > 1e-4


def test_fit_records_progress_and_metadata(small_forecaster):
    md = small_forecaster.metadata
    assert md["training"]["epochs_run"] == len(md["training"]["history"]) >= 1
    assert all(math.isfinite(r["val_loss"]) for r in md["training"]["history"])
    assert md["features"]["lags"] == [288]
    assert md["training"]["series"] == 6


def test_too_short_series_have_no_training_windows():
    import pandas as pd

    from lstm import regularize

    df = pd.DataFrame(
        {
            "series_id": "a",
            "ts": pd.date_range("2026-01-01", periods=20, freq="5min", tz="UTC"),
            "value": 1.0,
        }
    )
    panel, _ = regularize(df)
    with pytest.raises(TrainingError, match="no training windows"):
        Forecaster.fit(panel, config=small_config())
