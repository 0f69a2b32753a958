"""Rows 20 and 24 of the reliability table: a re-run that owns its slots leaves no stale
rows (and a failure half-way leaves the old ones); Parquet temp files of killed writers
are collected by age."""

from __future__ import annotations

import pandas as pd
import pytest
from reliability_helpers import END, STEP, forecast_frame

import storage.parquet
import storage.sql
from storage import DataValidationError

S, OTHER = END, END - STEP


def _run1(store) -> pd.DataFrame:
    store.write_forecasts(forecast_frame(["a", "b"], S, "v1"))
    store.write_forecasts(forecast_frame(["a", "b"], OTHER, "v1"))
    return store.read_forecasts(issued_at=S)


def test_r20_a_rerun_owning_its_slot_leaves_no_rows_of_a_skipped_series(bare_store):
    _run1(bare_store)
    other_before = bare_store.read_forecasts(issued_at=OTHER)
    n = bare_store.write_forecasts(forecast_frame(["a"], S, "v2", yhat=50.0), slots=[S])
    assert n == 12
    now = bare_store.read_forecasts(issued_at=S)
    assert set(now.series_id) == {"a"} and set(now.model_version) == {"v2"}, now
    assert len(now) == 12
    latest = bare_store.read_latest_forecasts()
    assert latest[latest.issued_at == S].series_id.unique().tolist() == ["a"]
    assert not ((latest.series_id == "b") & (latest.issued_at == S)).any()
    # the other slot is not owned: untouched
    pd.testing.assert_frame_equal(bare_store.read_forecasts(issued_at=OTHER), other_before)
    # slot numbers work too, and an empty frame empties the owned slot
    assert bare_store.write_forecasts(pd.DataFrame(), slots=[S.value // 1000 // 300_000_000]) == 0
    assert bare_store.read_forecasts(issued_at=S).empty
    assert len(bare_store.read_forecasts(issued_at=OTHER)) == 24


def test_r20_without_slots_the_write_is_still_an_upsert(bare_store):
    _run1(bare_store)
    bare_store.write_forecasts(forecast_frame(["a"], S, "v2"))
    now = bare_store.read_forecasts(issued_at=S)
    assert sorted(now.groupby("series_id").model_version.first()) == ["v1", "v2"]


def test_r20_rows_outside_the_owned_slots_are_refused(bare_store):
    old = _run1(bare_store)
    with pytest.raises(DataValidationError, match="outside the slots"):
        bare_store.write_forecasts(forecast_frame(["a"], OTHER, "v2"), slots=[S])
    pd.testing.assert_frame_equal(bare_store.read_forecasts(issued_at=S), old)


@pytest.mark.parametrize("at", ["first", "last"])
def test_r20_a_failure_half_way_through_an_owning_write_keeps_the_old_rows(bare_store, at):
    old = _run1(bare_store)
    module = storage.parquet if bare_store.backend == "parquet" else storage.sql
    reached = []

    def boom(label):
        reached.append(label)
        if at == "first" or label in ("before_commit", "before_replace"):
            raise RuntimeError(f"injected failure at {label}")

    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError, match="injected"):
        mp.setattr(module, "_fault_point", boom)
        bare_store.write_forecasts(forecast_frame(["a"], S, "v2"), slots=[S])
    assert reached, "no fault point was reached"
    pd.testing.assert_frame_equal(bare_store.read_forecasts(issued_at=S), old)


def _temp(folder, name, age_s):
    import os
    import time
    import uuid

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    path.write_bytes(b"PAR1 half a file")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_r24_parquet_temp_files_of_killed_writers_are_removed_by_age_only(tmp_path):
    from storage import open_store

    root = tmp_path / "lake"
    day = "date=2026-03-02"
    stale = [
        _temp(root / "forecasts" / day, "20260302T120000Z.parquet", 2 * 3600),
        _temp(root / "metrics" / day, "part-11.parquet", 25 * 3600),
        _temp(root / "forecast_accuracy" / day, "part-11.parquet", 3 * 3600),
    ]
    fresh = _temp(root / "forecasts" / day, "20260302T115500Z.parquet", 60)
    other = root / "forecasts" / day / ".keep"  # not a temp file of the store
    other.write_text("")
    store = open_store(str(root))
    assert store.stale_temp_files_removed == 3
    assert [p.exists() for p in stale] == [False] * 3
    assert fresh.exists() and other.exists()
    # a write collects the stale ones in the folder it writes (e.g. a kill after opening)
    late = _temp(root / "forecasts" / day, "20260302T120000Z.parquet", 2 * 3600)
    store.write_forecasts(forecast_frame(["a"], S))
    assert not late.exists() and fresh.exists()
    assert len(store.read_forecasts(issued_at=S)) == 12
