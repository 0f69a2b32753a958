"""Fleet-scale training data: the streamed panel equals `regularize`, and the series sample
is deterministic, stratified, bounded and disjoint from the held-out sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm import generate_metrics, regularize
from lstm.accumulate import PanelAccumulator
from lstm.sampling import profile_series, series_rank, strata_of, stratified_sample
from lstm.slots import to_slot

FREQ_NS = 300 * 10**9


def dirty_frame() -> pd.DataFrame:
    frame = generate_metrics(n_series=6, days=2, seed=4)
    rng = np.random.default_rng(0)
    frame = frame.drop(index=rng.choice(len(frame), 200, replace=False))  # gaps
    dup = frame.sample(30, random_state=1)  # duplicate rows of existing slots
    frame = pd.concat([frame, dup], ignore_index=True)
    frame.loc[rng.choice(len(frame), 20, replace=False), "value"] = np.nan
    frame.loc[rng.choice(len(frame), 5, replace=False), "value"] = -3.0
    frame.loc[rng.choice(len(frame), 7, replace=False), "error_rate"] = np.inf
    off = rng.choice(len(frame), 12, replace=False)
    frame.loc[off, "ts"] = frame.loc[off, "ts"] + pd.Timedelta("90s")  # off the grid
    # a series whose every value is invalid, and one that starts late
    bad = frame[frame.series_id == "svc-0"].copy()
    bad["series_id"], bad["value"] = "svc-bad", np.nan
    return pd.concat([frame, bad], ignore_index=True).sample(frac=1, random_state=2)


def accumulate(frame: pd.DataFrame, chunks) -> tuple:
    ids = frame.series_id.unique()
    lo = to_slot(frame.ts.min(), FREQ_NS)
    hi = to_slot(frame.ts.max(), FREQ_NS)
    acc = PanelAccumulator(ids, lo, hi, FREQ_NS, ("error_rate",))
    for part in chunks(frame):
        acc.add(part)
    return acc.finish()


SPLITS = {
    "one chunk": lambda f: [f],
    "by time": lambda f: [g for _, g in f.groupby(f.ts.dt.floor("6h"))],
    "by series": lambda f: [g for _, g in f.groupby("series_id")],
    "random rows": lambda f: [f.iloc[i : i + 97] for i in range(0, len(f), 97)],
}


@pytest.mark.parametrize("split", SPLITS)
def test_streamed_panel_equals_regularize(split):
    frame = dirty_frame()
    want, want_rep = regularize(frame, strict=False)
    got, rep = accumulate(frame, SPLITS[split])
    assert list(got.ids) == list(want.ids)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.slot, want.slot)
    np.testing.assert_allclose(got.y, want.y, rtol=1e-12)
    np.testing.assert_allclose(got.exog, want.exog, rtol=1e-12)
    assert got.exog_names == want.exog_names
    for key in ("n_series", "rows_in", "slots_out", "filled_slots", "duplicate_rows"):
        assert getattr(rep, key) == getattr(want_rep, key), key
    assert rep.off_grid_rows == want_rep.off_grid_rows
    assert rep.invalid_values == want_rep.invalid_values
    assert rep.dropped == {"svc-bad": "no valid target value"} == want_rep.dropped


def test_accumulator_ignores_other_series_and_slots_and_names_series_without_rows():
    frame = generate_metrics(n_series=3, days=1, seed=1)
    lo = to_slot(frame.ts.min(), FREQ_NS)
    acc = PanelAccumulator(["svc-0", "svc-1", "gone"], lo + 10, lo + 99, FREQ_NS, ())
    acc.add(frame)
    panel, rep = acc.finish()
    assert list(panel.ids) == ["svc-0", "svc-1"] and list(panel.lengths) == [90, 90]
    assert acc.rows_ignored == len(frame) - 2 * 90
    assert rep.dropped == {"gone": "no metrics rows in the history window"}


def profile_frame(n: int = 120) -> pd.DataFrame:
    """Series whose level and noise differ on purpose (3 levels x 3 noise amounts)."""
    rng = np.random.default_rng(3)
    rows = []
    ts = pd.date_range("2026-01-05", periods=36, freq="5min", tz="UTC")
    for i in range(n):
        level = [5.0, 200.0, 20_000.0][i % 3]
        noise = [0.01, 0.2, 0.8][(i // 3) % 3]
        y = level * np.exp(rng.normal(0, noise, len(ts)))
        rows.append(pd.DataFrame({"series_id": f"s{i:03d}", "ts": ts, "value": y}))
    return pd.concat(rows, ignore_index=True)


def test_profile_measures_level_and_noise():
    prof = profile_series(profile_frame(), FREQ_NS)
    by = dict(zip(prof.ids, zip(prof.level, prof.noise, strict=True), strict=True))
    assert by["s000"][0] < by["s001"][0] < by["s002"][0]  # low, mid, high volume
    assert by["s000"][1] < by["s003"][1] < by["s006"][1]  # smooth, medium, noisy


def test_sample_is_deterministic_bounded_stratified_and_disjoint():
    frame = profile_frame()
    prof = profile_series(frame, FREQ_NS)
    a = stratified_sample(prof, 27, 18, seed=5)
    shuffled = profile_series(frame.sample(frac=1, random_state=9), FREQ_NS)
    b = stratified_sample(shuffled, 27, 18, seed=5)
    assert a.train == b.train and a.holdout == b.holdout  # order of the input is irrelevant
    assert len(a.train) == 27 and len(a.holdout) == 18
    assert not set(a.train) & set(a.holdout)
    strata = dict(zip(prof.ids, strata_of(prof), strict=True))
    assert len({strata[s] for s in a.train}) == 9  # every level x noise stratum trains
    assert len({strata[s] for s in a.holdout}) == 9  # and is judged
    c = stratified_sample(prof, 27, 18, seed=6)
    assert c.train != a.train  # another seed, another sample
    assert a.as_dict()["strata"]["low-volume/smooth"]["series"] == 120 // 9 + (120 % 9 > 0)


def test_sample_takes_every_series_when_the_store_has_fewer():
    prof = profile_series(profile_frame(10), FREQ_NS)
    s = stratified_sample(prof, 2000, 500, seed=0)
    assert s.complete and sorted(s.train) == sorted(prof.ids) and s.holdout == []


def test_series_without_a_profile_are_sampled_too():
    frame = profile_frame(30)
    frame.loc[frame.series_id == "s007", "value"] = np.nan
    prof = profile_series(frame, FREQ_NS)
    s = stratified_sample(prof, 10, 0, seed=0)
    assert "unprofiled" in s.as_dict()["strata"]
    assert s.as_dict()["strata"]["unprofiled"]["train"] == 1


def test_series_rank_is_stable():
    r = series_rank(np.array(["a", "b"]), 0)
    assert r.tolist() == series_rank(np.array(["a", "b"]), 0).tolist()
    assert r.dtype == np.uint64


def test_generator_blocks_do_not_change_the_values_and_match_generate_metrics():
    from lstm import MetricsGenerator

    gen = MetricsGenerator(n_series=7, days=1, seed=5)
    hourly = pd.concat(list(gen.blocks(12)), ignore_index=True)
    daily = pd.concat(list(gen.blocks(288)), ignore_index=True)
    pd.testing.assert_frame_equal(hourly, daily)
    assert len(hourly) == 7 * 288 and hourly.ts.is_monotonic_increasing
    whole = generate_metrics(n_series=7, days=1, seed=5)
    key = ["series_id", "ts"]
    pd.testing.assert_frame_equal(
        hourly.sort_values(key, ignore_index=True), whole.sort_values(key, ignore_index=True)
    )
    other = generate_metrics(n_series=7, days=1, seed=6)
    assert not np.allclose(other.value.to_numpy(), whole.value.to_numpy())
    assert (whole.value >= 0).all() and whole.error_rate.between(0, 1).all()
