import numpy as np
import pandas as pd

from lstm import regularize
from lstm.windows import (
    Split,
    expand_ranges,
    gather,
    protocol_split,
    train_origins,
    val_origins,
)
from lstm.windows import (
    test_origins as origins_for_test,
)


def make_panel(lengths, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(lengths):
        ts = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC") + pd.Timedelta(
            minutes=5 * i
        )
        rows.append(
            pd.DataFrame(
                {
                    "series_id": f"s{i}",
                    "ts": ts,
                    "value": rng.poisson(20, n).astype(float),
                    "error_rate": rng.random(n),
                }
            )
        )
    panel, _ = regularize(pd.concat(rows))
    return panel


def loop_gather(panel, origins, w, h, lags):
    """Plain-loop reference implementation of gather()."""
    ys, lag_rows, targets, exogs = [], [], [], []
    for o in origins:
        s = np.searchsorted(panel.offsets, o, side="right") - 1
        start, end = panel.offsets[s], panel.offsets[s + 1]
        ys.append([panel.y[o - w + 1 + k] for k in range(w)])
        exogs.append([panel.exog[o - w + 1 + k] for k in range(w)])
        lag_rows.append(
            [
                [panel.y[o + k - lag] if o + k - lag >= start else np.nan for lag in lags]
                for k in range(-w + 1, h + 1)
            ]
        )
        targets.append([panel.y[o + k] if o + k < end else np.nan for k in range(1, h + 1)])
    return np.array(ys), np.array(exogs), np.array(lag_rows), np.array(targets)


def test_gather_matches_plain_loop_reference():
    panel = make_panel([400, 150, 333])
    rng = np.random.default_rng(1)
    w, h, lags = 12, 12, (24, 300)
    series = rng.integers(0, 3, 200)
    rel = np.array([rng.integers(w - 1, panel.lengths[s]) for s in series])
    origins = panel.offsets[series] + rel
    raw = gather(panel, origins, w, h, lags)
    y, exog, lag_vals, target = loop_gather(panel, origins, w, h, lags)
    np.testing.assert_array_equal(raw.y, y)
    np.testing.assert_array_equal(raw.exog, exog)
    np.testing.assert_array_equal(raw.lags, lag_vals)
    np.testing.assert_array_equal(raw.target, target)
    np.testing.assert_array_equal(raw.series, series)
    np.testing.assert_array_equal(raw.origin_slot, panel.slot[origins])


def test_expand_ranges_matches_loop():
    offsets = np.array([0, 10, 15, 40])
    lo, hi = np.array([2, 5, 0]), np.array([7, 3, 24])  # the middle range is empty
    for stride in (1, 3, 12):
        expected = [offsets[i] + r for i in range(3) for r in range(lo[i], hi[i] + 1, stride)]
        np.testing.assert_array_equal(expand_ranges(offsets, lo, hi, stride), expected)


def test_protocol_split_and_origins_respect_boundaries():
    panel = make_panel([1000, 500])
    split = protocol_split(panel)
    np.testing.assert_array_equal(split.n_train, [700, 350])
    np.testing.assert_array_equal(split.n_val, [100, 50])
    w, h = 12, 12
    for s in range(2):
        start = panel.offsets[s]
        tr = train_origins(panel, split, w, h)
        tr = tr[(tr >= start) & (tr < panel.offsets[s + 1])] - start
        assert (
            tr.min() == w - 1 and tr.max() + h == split.n_train[s] - 1
        )  # last target inside train
        va = val_origins(panel, split, w, h)
        va = va[(va >= start) & (va < panel.offsets[s + 1])] - start
        assert va.min() + 1 == split.n_train[s]  # first target is the first validation slot
        assert va.max() + h == split.n_train[s] + split.n_val[s] - 1
        te = origins_for_test(panel, split, w, h)
        te = te[(te >= start) & (te < panel.offsets[s + 1])] - start
        assert te[0] + 1 == split.test_start[s]
        assert np.all(np.diff(te) == 12)
        assert te[-1] + h <= panel.lengths[s] - 1


def test_origins_skip_series_too_short_for_a_window():
    panel = make_panel([30, 200])
    split = Split(np.array([10, 140]), np.array([5, 20]), panel.lengths)
    tr = train_origins(panel, split, 12, 12)
    assert np.all(tr >= panel.offsets[1])  # series 0 has no complete training window
