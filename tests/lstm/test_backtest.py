"""The protocol end to end: on synthetic data (the model must beat Naive) and on the NAB
folder with a small training budget (the report must have the documented shape)."""

import json

import numpy as np
import pandas as pd
import pytest
from lstm_helpers import small_config
from typer.testing import CliRunner

from forecast_cli.main import app
from lstm import DataValidationError, generate_metrics, load_dataset
from lstm.backtest import format_table, run_backtest

KEYS = {"MAE", "RMSE", "sMAPE", "WAPE", "MAPE", "MASE"}


def check_shape(report: dict) -> None:
    assert {"dataset", "freq", "horizon", "series", "filled_slots", "models"} <= set(report)
    assert set(report["models"]) == {"lstm", "naive", "seasonal_naive"}
    for name, m in report["models"].items():
        assert set(m["avg"]) == KEYS and set(m["step1"]) == KEYS
        assert isinstance(m["fit_s"], float) and isinstance(m["predict_s"], float)
        assert all(set(v) == {"MAE", "MASE"} for v in m["per_series"].values())
        assert len(m["per_series"]) == report["series"]
        assert ("coverage" in m) == (name == "lstm")
    assert set(report["models"]["lstm"]["coverage"]) == {"80", "95"}
    lstm = report["models"]["lstm"]
    assert set(lstm["msis"]) == {"80", "95"} and all(v > 0 for v in lstm["msis"].values())
    for m in report["models"].values():  # every model has a CRPS (a baseline: its median's)
        assert m["scaled_crps"] > 0
    # a point forecast's CRPS is its absolute error: the naive scaled CRPS is a scaled MAE,
    # of the same size as its MASE
    naive = report["models"]["naive"]
    assert 0.5 * naive["avg"]["MASE"] < naive["scaled_crps"] < 2 * naive["avg"]["MASE"]


def test_lstm_beats_naive_on_synthetic_metrics():
    df = generate_metrics(n_series=8, days=10, seed=5)
    cfg = small_config(
        epochs=30, max_windows_per_epoch=20_000, patience=4
    )  # no time budget: deterministic
    report = run_backtest(df, config=cfg, dataset="synthetic")
    check_shape(report)
    lstm, naive = report["models"]["lstm"], report["models"]["naive"]
    # averaged over the hour the model clearly wins; at step 1 the synthetic bursts (2-8x for
    # a few slots) favour persistence, so step 1 is not asserted here (NAB: see BENCHMARKS.md)
    assert lstm["avg"]["MASE"] < 0.9 * naive["avg"]["MASE"], format_table(report)
    assert lstm["avg"]["WAPE"] < naive["avg"]["WAPE"], format_table(report)
    cov80, cov95 = lstm["coverage"]["80"], lstm["coverage"]["95"]
    assert 65 < cov80 < 92 and 85 < cov95 <= 100 and cov80 < cov95


@pytest.mark.slow
def test_backtest_runs_on_the_nab_folder_with_a_small_budget(nab_dir, tmp_path):
    out = tmp_path / "nab.json"
    result = CliRunner().invoke(
        app, ["backtest", "--data", str(nab_dir), "--json", str(out), "--max-seconds", "15"]
    )
    assert result.exit_code == 0, result.output
    assert "seasonal_naive" in result.output
    report = json.loads(out.read_text())
    check_shape(report)
    assert report["series"] == 10 and report["horizon"] == 12 and report["filled_slots"] == 0
    naive = report["models"]["naive"]["avg"]
    # the protocol reproduces the published baseline figures (1.291 / 57.0 %)
    assert naive["MASE"] == pytest.approx(1.29, abs=0.01) and naive["WAPE"] == pytest.approx(
        57.0, abs=0.2
    )
    assert report["models"]["seasonal_naive"]["avg"]["MASE"] == pytest.approx(1.665, abs=0.01)
    assert np.isfinite(report["models"]["lstm"]["avg"]["MASE"])


def test_backtest_rejects_series_too_short_for_the_protocol():
    df = generate_metrics(n_series=2, days=0.2, seed=1)
    with pytest.raises(DataValidationError, match="too short for the protocol"):
        run_backtest(df, config=small_config())


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("a,b\n1,2\n", [], "missing column(s) ['series_id', 'ts', 'value']"),
        ("series_id,ts,value\nx,2026-01-01,abc\nx,2026-01-01 00:05,def\n", [], "must be numeric"),
        ("series_id,ts,value\nx,never,1\n", [], "cannot be parsed"),
        (
            "sid,t,v\nx,2026-01-01,1\n",
            ["--id-col", "sid", "--time-col", "t", "--target-col", "v"],
            "too short",
        ),
    ],
)
def test_cli_bad_input_gets_a_clear_error(tmp_path, content, args, message):
    path = tmp_path / "m.csv"
    path.write_text(content)
    result = CliRunner().invoke(app, ["backtest", "--data", str(path), *args])
    assert result.exit_code == 2
    assert message in result.output


GOOD = "series_id,ts,value\n" + "".join(
    f"x,2026-01-01 {h:02d}:{m:02d},{h + m}\n" for h in range(3) for m in range(0, 60, 5)
)


@pytest.mark.parametrize(
    "name, content, args, message",
    [
        ("m.csv", "", [], "cannot be read as CSV: EmptyDataError"),
        ("m.csv", "series_id,ts,value\n", [], "holds no rows"),
        ("m.parquet", "this is not parquet", [], "cannot be read as Parquet"),
        ("m.csv", "", [], None),
        ("m.csv", GOOD, ["--horizon", "0"], "Invalid value for '--horizon'"),
        ("m.csv", GOOD, ["--horizon", "300"], "at most the shortest seasonal lag (288 slots"),
    ],
)
def test_cli_unreadable_or_impossible_input_is_a_one_line_error(
    tmp_path, name, content, args, message
):
    if message is None:  # every target value negative: the only series is dropped, and said so
        content = "series_id,ts,value\nx,2026-01-01 00:00,-1\nx,2026-01-01 00:05,-2\n"
        message = "no series left to backtest: every one was dropped: 'x'"
    path = tmp_path / name
    path.write_text(content)
    result = CliRunner().invoke(app, ["backtest", "--data", str(path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_json_report_is_strict_json_with_null_for_undefined_figures():
    from lstm.backtest import report_json

    text = report_json({"a": float("nan"), "b": [1.5, float("inf")], "c": {"d": np.float64(2)}})
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": {"d": 2.0}}


def test_seasonal_lags_follow_the_grid():
    from lstm import ForecastConfig

    assert ForecastConfig().lag_slots() == (288, 2016)
    assert ForecastConfig(freq="1h").lag_slots() == (24, 168)
    assert ForecastConfig(freq="1h", lags=(48,)).lag_slots() == (48,)


def test_long_parquet_input_with_custom_columns(tmp_path):
    df = generate_metrics(n_series=2, days=0.5, seed=2).rename(
        columns={"series_id": "svc", "ts": "time"}
    )
    df.to_parquet(tmp_path / "m.parquet")
    frame, cols = load_dataset(tmp_path / "m.parquet")
    assert list(frame.columns[:2]) == ["svc", "time"] and isinstance(frame, pd.DataFrame)
