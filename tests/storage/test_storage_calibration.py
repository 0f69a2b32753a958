"""Live recalibration in the stores (issue 14): the ``interval_scale`` column on every
backend, tables of an older version, ``read_scores`` and the interval score summary."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from storage_helpers import forecasts, metrics, slot

from storage import DataValidationError, open_store
from storage.sqlschema import latest_view_sql


def _scored(store):
    """Series a written with interval_scale 2.0 by v1, b without one, a v2 row; scored."""
    store.write_metrics(metrics(["a", "b"], range(100, 120), features=False))
    fa = forecasts(["a"], slot(105), horizon=12, model_version="v1").assign(interval_scale=2.0)
    store.write_forecasts(fa)
    store.write_forecasts(forecasts(["b"], slot(105), horizon=12))
    store.write_forecasts(forecasts(["a"], slot(110), horizon=3, model_version="v2"))
    store.score_forecasts(slot(115))


def test_interval_scale_is_stored_read_and_copied_by_scoring(make_store):
    store = make_store()
    _scored(store)
    fc = store.read_forecasts(issued_at=slot(105))
    assert fc["interval_scale"].dtype == np.float64
    assert set(fc.loc[fc.series_id == "a", "interval_scale"]) == {2.0}
    assert set(fc.loc[fc.series_id == "b", "interval_scale"]) == {1.0}
    latest = store.read_latest_forecasts(series_ids=["a"], start=slot(106), end=slot(110))
    assert list(latest["interval_scale"]) == [2.0] * 5  # the view carries it
    rows = store.read_accuracy_rows()
    v1 = rows[rows.model_version == "v1"]
    assert set(v1.loc[v1.series_id == "a", "interval_scale"]) == {2.0}
    assert set(v1.loc[v1.series_id == "b", "interval_scale"]) == {1.0}


def test_read_scores_is_one_version_in_a_bounded_window(make_store):
    store = make_store()
    _scored(store)
    got = store.read_scores("v1", slot(108), slot(112))
    assert list(got.columns) == [
        "target_ts",
        "series_id",
        "step",
        "level",
        "y",
        "yhat",
        "yhat_lower",
        "yhat_upper",
        "interval_scale",
    ]
    assert len(got) == 2 * 5  # 2 series x targets 108..112 of the v1 forecast
    assert got["target_ts"].is_monotonic_increasing
    assert got["target_ts"].between(slot(108), slot(112)).all()
    assert sorted(got["interval_scale"].unique()) == [1.0, 2.0]
    assert len(store.read_scores("v2", slot(100), slot(119))) == 3
    assert store.read_scores("v9", slot(100), slot(119)).empty
    with pytest.raises(Exception, match="bounded window"):
        store.read_scores("v1", None, slot(119))


def test_read_scores_per_step_keeps_the_newest_in_byte_order_on_every_backend(make_store):
    """per_step=N: the N newest rows of each step and level, newest by target_ts then
    series_id by its bytes ('B' < 'a' < 'b' < 'é': not a locale's order), cut in the
    store; the same rows as cutting the full read in Python."""
    store = make_store()
    ids = ["a", "B", "é", "b"]
    store.write_metrics(metrics(ids, range(100, 120), features=False))
    for issued in (104, 105):
        store.write_forecasts(forecasts(ids, slot(issued), horizon=3, model_version="v1"))
    store.score_forecasts(slot(115))
    full = store.read_scores("v1", slot(100), slot(119))
    assert len(full) == 2 * 4 * 3
    cut = store.read_scores("v1", slot(100), slot(119), per_step=5)
    assert cut.groupby("step").size().tolist() == [5, 5, 5]
    for step, rows in cut.groupby("step"):
        # the 4 of the newest target, then the byte-greatest of the one before
        newest = rows[rows.target_ts == slot(105 + step)]
        assert sorted(newest["series_id"]) == sorted(ids)
        assert list(rows.loc[rows.target_ts == slot(104 + step), "series_id"]) == ["é"]
    expect = full.groupby("step").tail(5).reset_index(drop=True)  # full: oldest first
    np.testing.assert_array_equal(cut["series_id"], expect["series_id"])
    np.testing.assert_array_equal(cut["target_ts"], expect["target_ts"])
    with pytest.raises(Exception, match="per_step must be a positive integer"):
        store.read_scores("v1", slot(100), slot(119), per_step=0)
    # the same cut of one target slot, read by primary key (no step 1 forecast targets 107)
    one = store.read_newest_scores("v1", slot(107), [1, 2, 3], [0.8], 3)
    assert one.groupby("step")["series_id"].apply(sorted).to_dict() == {
        2: ["a", "b", "é"],
        3: ["a", "b", "é"],
    }
    same = store.read_scores("v1", slot(107), slot(107), per_step=3)
    np.testing.assert_array_equal(one["series_id"], same["series_id"])
    np.testing.assert_array_equal(one["step"], same["step"])
    assert store.read_newest_scores("v1", slot(107), [2], [0.95], 3).empty


def test_a_bad_interval_scale_is_refused_naming_the_series(make_store):
    store = make_store()
    fc = forecasts(["a", "b"], slot(10), horizon=2)
    fc.loc[fc.series_id == "b", "interval_scale"] = 0.0
    fc["interval_scale"] = fc["interval_scale"].fillna(1.0)
    with pytest.raises(DataValidationError, match=r"interval_scale.*series 'b'"):
        store.write_forecasts(fc)
    assert store.read_forecasts().empty


def test_interval_score_summary_by_hand(make_store):
    store = make_store()
    store.write_metrics(metrics(["a"], range(10, 13), features=False))
    fc = forecasts(["a"], slot(10), horizon=2)  # yhat 101, 102; bounds +-10
    y = store.read_metrics(start=slot(11), end=slot(12))["value"].to_numpy()
    fc["yhat_lower"] = [y[0] - 1.0, y[1] + 2.0]  # step 1: inside; step 2: 2 below the interval
    fc["yhat_upper"] = [y[0] + 3.0, y[1] + 6.0]
    store.write_forecasts(fc)
    store.score_forecasts(slot(12))
    out = store.read_accuracy(by=("step",))
    # M4 interval score: width + 2 / (1 - 0.8) x distance outside
    assert list(out["interval_score"]) == pytest.approx([4.0, 4.0 + 10.0 * 2.0])
    assert list(out["sis_pct"]) == pytest.approx([100 * 4.0 / abs(y[0]), 100 * 24.0 / abs(y[1])])
    overall = store.read_accuracy(by=())
    assert overall["interval_score"].iloc[0] == pytest.approx(14.0)


def _make_old_sql(store) -> None:
    """Turn the store's tables into what the version before interval_scale created: the
    column dropped from both tables and the view created over the old column list."""
    q, t, d = store.dialect.quote, store.tables, store.dialect
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP VIEW {q(t.latest_view)}")
        for name in (t.forecasts, t.accuracy):
            conn.exec_driver_sql(f"ALTER TABLE {q(name)} DROP COLUMN {q('interval_scale')}")
        old = sa.Table(t.forecasts, sa.MetaData(), autoload_with=conn)
        assert "interval_scale" not in old.c
        conn.exec_driver_sql(latest_view_sql(old, t.latest_view, d))


def _make_old_parquet(store) -> None:
    for sub in (store.tables.forecasts, store.tables.accuracy):
        for path in (store.root / sub).rglob("*.parquet"):
            tab = pq.read_table(path)
            pq.write_table(tab.drop_columns(["interval_scale"]), path)


def test_tables_of_the_old_schema_keep_working(make_store):
    store = make_store()
    _scored(store)
    if store.backend == "parquet":
        _make_old_parquet(store)
    else:
        _make_old_sql(store)
    store.close()
    again = make_store()  # opening adds the column (SQL) / reads it as 1.0 (Parquet)
    old = again.read_forecasts(issued_at=slot(105))
    assert (old["interval_scale"] == 1.0).all()  # rows of the old version: the model's own
    assert (again.read_latest_forecasts()["interval_scale"] == 1.0).all()
    assert (again.read_accuracy_rows()["interval_scale"] == 1.0).all()
    # new rows carry their scale, beside the old ones (same Parquet file, same table)
    new = forecasts(["c"], slot(105), horizon=12).assign(interval_scale=1.5)
    again.write_forecasts(new)
    both = again.read_forecasts(issued_at=slot(105))
    assert set(both.loc[both.series_id == "c", "interval_scale"]) == {1.5}
    assert set(both.loc[both.series_id != "c", "interval_scale"]) == {1.0}
    again.write_metrics(metrics(["c"], range(100, 120), features=False))
    assert again.score_forecasts(slot(115)) > 0
    scores = again.read_scores("v1", slot(100), slot(119))
    assert sorted(scores["interval_scale"].unique()) == [1.0, 1.5]
    latest = again.read_latest_forecasts(series_ids=["c"])
    assert set(latest["interval_scale"]) == {1.5}
    # a third open finds nothing to migrate
    assert make_store().read_forecasts(series_ids=["c"])["interval_scale"].eq(1.5).all()


def test_user_table_without_the_column_is_refused_if_a_non_added_column_lacks(tmp_path):
    """Only the columns added since the first release are added on open: a forecasts table
    missing another column is still a SchemaError naming it."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE forecasts (series_id TEXT, issued_at TEXT)")
    eng.dispose()
    with pytest.raises(Exception, match=r"lacks column\(s\) \['target_ts'"):
        open_store(url)
