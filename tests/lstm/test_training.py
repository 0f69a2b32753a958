import math

import numpy as np
import pytest
import torch
from lstm_helpers import small_config
from torch import nn

from lstm import TrainConfig, TrainingError, fit_forecaster, train, validate_epoch
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
    a = fit_forecaster(synth_panel, config=small_config(epochs=2, seed=7))
    b = fit_forecaster(synth_panel, config=small_config(epochs=2, seed=7))
    c = fit_forecaster(synth_panel, config=small_config(epochs=2, seed=8))
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
        fit_forecaster(panel, config=small_config())


def test_train_schedule_averages_the_last_epochs_weights():
    from lstm.training import train_schedule

    x = torch.randn(128, 3)
    loader = batches(x, x @ torch.tensor([[1.0], [2.0], [-1.0]]))
    torch.manual_seed(0)
    start = nn.Linear(3, 1).state_dict()

    def run(lrs, average_last=0):
        model = nn.Linear(3, 1)
        model.load_state_dict(start)
        hist = train_schedule(model, loader, lrs, average_last=average_last)
        return model.state_dict(), hist

    after_1, _ = run([0.01])  # the first epoch of any run from `start` (same data order)
    after_2, _ = run([0.01, 0.01])
    averaged, hist = run([0.01, 0.01], average_last=2)
    assert [h["lr"] for h in hist] == [0.01, 0.01]
    for k in start:
        assert not torch.equal(after_1[k], after_2[k])
        np.testing.assert_allclose(averaged[k], (after_1[k] + after_2[k]) / 2, rtol=1e-5, atol=1e-6)


def test_series_weights_follow_the_inverse_naive_log_error():
    import pandas as pd

    from lstm import regularize
    from lstm.fit import _series_weights
    from lstm.windows import protocol_split

    rng = np.random.default_rng(0)
    ts = pd.date_range("2026-01-01", periods=500, freq="5min", tz="UTC")
    smooth = 1000 + 30 * np.sin(np.arange(500) / 5)  # small log steps: hard to beat, weighted up
    noisy = rng.poisson(3, 500).astype(float)  # big log steps
    df = pd.concat(
        [
            pd.DataFrame({"series_id": "smooth", "ts": ts, "value": smooth}),
            pd.DataFrame({"series_id": "noisy", "ts": ts, "value": noisy}),
        ]
    )
    panel, _ = regularize(df)
    w = _series_weights(panel, protocol_split(panel))
    assert w.mean() == pytest.approx(1.0, rel=1e-6)
    assert w[list(panel.ids).index("smooth")] > 10 * w[list(panel.ids).index("noisy")]


def test_refit_on_validation_replays_the_chosen_schedule(synth_panel):
    from dataclasses import replace

    cfg = small_config(
        epochs=3, refit_on_validation=True, refit_extra_epochs=1, refit_average_last=2
    )
    f = fit_forecaster(synth_panel, config=cfg)
    t = f.metadata["training"]
    refit = t["refit"]["history"]
    assert t["refit"]["skipped"] is None and t["refit"]["epochs"] == t["best_epoch"] + 1
    assert len(refit) == t["best_epoch"] + 1
    assert [r["lr"] for r in refit[:-1]] == [r["lr"] for r in t["history"][: t["best_epoch"]]]
    assert refit[-1]["lr"] == pytest.approx(refit[-2]["lr"] / 2)
    plain = fit_forecaster(
        synth_panel, config=replace(cfg, train=replace(cfg.train, refit_on_validation=False))
    )
    a, _ = f.predict_panel(synth_panel)
    b, _ = plain.predict_panel(synth_panel)
    assert np.abs(a.yhat - b.yhat).max() > 1e-4  # a different (refitted) network answers
    assert f.intervals is not None and f.intervals.n_calibration > 0


def _result(epochs: int, steps: int, train_seconds: float):
    from lstm.training import TrainResult

    history = [
        {"epoch": e, "steps": steps, "train_seconds": train_seconds, "lr": 1e-3}
        for e in range(1, epochs + 1)
    ]
    return TrainResult(history=history, best_epoch=epochs)


def test_the_refit_is_sized_to_the_budget_left():
    """Early stopping saw 4 epochs x 100 steps x 512 windows in 40 s (0.195 ms a window).
    The refit's schedule of 5 epochs then gets the windows per epoch that fit what is left,
    or is skipped (with the reason) when too little is left to be worth it."""
    import time as _time

    from lstm.fit import _refit_windows

    tc = TrainConfig(batch_size=512, max_windows_per_epoch=51_200, max_seconds=100)
    res = _result(4, 100, 10.0)
    now = _time.monotonic()
    full, skipped = _refit_windows(res, 10**6, 10**6, 5, now + 200, tc)
    assert (full, skipped) == (51_200, None)  # 5 x 51,200 x 0.2 ms = 51 s: fits
    half, skipped = _refit_windows(res, 10**6, 10**6, 5, now + 26, tc)
    assert skipped is None and 25_000 < half < 27_000  # 26 s left: about half the windows
    none, skipped = _refit_windows(res, 10**6, 10**6, 5, now + 5, tc)
    assert none is None and "of the budget left" in skipped
    unbounded, skipped = _refit_windows(res, 10**6, 10**6, 5, None, tc)
    assert (unbounded, skipped) == (51_200, None)


def test_a_tiny_budget_bounds_the_whole_fit_not_only_early_stopping(synth_panel):
    from dataclasses import replace

    cfg = small_config(epochs=1000)
    cfg = replace(cfg, train=replace(cfg.train, patience=1000, max_seconds=3.0))
    t = fit_forecaster(synth_panel, config=cfg).metadata["training"]
    assert t["budget_s"] == 3.0 and "budget" in t["stop_reason"]
    # early stopping had only its share (half) of the budget; the refit was planned in
    # what was left (its sizing is tested above) and replays the chosen epochs
    assert t["refit"]["epochs"] == t["best_epoch"] + cfg.train.refit_extra_epochs
