"""Retention (``Store.apply_retention``): old forecasts and accuracy rows deleted in bounded
batches of whole slots or files, accuracy rolled up into ``<accuracy>_daily`` first, metrics
never touched; on SQLite, Parquet and PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from storage_helpers import T0, forecasts, metrics, slot

import storage.retention
from storage import ConfigError, TableNames

SERIES = ["a", "b", "c"]
ISSUED = range(0, 3 * 288, 12)  # one forecast an hour for three days: 72 slots x 36 rows
NOW = T0 + pd.Timedelta(days=3)
F_CUT = T0 + pd.Timedelta(days=2)  # forecast_days=1
A_CUT = T0 + pd.Timedelta(hours=36)  # accuracy_days=1.5: day 0 and half of day 1


def fill(store) -> None:
    store.write_metrics(metrics(SERIES, range(0, 3 * 288 + 13), seed=3))
    frames = [forecasts(SERIES, slot(i), model_version=f"v{1 + i // 288}") for i in ISSUED]
    store.write_forecasts(pd.concat(frames, ignore_index=True))
    assert store.score_forecasts(slot(3 * 288 + 12), lookback_slots=3 * 288 + 13) == 72 * 36


def by_hand(rows: pd.DataFrame) -> pd.DataFrame:
    """The daily aggregate of accuracy rows, computed from the rows themselves."""
    work = rows.assign(
        day=rows["target_ts"].dt.floor("D"), absy=rows["y"].abs(), cov=rows["covered"] * 1.0
    )
    g = work.groupby(["day", "model_version", "step"])
    out = pd.DataFrame(
        {
            "n": g.size(),
            "mae": g["abs_error"].mean(),
            "wape_pct": 100.0 * g["abs_error"].sum() / g["absy"].sum(),
            "coverage_pct": 100.0 * g["cov"].mean(),
        }
    )
    return out.reset_index()


def assert_daily(store, expected: pd.DataFrame) -> None:
    got = store.read_accuracy_daily()
    assert list(got.columns) == [
        "day",
        "model_version",
        "step",
        "n",
        "mae",
        "wape_pct",
        "coverage_pct",
    ]
    assert len(got) == len(expected)
    key = ["day", "model_version", "step"]
    m = expected.merge(got, on=key, suffixes=("", "_got"), validate="1:1")
    assert len(m) == len(expected)
    assert (m["n"] == m["n_got"]).all()
    for c in ("mae", "wape_pct", "coverage_pct"):
        np.testing.assert_allclose(m[c + "_got"], m[c], rtol=1e-9)


def per_slot(frame: pd.DataFrame, col: str) -> pd.Series:
    return frame.groupby(col).size()


@pytest.mark.parametrize("batch_rows", [500_000, 100])
def test_retention_deletes_old_rows_and_keeps_daily_aggregates(make_store, batch_rows):
    store = make_store()
    fill(store)
    fc, acc = store.read_forecasts(), store.read_accuracy_rows()
    metrics_before = store.read_metrics()
    r = store.apply_retention(1, 1.5, now=NOW, batch_rows=batch_rows)

    old_fc, old_acc = fc[fc.issued_at < F_CUT], acc[acc.target_ts < A_CUT]
    assert r["forecasts_deleted"] == len(old_fc) == 48 * 36
    assert r["accuracy_deleted"] == len(old_acc) == 431 * 3
    assert r["days_aggregated"] == 2
    assert pd.Timestamp(r["forecast_cutoff"]) == F_CUT
    assert pd.Timestamp(r["accuracy_cutoff"]) == A_CUT
    if batch_rows == 100:  # whole slots of at most 100 rows: 2 forecast slots, 1-2 hours
        assert r["batches"] >= math.ceil(len(old_fc) / 100) + math.ceil(len(old_acc) / 100)
    else:
        assert r["batches"] <= 3
    if store.backend == "parquet":
        assert r["files_removed"] == 48 + 36  # slot files, and hour files of accuracy
    left = store.read_forecasts()
    assert left.issued_at.min() == F_CUT and len(left) == len(fc) - len(old_fc)
    left_acc = store.read_accuracy_rows()
    assert left_acc.target_ts.min() == A_CUT and len(left_acc) == len(acc) - len(old_acc)
    pd.testing.assert_frame_equal(store.read_metrics(), metrics_before)
    assert_daily(store, by_hand(old_acc))
    daily = store.read_accuracy_daily(start=T0 + pd.Timedelta(days=1))
    assert set(daily.day) == {T0 + pd.Timedelta(days=1)}
    assert store.describe()["rows"]["accuracy_daily"] > 0

    again = store.apply_retention(1, 1.5, now=NOW, batch_rows=batch_rows)
    assert again["forecasts_deleted"] == again["accuracy_deleted"] == 0
    assert again["days_aggregated"] == again["files_removed"] == 0
    assert len(store.read_forecasts()) == len(left)
    assert_daily(store, by_hand(old_acc))

    # a day later the rest of day 1 goes (its aggregate adds up to the whole day), and
    # the first half of day 2
    later = store.apply_retention(1, 1.5, now=NOW + pd.Timedelta(days=1), batch_rows=batch_rows)
    assert later["accuracy_deleted"] == 288 * 3 and later["days_aggregated"] == 2
    assert later["forecasts_deleted"] == 24 * 36
    assert_daily(store, by_hand(acc[acc.target_ts < A_CUT + pd.Timedelta(days=1)]))
    pd.testing.assert_frame_equal(store.read_metrics(), metrics_before)


@pytest.mark.parametrize("label", ["forecasts_deleted", "aggregated", "accuracy_deleted"])
def test_failure_mid_retention_leaves_whole_slots_and_loses_no_aggregate(
    make_store, monkeypatch, label
):
    store = make_store()
    fill(store)
    fc, acc = store.read_forecasts(), store.read_accuracy_rows()
    calls = {"n": 0}

    def boom(where: str) -> None:
        if where == label:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("injected failure")

    monkeypatch.setattr(storage.retention, "_fault_point", boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        store.apply_retention(1, 1.5, now=NOW, batch_rows=100)
    monkeypatch.undo()

    # every slot is whole: all its rows, or none
    full_fc, now_fc = per_slot(fc, "issued_at"), per_slot(store.read_forecasts(), "issued_at")
    assert (now_fc == full_fc.reindex(now_fc.index)).all()
    gone = full_fc.index.difference(now_fc.index)
    assert (gone < F_CUT).all()
    assert len(gone) > 0 or label != "forecasts_deleted"
    acc_now = store.read_accuracy_rows()
    full_acc, now_acc = per_slot(acc, "target_ts"), per_slot(acc_now, "target_ts")
    assert (now_acc == full_acc.reindex(now_acc.index)).all()
    assert (full_acc.index.difference(now_acc.index) < A_CUT).all()
    # no accuracy row is lost: each deleted one is in the daily aggregate
    daily_n = int(store.read_accuracy_daily()["n"].sum())
    assert daily_n + len(acc_now) >= len(acc)
    if store.backend != "parquet":  # one transaction: counted exactly once at every moment
        assert daily_n + len(acc_now) == len(acc)

    r = store.apply_retention(1, 1.5, now=NOW, batch_rows=100)
    assert r["forecasts_deleted"] == len(fc[fc.issued_at < F_CUT]) - len(gone) * 36
    assert store.read_forecasts().issued_at.min() == F_CUT
    assert store.read_accuracy_rows().target_ts.min() == A_CUT
    assert_daily(store, by_hand(acc[acc.target_ts < A_CUT]))


def test_retention_arguments_are_checked(make_store):
    store = make_store()
    for bad in (0, -1, float("nan"), "30", True):
        with pytest.raises(ConfigError, match="forecast_days"):
            store.apply_retention(bad, 1)
    with pytest.raises(ConfigError, match="batch_rows"):
        store.apply_retention(1, 1, batch_rows=0)
    # an empty store: nothing to do
    r = store.apply_retention(30, 90, now=NOW)
    assert r["forecasts_deleted"] == r["accuracy_deleted"] == r["days_aggregated"] == 0
    assert store.read_accuracy_daily().empty


def test_daily_table_name_may_not_clash():
    with pytest.raises(ConfigError, match="a_daily"):
        TableNames(metrics="a_daily", forecasts="f", accuracy="a")
    assert TableNames().accuracy_daily == "forecast_accuracy_daily"
