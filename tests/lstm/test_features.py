import numpy as np
import pandas as pd

from lstm.features import FeatureScaler, FeatureSpec, TargetScaler, calendar_features, encode
from lstm.windows import RawWindows

FREQ = 300 * 10**9


def slot_of(ts: str) -> int:
    return pd.Timestamp(ts, tz="UTC").value // FREQ


def test_calendar_features_known_values():
    # 2026-01-03 is a Saturday; 06:00 is a quarter of the day
    f = calendar_features(
        np.array([slot_of("2026-01-03 06:00")]), FREQ, ("hour_sin", "hour_cos", "is_weekend")
    )
    np.testing.assert_allclose(f[0], [1.0, 0.0, 1.0], atol=1e-12)
    f = calendar_features(
        np.array([slot_of("2026-01-05 00:00")]),
        FREQ,
        ("hour_sin", "hour_cos", "is_weekend", "dow_sin"),
    )
    np.testing.assert_allclose(f[0], [0.0, 1.0, 0.0, 0.0], atol=1e-12)  # Monday midnight


def test_target_scaling_round_trip_across_levels():
    rng = np.random.default_rng(0)
    levels = np.array([0.0, 0.5, 3, 80, 5_000, 2_000_000])
    y = rng.poisson(levels[:, None], (6, 12)).astype(float)
    for scaler in (TargetScaler(), TargetScaler(use_std=True)):
        z, loc, scale = scaler.transform(y)
        np.testing.assert_allclose(scaler.inverse_transform(z, loc, scale), y, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-9)  # centred per window
        assert np.all(np.abs(z) < 10)  # levels spanning 7 decades land in one range


def test_feature_scaler_standardises_with_training_stats():
    fs = FeatureScaler().fit(["e"], np.array([[1.0], [3.0]]))
    np.testing.assert_allclose(fs.transform(np.array([[1.0], [2.0], [3.0]]))[:, 0], [-1, 0, 1])
    assert FeatureScaler.from_dict(fs.to_dict()).to_dict() == fs.to_dict()


def test_encode_imputes_missing_lags_shortest_first_and_counts():
    spec = FeatureSpec(
        window=3,
        horizon=2,
        freq_ns=FREQ,
        calendar=(),
        lags=(2, 4),
        use_level=False,
        lags_in_window=True,
    )
    y = np.array([[np.e - 1, np.e - 1, np.e**2 - 1]])  # log1p = [1, 1, 2], loc = 4/3
    # [B, W+H, L]: three window steps, then the two target steps
    lags = np.array(
        [[[0.0, 0.0], [np.nan, 0.0], [np.nan, np.nan], [np.e**3 - 1, np.nan], [np.nan, np.nan]]]
    )
    raw = RawWindows(
        y=y, exog=np.zeros((1, 3, 0)), origin_slot=np.array([100]), lags=lags, series=np.array([0])
    )
    enc = encode(raw, spec, TargetScaler(), FeatureScaler())
    loc = 4 / 3
    # step 1: lag 2 known (3 - loc); lag 4 missing -> lag 2's value
    np.testing.assert_allclose(enc.fut[0, 0], [3 - loc, 3 - loc], rtol=1e-6)
    # step 2: both missing -> last observed value (2 - loc)
    np.testing.assert_allclose(enc.fut[0, 1], [2 - loc, 2 - loc], rtol=1e-6)
    assert enc.lags_imputed == 3  # target steps only
    assert enc.x.shape == (1, 3, spec.input_size) and enc.fut.shape == (1, 2, spec.future_size)
    # window steps: lag 2 missing at step 2 -> the step's own value (1 - loc); lag 4 falls back
    # to the (imputed) lag 2; inputs are [z, lag_2_in, lag_4_in]
    np.testing.assert_allclose(enc.x[0, :, 1], [-loc, 1 - loc, 2 - loc], rtol=1e-6)
    np.testing.assert_allclose(enc.x[0, :, 2], [-loc, -loc, 2 - loc], rtol=1e-6)


def test_read_ranges_cover_exactly_what_the_model_reads():
    spec = FeatureSpec(window=12, horizon=12, lags=(288, 2016))
    last, ranges = spec.read_ranges([1000])
    # the window, and per lag the lagged window steps and target steps (back 276..299)
    assert last == 1000 and ranges == [(0, 11), (276, 299), (2004, 2027)]
    last, ranges = spec.read_ranges([1000, 999, 990])  # catch-up: three origins, merged
    assert last == 1000
    assert ranges == [(0, 21), (276, 309), (2004, 2037)]
    no_window_lags = FeatureSpec(window=12, horizon=12, lags=(288,), lags_in_window=False)
    assert no_window_lags.read_ranges([1000])[1] == [(0, 11), (276, 287)]
