"""The storage contract, run against every backend (Parquet, SQLite, PostgreSQL)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from storage_helpers import FREQ, canon, forecasts, metrics, slot

from storage import ColumnMap, NaiveTimestampWarning, SchemaError


def test_metrics_round_trip_keeps_values_types_and_odd_ids(make_store):
    store = make_store()
    ids = ["web-1", "a,b", "it's", 'say "hi"', "ünï€ode", "tab\tid"]
    df = metrics(ids, range(6), seed=1)
    assert store.write_metrics(df) == len(df)

    out = store.read_metrics()
    assert list(out.columns) == ["series_id", "ts", "value", "error_rate"]
    assert str(out["ts"].dtype) == "datetime64[us, UTC]"
    assert out["value"].dtype == np.float64
    assert pd.api.types.is_string_dtype(out["series_id"].dtype)
    exp = canon(df, ["series_id", "ts"])
    pd.testing.assert_series_equal(out["series_id"].astype(object), exp["series_id"].astype(object))
    assert (out["ts"].to_numpy() == exp["ts"].to_numpy()).all()
    # exact float round trip (no text formatting loss on any backend)
    assert (out["value"].to_numpy() == exp["value"].to_numpy()).all()
    assert (out["error_rate"].to_numpy() == exp["error_rate"].to_numpy()).all()
    assert out[["series_id", "ts"]].equals(
        out[["series_id", "ts"]].sort_values(["series_id", "ts"]).reset_index(drop=True)
    )


def test_read_metrics_bounds_are_inclusive_and_series_filter(make_store):
    store = make_store()
    store.write_metrics(metrics(["a", "b", "c"], range(10)))
    out = store.read_metrics(start=slot(2), end=slot(5))
    assert sorted(out["ts"].unique()) == [slot(i) for i in range(2, 6)]
    assert len(out) == 3 * 4
    only = store.read_metrics(start=slot(2), series_ids=["c", "a", "zz"])
    assert sorted(only["series_id"].unique()) == ["a", "c"]
    assert len(only) == 2 * 8
    assert store.read_metrics(series_ids=[]).empty
    assert list(store.read_metrics(series_ids=[]).columns) == [
        "series_id",
        "ts",
        "value",
        "error_rate",
    ]
    assert store.read_metrics(start=slot(50)).empty


def test_nixtla_names_in_canonical_names_out(make_store):
    store = make_store(columns=ColumnMap.nixtla())
    df = metrics(["s1", "s2"], range(4), names=("unique_id", "ds", "y"), features=False)
    store.write_metrics(df)
    out = store.read_metrics()
    assert list(out.columns) == ["series_id", "ts", "value"]
    assert (out["value"].to_numpy() == canon(df, ["unique_id", "ds"])["y"].to_numpy()).all()
    recent = store.read_recent(slot(3), 2)
    assert list(recent.columns) == ["series_id", "ts", "value"]
    assert len(recent) == 4


def test_read_recent_window_edges_and_extra_ranges(make_store):
    store = make_store()
    as_of = 2016 + 300  # slot index of as_of; window 12, day-ago and week-ago ranges
    n = 12
    near = lambda c: range(c - 2, c + 3)  # noqa: E731 - slots around an edge
    slots = sorted(
        set(near(as_of))
        | set(near(as_of - (n - 1)))
        | set(near(as_of - 288))
        | set(near(as_of - 288 - (n - 1)))
        | set(near(as_of - 2016))
        | set(near(as_of - 2016 - (n - 1)))
    )
    store.write_metrics(metrics(["a", "b"], slots, features=False))
    out = store.read_recent(slot(as_of), n, extra_ranges=[(288, 288 + n - 1), (2016, 2016 + n - 1)])
    got = sorted({(t - slot(0)) // FREQ for t in out["ts"]})
    expected = sorted(
        s
        for s in slots
        if as_of - (n - 1) <= s <= as_of
        or as_of - 288 - (n - 1) <= s <= as_of - 288
        or as_of - 2016 - (n - 1) <= s <= as_of - 2016
    )
    assert got == expected
    # the inclusive ends are in, the neighbours outside are out
    for inside in (as_of, as_of - 11, as_of - 288, as_of - 299, as_of - 2016, as_of - 2027):
        assert inside in got
    for outside in (as_of + 1, as_of - 12, as_of - 287, as_of - 300, as_of - 2015, as_of - 2028):
        assert outside not in got
    assert len(out) == 2 * len(expected)
    assert out["series_id"].is_monotonic_increasing


def test_read_recent_returns_what_each_series_has(make_store):
    store = make_store()
    full = metrics(["full"], range(100, 112), features=False)
    short = metrics(["short"], [105, 108, 111], features=False, seed=3)
    gone = metrics(["gone"], range(50, 60), features=False, seed=4)
    store.write_metrics(pd.concat([full, short, gone], ignore_index=True))
    out = store.read_recent(slot(111), 12)
    counts = out.groupby("series_id").size().to_dict()
    assert counts == {"full": 12, "short": 3}
    assert list(out.loc[out.series_id == "short", "ts"]) == [slot(105), slot(108), slot(111)]
    assert (
        out.loc[out.series_id == "short", "value"].to_numpy() == short["value"].to_numpy()
    ).all()
    only = store.read_recent(slot(111), 12, series_ids=["short", "gone"])
    assert set(only["series_id"]) == {"short"}


def test_metrics_rewrite_same_slot_three_times(make_store):
    store = make_store()
    store.write_metrics(metrics(["a", "b"], range(5), seed=0))
    for seed in (1, 2, 3):
        store.write_metrics(metrics(["a", "b"], [4], seed=seed))
    out = store.read_metrics()
    assert len(out) == 10
    last = metrics(["a", "b"], [4], seed=3)
    got = out[out.ts == slot(4)].reset_index(drop=True)
    assert (got["value"].to_numpy() == last["value"].to_numpy()).all()
    assert (got["error_rate"].to_numpy() == last["error_rate"].to_numpy()).all()
    first = metrics(["a", "b"], range(5), seed=0)
    assert (
        out[out.ts == slot(0)]["value"].to_numpy() == first[first.ts == slot(0)]["value"].to_numpy()
    ).all()


def test_metrics_range(make_store):
    store = make_store()
    store.write_metrics(metrics(["a", "b", "c"], range(3, 9)))
    lo, hi, n = store.metrics_range()
    assert (lo, hi, n) == (slot(3), slot(8), 3)
    assert str(lo.tz) == "UTC"


def test_missing_metrics_source_is_a_schema_error(make_store):
    store = make_store()
    with pytest.raises(SchemaError) as err:
        store.read_recent(slot(10), 12)
    assert store.tables.metrics in str(err.value)


def test_naive_timestamps_are_utc_with_one_warning(make_store):
    store = make_store()
    df = metrics(["a"], range(4), features=False)
    naive = df.assign(ts=df["ts"].dt.tz_localize(None))
    with pytest.warns(NaiveTimestampWarning, match="assumed to be UTC") as rec:
        store.write_metrics(naive)
        store.write_metrics(naive)
    assert len([w for w in rec if issubclass(w.category, NaiveTimestampWarning)]) == 1
    out = store.read_metrics()
    assert list(out["ts"]) == [slot(i) for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aware = store.read_recent(slot(3), 2)
    with pytest.warns(NaiveTimestampWarning):
        naive_read = store.read_recent(slot(3).tz_localize(None), 2)
    pd.testing.assert_frame_equal(aware, naive_read)


def test_other_timezones_are_converted_to_utc(make_store):
    store = make_store()
    df = metrics(["a"], range(4), features=False)
    store.write_metrics(df.assign(ts=df["ts"].dt.tz_convert("America/New_York")))
    out = store.read_recent(slot(3).tz_convert("Asia/Kolkata"), 4)
    assert list(out["ts"]) == [slot(i) for i in range(4)]
    assert str(out["ts"].dt.tz) == "UTC"


# ------------------------------------------------------------------ forecasts
def test_forecast_round_trip_and_filters(make_store):
    store = make_store()
    fc = forecasts(["a", "b"], slot(100))
    before = pd.Timestamp.now(tz="UTC")
    assert store.write_forecasts(fc) == 24
    out = store.read_forecasts()
    cols = [
        "series_id",
        "issued_at",
        "target_ts",
        "step",
        "yhat",
        "yhat_lower",
        "yhat_upper",
        "level",
        "model_version",
        "created_at",
        "interval_scale",
    ]
    assert list(out.columns) == cols
    exp = canon(fc, ["series_id", "issued_at", "step"])
    for c in cols[:-2]:
        assert list(out[c]) == list(exp[c]), c
    assert (out["interval_scale"] == 1.0).all()  # not given: the model's own calibration
    assert out["step"].dtype == np.int64
    assert (out["created_at"] >= before.floor("s")).all()
    assert str(out["created_at"].dt.tz) == "UTC"

    assert len(store.read_forecasts(issued_at=slot(100))) == 24
    assert store.read_forecasts(issued_at=slot(101)).empty
    assert set(store.read_forecasts(series_ids=["b"])["series_id"]) == {"b"}
    window = store.read_forecasts(start=slot(103), end=slot(105))
    assert sorted(window["step"].unique()) == [3, 4, 5]


def test_forecast_created_at_kept_when_given(make_store):
    store = make_store()
    created = pd.Timestamp("2024-03-05 10:11:12.345678", tz="UTC")
    store.write_forecasts(forecasts(["a"], slot(10), horizon=2).assign(created_at=created))
    out = store.read_forecasts()
    assert list(out["created_at"]) == [created, created]


def test_forecast_rewrite_same_slot_three_times(make_store):
    store = make_store()
    store.write_forecasts(forecasts(["a", "b", "c"], slot(99)))
    for i in range(3):
        store.write_forecasts(
            forecasts(["a", "b", "c"], slot(100), bump=10.0 * i, model_version=f"v{i}")
        )
    out = store.read_forecasts(issued_at=slot(100))
    assert len(out) == 36
    assert set(out["model_version"]) == {"v2"}
    exp = canon(forecasts(["a", "b", "c"], slot(100), bump=20.0), ["series_id", "step"])
    assert (out["yhat"].to_numpy() == exp["yhat"].to_numpy()).all()
    assert len(store.read_forecasts()) == 72
    assert set(store.read_forecasts(issued_at=slot(99))["model_version"]) == {"v1"}


def test_forecast_upsert_keeps_other_series_of_the_slot(make_store):
    store = make_store()
    store.write_forecasts(forecasts(["a", "b"], slot(100)))
    store.write_forecasts(forecasts(["b"], slot(100), bump=5.0, model_version="v9"))
    out = store.read_forecasts(issued_at=slot(100))
    assert len(out) == 24
    assert set(out.loc[out.series_id == "a", "model_version"]) == {"v1"}
    assert set(out.loc[out.series_id == "b", "model_version"]) == {"v9"}


def test_latest_forecast_per_series_and_target(make_store):
    store = make_store()
    store.write_forecasts(forecasts(["a", "b"], slot(100), model_version="old"))
    store.write_forecasts(forecasts(["a"], slot(101), model_version="new"))
    latest = store.read_latest_forecasts()
    a = latest[latest.series_id == "a"]
    assert list(a["target_ts"]) == [slot(100 + k) for k in range(1, 14)]
    assert list(a["model_version"]) == ["old"] + ["new"] * 12
    assert list(a["issued_at"]) == [slot(100)] + [slot(101)] * 12
    b = latest[latest.series_id == "b"]
    assert len(b) == 12 and set(b["model_version"]) == {"old"}
    window = store.read_latest_forecasts(series_ids=["a"], start=slot(101), end=slot(103))
    assert list(window["target_ts"]) == [slot(101), slot(102), slot(103)]
    assert list(window["issued_at"]) == [slot(100), slot(101), slot(101)]
    assert list(window["step"]) == [1, 1, 2]


def test_write_forecasts_spanning_several_slots(make_store):
    store = make_store()
    df = pd.concat([forecasts(["a"], slot(i)) for i in (10, 11, 300)], ignore_index=True)
    assert store.write_forecasts(df) == 36
    assert sorted(store.read_forecasts()["issued_at"].unique()) == [slot(10), slot(11), slot(300)]


def test_issued_slots_lists_distinct_origins_in_range(make_store):
    store = make_store()
    assert store.issued_slots() == []
    df = pd.concat([forecasts(["a", "b"], slot(i)) for i in (10, 11, 13, 300)], ignore_index=True)
    store.write_forecasts(df)
    assert store.issued_slots() == [slot(10), slot(11), slot(13), slot(300)]
    assert store.issued_slots(slot(11), slot(13)) == [slot(11), slot(13)]
    assert store.issued_slots(start=slot(12)) == [slot(13), slot(300)]
    assert store.issued_slots(end=slot(9)) == []


# ------------------------------------------------------------------- accuracy
def _scoring_setup(store):
    actual = metrics(["a", "b"], range(100, 120), features=False)
    store.write_metrics(actual)
    store.write_forecasts(forecasts(["a", "b"], slot(105), horizon=12, model_version="v1"))
    store.write_forecasts(forecasts(["a"], slot(110), horizon=12, model_version="v2"))
    return actual


def test_score_forecasts_rows_and_idempotence(make_store):
    store = make_store()
    actual = _scoring_setup(store)
    n = store.score_forecasts(slot(115), lookback_slots=288)
    # v1: targets 106..117 -> 106..115 have actuals and are <= as_of: 10 per series;
    # v2 (series a): targets 111..122 -> 111..115: 5
    assert n == 2 * 10 + 5
    rows = store.read_accuracy_rows()
    assert len(rows) == 25
    assert rows["target_ts"].max() == slot(115)
    fc = store.read_forecasts()
    merged = rows.merge(actual, left_on=["series_id", "target_ts"], right_on=["series_id", "ts"])
    assert (merged["y"].to_numpy() == merged["value"].to_numpy()).all()
    assert np.allclose(merged["abs_error"], (merged["value"] - merged["yhat"]).abs())
    covered = (merged["value"] >= merged["yhat_lower"]) & (merged["value"] <= merged["yhat_upper"])
    assert (merged["covered"].to_numpy() == covered.to_numpy()).all()
    assert covered.any() and not covered.all()  # the fixture exercises both outcomes
    assert rows["covered"].dtype == bool
    assert set(rows["model_version"]) == set(fc["model_version"])

    # re-scoring is idempotent; a later as_of scores only what is new
    assert store.score_forecasts(slot(115), lookback_slots=288) == 25
    assert len(store.read_accuracy_rows()) == 25
    assert store.score_forecasts(slot(119), lookback_slots=4) == 2 * 2 + 4
    assert len(store.read_accuracy_rows()) == 25 + 2 * 2 + 4


def test_score_lookback_excludes_older_targets(make_store):
    store = make_store()
    _scoring_setup(store)
    n = store.score_forecasts(slot(115), lookback_slots=2)  # targets 114, 115
    assert n == 2 * 2 + 2
    assert set(store.read_accuracy_rows()["target_ts"]) == {slot(114), slot(115)}


def test_read_accuracy_summary(make_store):
    store = make_store()
    _scoring_setup(store)
    store.score_forecasts(slot(119))
    rows = store.read_accuracy_rows()
    by_model = store.read_accuracy(by=("model_version",))
    assert list(by_model.columns) == [
        "model_version",
        "n",
        "mae",
        "wape_pct",
        "coverage_pct",
        "interval_score",
        "sis_pct",
    ]
    for mv, grp in rows.groupby("model_version"):
        got = by_model[by_model.model_version == mv].iloc[0]
        assert got["n"] == len(grp)
        assert got["mae"] == pytest.approx(grp["abs_error"].mean())
        assert got["wape_pct"] == pytest.approx(100 * grp["abs_error"].sum() / grp["y"].abs().sum())
        assert got["coverage_pct"] == pytest.approx(100 * grp["covered"].mean())
    default = store.read_accuracy()
    assert list(default.columns[:2]) == ["model_version", "step"]
    assert default["n"].sum() == len(rows)
    overall = store.read_accuracy(by=())
    assert len(overall) == 1 and overall["n"].iloc[0] == len(rows)
    per_series = store.read_accuracy(start=slot(112), end=slot(113), by=["series_id"])
    assert list(per_series["series_id"]) == ["a", "b"]
    assert per_series["n"].sum() == len(rows[rows.target_ts.between(slot(112), slot(113))])


def test_describe_names_backend_tables_and_counts(make_store):
    store = make_store()
    store.write_metrics(metrics(["a"], range(3)))
    store.write_forecasts(forecasts(["a"], slot(2), horizon=3))
    info = store.describe()
    assert info["backend"] == store.backend
    assert info["tables"]["metrics"] == store.tables.metrics
    assert info["rows"]["metrics"] == 3
    assert info["rows"]["forecasts"] == 3
    assert info["freq"] == "5min"
