"""The seed's data and training API (kept names, many-series meaning): datasets, the data
pipeline, shape validation, one training epoch and evaluation."""

import numpy as np
import pytest
import torch
from torch import nn

from lstm import (
    LSTMConfig,
    LSTMModel,
    TimeSeriesDataset,
    calculate_metrics,
    evaluate,
    prepare_data_pipeline,
    train_epoch,
    validate_data_shapes,
    validate_epoch,
    windows,
)
from lstm.training import make_loss
from lstm.windows import protocol_split, train_origins


def test_time_series_dataset_matches_a_plain_loop_and_batches_agree():
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(100, 120, dtype=np.float32)
    ds = TimeSeriesDataset(X, y, sequence_length=4, horizon=3)
    assert len(ds) == 20 - 4 - 3 + 1
    for i in range(len(ds)):
        xi, yi = ds[i]
        np.testing.assert_array_equal(xi.numpy(), X[i : i + 4])
        np.testing.assert_array_equal(yi.numpy(), y[i + 4 : i + 7])
    xb, yb = ds[np.array([0, 5, 13])]
    assert xb.shape == (3, 4, 2) and yb.shape == (3, 3)
    np.testing.assert_array_equal(xb[1].numpy(), ds[5][0].numpy())
    one = TimeSeriesDataset(X[:, 0], y, sequence_length=4)  # the seed's (window, next value)
    assert one[2][1].item() == y[6] and one[2][0].shape == (4, 1)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="X has 20 rows but y has 19"):
        TimeSeriesDataset(X, y[:-1])


def test_prepare_data_pipeline_windows_every_series_and_trains(synth_frame):
    train_loader, val_loader, test_loader, scaler_target, scaler_features, pipe = (
        prepare_data_pipeline(
            synth_frame, sequence_length=12, batch_size=256, lags=(288,), return_pipeline=True
        )
    )
    split = protocol_split(pipe.panel)
    assert len(pipe.train) == len(train_origins(pipe.panel, split, 12, 12))
    assert len(pipe.test) == len(windows.test_origins(pipe.panel, split, 12, 12))
    assert scaler_features.names == ("error_rate",)
    x, fut, y = next(iter(train_loader))
    assert x.shape[:2] == (256, 12) and x.shape[2] == pipe.spec.input_size
    assert fut.shape == (256, 12, pipe.spec.future_size) and y.shape == (256, 12)
    assert torch.isfinite(x).all() and torch.isfinite(y).all()

    torch.manual_seed(0)
    model = LSTMModel(
        LSTMConfig(
            input_size=pipe.spec.input_size,
            hidden_size=16,
            num_layers=1,
            future_size=pipe.spec.future_size,
        )
    )
    criterion = make_loss("mae")
    before = validate_epoch(model, val_loader, criterion)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(3):
        loss, steps = train_epoch(model, train_loader, optimizer, criterion)
        assert np.isfinite(loss) and steps == -(-len(pipe.train) // 256)
    after = validate_epoch(model, val_loader, criterion)
    assert after < 0.9 * before, (before, after)


def test_train_epoch_returns_mean_loss_and_steps_and_guards_nan():
    torch.manual_seed(1)
    x = torch.randn(100, 3)
    y = x @ torch.tensor([[2.0], [-1.0], [0.5]])
    batches = [(x[i : i + 25], y[i : i + 25]) for i in range(0, 100, 25)]
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    first, steps = train_epoch(model, batches, optimizer, nn.MSELoss())
    second, _ = train_epoch(model, batches, optimizer, nn.MSELoss())
    assert steps == 4 and second < first
    x[3, 0] = float("nan")
    with pytest.raises(Exception, match="nan"):
        train_epoch(model, [(x, y)], optimizer, nn.MSELoss())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns="value"), "Missing columns: ['value']"),
        (
            lambda d: d.assign(value=d["value"].where(d.index != 3)),
            "NaN values found in: ['value']",
        ),
        (lambda d: d[d.series_id != d.series_id.iloc[0]].head(5), "Not enough data"),
    ],
)
def test_validate_data_shapes_messages(synth_frame, mutate, message):
    ok, msg = validate_data_shapes(synth_frame, ["value"], 12)
    assert ok and msg == "Validation passed"
    ok, msg = validate_data_shapes(mutate(synth_frame.reset_index(drop=True)), ["value"], 12)
    assert not ok and message in msg, msg


def test_evaluate_scores_what_it_forecast(small_forecaster, synth_panel):
    split = protocol_split(synth_panel)
    origins = windows.test_origins(synth_panel, split, 12, 12, stride=12)
    out = evaluate(small_forecaster, synth_panel, origins)
    pred, actual, series = out["predictions"], out["actuals"], out["series"]
    assert pred.shape == actual.shape == (len(origins), 12)
    expect = calculate_metrics(actual, pred)
    assert out["metrics"]["MAE"] == pytest.approx(expect["MAE"])
    assert out["step1"]["MAE"] == pytest.approx(np.abs(actual[:, 0] - pred[:, 0]).mean())
    assert len(out["per_step"]) == 12 and set(out["coverage"]) == {"80", "95"}
    assert len(set(series)) == synth_panel.n_series
