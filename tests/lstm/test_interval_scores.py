"""Interval scores (issue 14): MSIS as the M4 competition defines it and an approximate
CRPS from the stored quantiles, checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lstm.metrics import interval_score, msis, quantile_crps


def test_interval_score_matches_the_m4_definition_by_hand():
    # 80% interval [8, 12]: alpha = 0.2, penalty 2 / 0.2 = 10 per unit outside
    y = np.array([10.0, 7.0, 13.5])
    lo = np.array([8.0, 8.0, 8.0])
    hi = np.array([12.0, 12.0, 12.0])
    got = interval_score(y, lo, hi, 0.8)
    np.testing.assert_allclose(got, [4.0, 4.0 + 10 * 1.0, 4.0 + 10 * 1.5])


def test_msis_divides_by_each_series_scale_and_averages_every_step():
    y = np.array([[10.0, 7.0], [100.0, 100.0]])  # [B=2, H=2]
    lo = np.array([[8.0, 8.0], [90.0, 90.0]])
    hi = np.array([[12.0, 12.0], [110.0, 110.0]])
    scale = {"a": 2.0, "b": 10.0}
    # a: (4 + 14) / 2 per step / scale 2 -> 2, 7; b: 20 / 10 -> 2, 2
    assert msis(y, lo, hi, 0.8, ["a", "b"], scale) == pytest.approx((2 + 7 + 2 + 2) / 4)
    with pytest.raises(ValueError, match="level must be in"):
        interval_score(y, lo, hi, 1.0)


def test_quantile_crps_by_hand_and_reduces_to_the_absolute_error_for_a_median():
    y = np.array([10.0, 4.0])
    median = np.array([9.0, 6.0])
    np.testing.assert_allclose(quantile_crps(y, {0.5: median}), np.abs(y - median))
    q = {0.1: np.array([8.0, 5.0]), 0.5: median, 0.9: np.array([12.0, 9.0])}
    # pinball: y=10: 0.1*2=0.2, 0.5*1=0.5, (0.9-1)*(-2)=0.2 -> 2*0.9/3 = 0.6
    #          y=4:  (0.1-1)*(-1)=0.9, (0.5-1)*(-2)=1.0, (0.9-1)*(-5)=0.5 -> 2*2.4/3 = 1.6
    np.testing.assert_allclose(quantile_crps(y, q), [0.6, 1.6])


def test_scored_mase_by_hand():
    import pandas as pd

    from lstm.evaluation import scored_mase

    t0 = pd.Timestamp("2026-12-02 12:00", tz="UTC")
    step = pd.Timedelta("5min")
    # series a: actuals 10, 12, 11 at consecutive slots -> naive error (2 + 1) / 2 = 1.5
    # series b: actuals 100, 104 -> naive error 4
    rows = pd.DataFrame(
        {
            "series_id": ["a", "a", "a", "b", "b"],
            "target_ts": [t0, t0 + step, t0 + 2 * step, t0, t0 + step],
            "y": [10.0, 12.0, 11.0, 100.0, 104.0],
            "abs_error": [3.0, 0.0, 1.5, 8.0, 4.0],
            "step": [1, 1, 2, 1, 1],
        }
    )
    freq_ns = step.value
    overall = scored_mase(rows, (), freq_ns)["mase"].iloc[0]
    # a: MAE 1.5 / 1.5 = 1.0; b: MAE 6 / 4 = 1.5; mean over series 1.25
    assert overall == pytest.approx(1.25)
    by_step = scored_mase(rows, ("step",), freq_ns).set_index("step")["mase"]
    assert by_step[1] == pytest.approx(((3.0 + 0.0) / 2 / 1.5 + 6.0 / 4) / 2)
    assert by_step[2] == pytest.approx(1.5 / 1.5)
