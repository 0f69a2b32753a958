import math

import numpy as np
import pytest

from lstm import calculate_mape, calculate_metrics, plot_metrics_comparison
from lstm.metrics import interval_coverage, naive_scale, per_step_metrics


def test_metrics_against_hand_computed_values():
    y = np.array([2.0, 0.0, 4.0, 10.0])
    p = np.array([1.0, 1.0, 4.0, 5.0])
    m = calculate_metrics(y, p)
    # errors: -1, 1, 0, -5
    assert m["MAE"] == pytest.approx(7 / 4)
    assert m["RMSE"] == pytest.approx(math.sqrt(27 / 4))
    assert m["WAPE"] == pytest.approx(7 / 16 * 100)
    # MAPE only over y > 0: |1|/2, 0/4, 5/10
    assert m["MAPE"] == pytest.approx((0.5 + 0 + 0.5) / 3 * 100)
    # sMAPE: 200*1/3, 200*1/1, 0, 200*5/15
    assert m["sMAPE"] == pytest.approx((200 / 3 + 200 + 0 + 200 / 3) / 4)
    assert "MASE" not in m


def test_smape_zero_over_zero_counts_as_zero():
    assert calculate_metrics(np.zeros(3), np.zeros(3))["sMAPE"] == 0.0
    assert math.isnan(calculate_mape(np.zeros(3), np.ones(3)))


def test_mase_is_per_series_then_averaged():
    y = np.array([[1.0, 2.0], [10.0, 10.0]])
    p = np.array([[2.0, 2.0], [10.0, 14.0]])
    # series a: MAE 0.5, scale 0.5 -> 1.0; series b: MAE 2, scale 4 -> 0.5
    m = calculate_metrics(y, p, series=np.array(["a", "b"]), scale={"a": 0.5, "b": 4.0})
    assert m["MASE"] == pytest.approx(0.75)
    assert naive_scale(np.array([1.0, 3.0, 2.0])) == pytest.approx(1.5)


def test_per_step_and_coverage():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = np.array([[1.0, 3.0], [3.0, 2.0]])
    steps = per_step_metrics(y, p)
    assert list(steps.index) == [1, 2]
    assert steps.loc[1, "MAE"] == 0 and steps.loc[2, "MAE"] == pytest.approx(1.5)
    cov, width = interval_coverage(y, y - 0.5, y + np.array([[0.5, -1.0], [0.5, 0.5]]))
    assert cov == pytest.approx(75.0) and width == pytest.approx((1 + 1 + 1 - 0.5) / 4)


def test_plot_metrics_comparison_writes_png(tmp_path):
    out = plot_metrics_comparison(
        {"lstm": {"MASE": 0.9, "WAPE": 40}, "naive": {"MASE": 1.2, "WAPE": 50}},
        tmp_path / "cmp.png",
        metrics=("MASE", "WAPE"),
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
