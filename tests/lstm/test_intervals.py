import numpy as np

from lstm.intervals import ConformalIntervals, level_key


def test_split_conformal_coverage_on_fresh_data():
    rng = np.random.default_rng(0)
    cal = rng.standard_t(4, (4000, 3)) * np.array([0.5, 1.0, 2.0])
    ci = ConformalIntervals.fit(cal, np.zeros(4000), levels=(0.8, 0.95), n_bins=1)
    new = rng.standard_t(4, (20000, 3)) * np.array([0.5, 1.0, 2.0])
    for level in (0.8, 0.95):
        lo, hi = ci.bounds(np.zeros_like(new), np.zeros(len(new)), level)
        cover = ((new >= lo) & (new <= hi)).mean(axis=0)
        assert np.all(np.abs(cover - level) < 0.02), (level, cover)
    lo80, hi80 = ci.bounds(np.zeros((1, 3)), np.zeros(1), 0.8)
    lo95, hi95 = ci.bounds(np.zeros((1, 3)), np.zeros(1), 0.95)
    assert np.all(hi95 > hi80) and np.all(lo95 < lo80)
    assert np.all(np.diff(hi80[0]) > 0)  # wider residuals at later steps -> wider intervals


def test_level_bins_keep_coverage_per_bin():
    rng = np.random.default_rng(1)
    loc = rng.uniform(0, 8, 8000)
    noise_scale = np.where(loc < 2, 1.5, 0.2)  # low-count windows are noisier in log space
    res = rng.normal(0, 1, (8000, 1)) * noise_scale[:, None]
    binned = ConformalIntervals.fit(res, loc, levels=(0.8,), n_bins=4)
    pooled = ConformalIntervals.fit(res, loc, levels=(0.8,), n_bins=1)
    loc_new = rng.uniform(0, 8, 20000)
    scale_new = np.where(loc_new < 2, 1.5, 0.2)
    new = rng.normal(0, 1, (20000, 1)) * scale_new[:, None]
    low = loc_new < 2
    for ci, ok in ((binned, True), (pooled, False)):
        lo, hi = ci.bounds(np.zeros_like(new), loc_new, 0.8)
        inside = (new >= lo) & (new <= hi)
        assert bool(abs(inside[low].mean() - 0.8) < 0.03) is ok


def test_round_trip_and_keys():
    rng = np.random.default_rng(2)
    ci = ConformalIntervals.fit(rng.normal(size=(500, 2)), rng.uniform(size=500))
    again = ConformalIntervals.from_dict(ci.to_dict())
    np.testing.assert_array_equal(again.lo, ci.lo)
    assert again.levels == (0.8, 0.95)
    assert level_key(0.8) == "80" and level_key(0.95) == "95" and level_key(0.975) == "97.5"
