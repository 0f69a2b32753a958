"""Online recalibration (issue 14): a rolling conformal factor over scored forecasts."""

from __future__ import annotations

import numpy as np

from lstm.online import MIN_SCORES, half_width_scores, live_factors, online_factors, stretch

Z80 = 1.2815515655446004  # the 90th percentile of N(0, 1): an 80% interval is +-Z80 sigma


def _drifting(n: int = 8000, h: int = 3, seed: int = 0):
    """Forecasts issued one slot apart; the noise doubles half-way; the model's intervals
    stay calibrated for the first half (sigma 1)."""
    rng = np.random.default_rng(seed)
    sigma = np.where(np.arange(n) < n // 2, 1.0, 2.0)[:, None]
    y = rng.normal(0.0, 1.0, (n, h)) * sigma
    m = np.zeros((n, h))
    lo, hi = m - Z80, m + Z80
    issued = np.arange(n, dtype=np.float64)
    observed = issued[:, None] + np.arange(1, h + 1)[None, :]
    return y, m, lo, hi, issued, observed


def _coverage(y, lo, hi) -> float:
    return float(((y >= lo) & (y <= hi)).mean())


def test_recalibration_tracks_nominal_coverage_when_the_noise_doubles():
    y, m, lo, hi, issued, observed = _drifting()
    n = len(y)
    s = half_width_scores(y, m, lo, hi)
    f = online_factors(issued, observed, s, 0.8)
    lo2, hi2 = stretch(m, lo, hi, f)
    late = slice(n // 2 + 2500, n)  # once the window has refilled after the change
    static, online = (
        _coverage(y[late], lo[late], hi[late]),
        _coverage(y[late], lo2[late], hi2[late]),
    )
    assert abs(static - 0.48) < 0.05  # P(|N(0, 2)| < 1.28)
    assert abs(online - 0.80) < 0.03, online
    early = slice(2500, n // 2)
    assert abs(_coverage(y[early], lo2[early], hi2[early]) - 0.80) < 0.03
    # stable: the factor moves slowly from one forecast to the next
    assert np.abs(np.diff(f[:, 0])).max() < 0.1
    # the median is untouched
    np.testing.assert_array_equal((lo2 + hi2) / 2, m)


def test_a_factor_uses_no_residual_from_the_future():
    y, m, lo, hi, issued, observed = _drifting(n=3000)
    s = half_width_scores(y, m, lo, hi)
    f = online_factors(issued, observed, s, 0.8)
    cut = 2000.0  # change every actual observed at or after slot 2000
    s2 = np.where(observed >= cut, s * 50.0, s)
    f2 = online_factors(issued, observed, s2, 0.8)
    before = issued <= cut  # issued at or before the cut: only saw actuals observed before it
    np.testing.assert_array_equal(f[before], f2[before])
    assert not np.array_equal(f[~before], f2[~before])  # and the change is seen afterwards


def test_with_little_scored_history_the_model_calibration_is_kept():
    y, m, lo, hi, issued, observed = _drifting(n=MIN_SCORES + 5, h=2)
    s = half_width_scores(y, m, lo, hi)
    f = online_factors(issued, observed, s, 0.8, pool_steps=False)
    # the first MIN_SCORES forecasts of each step had fewer than MIN_SCORES scores observed
    assert (f[:MIN_SCORES] == 1.0).all()
    lo2, hi2 = stretch(m[:MIN_SCORES], lo[:MIN_SCORES], hi[:MIN_SCORES], f[:MIN_SCORES])
    np.testing.assert_array_equal(lo2, lo[:MIN_SCORES])  # factor 1: the model's interval
    # pooled over the 2 steps, MIN_SCORES scores are there after about MIN_SCORES / 2
    # forecasts: before that the factor is 1, after it the pooled factor serves both steps
    pooled = online_factors(issued, observed, s, 0.8)
    first = int(np.argmax(pooled[:, 0] != 1.0))
    assert MIN_SCORES // 2 <= first <= MIN_SCORES // 2 + 2
    assert (pooled[:first] == 1.0).all()
    np.testing.assert_array_equal(pooled[first:MIN_SCORES, 0], pooled[first:MIN_SCORES, 1])


def test_live_factors_follow_the_same_rule_as_the_replay():
    y, m, lo, hi, issued, observed = _drifting(n=4000, h=3)
    s = half_width_scores(y, m, lo, hi)
    replay = online_factors(issued, observed, s, 0.8)
    # the live rule at one origin: the scores observed before it, oldest first
    at = 3500
    seen = observed < issued[at]
    order = np.argsort(observed[seen], kind="stable")
    steps = np.broadcast_to(np.arange(1, 4), s.shape)[seen][order]
    live, used = live_factors(steps, s[seen][order], 3, 0.8)
    np.testing.assert_allclose(live, replay[at])
    assert (used == 2000).all()
    # too few scores: factor 1; a few per step but enough pooled: the pooled factor
    few, used = live_factors(steps[-150:], s[seen][order][-150:], 3, 0.8)
    np.testing.assert_array_equal(few, 1.0)
    assert (used == 0).all()
    pooled, used = live_factors(steps[-300:], s[seen][order][-300:], 3, 0.8)
    assert (pooled != 1.0).all() and len(set(pooled)) == 1 and (used == 300).all()


def test_half_width_scores_by_hand():
    s = half_width_scores(
        np.array([12.0, 7.0, 10.0]),
        np.array([10.0, 10.0, 10.0]),
        np.array([8.0, 9.0, 10.0]),
        np.array([14.0, 11.0, 10.0]),
    )
    np.testing.assert_allclose(s, [0.5, 3.0, 0.0])
