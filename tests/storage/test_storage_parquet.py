"""Parquet-only behaviour: layout, atomic file replacement, reads that skip unneeded files,
and the folder being readable by DuckDB, pandas and pyarrow."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from storage_helpers import forecasts, metrics, slot

from storage import ColumnMap, NaiveTimestampWarning, SchemaError, open_store


@pytest.fixture
def pstore(tmp_path):
    store = open_store(tmp_path / "pq")
    yield store
    store.close()


def _files(root, sub):
    return sorted(
        p.relative_to(root / sub).as_posix() for p in (root / sub).rglob("*") if p.is_file()
    )


def test_layout_is_hive_partitioned_by_date(pstore):
    root = pstore.root
    pstore.write_metrics(metrics(["a", "b"], [0, 11, 12, 288 + 3]))  # 00:00, 00:55, 01:00, day 2
    pstore.write_forecasts(forecasts(["a"], slot(11)))  # targets 01:00 - 01:55
    pstore.score_forecasts(slot(12))
    assert _files(root, "metrics") == [
        "date=2024-03-04/part-00.parquet",
        "date=2024-03-04/part-01.parquet",
        "date=2024-03-05/part-00.parquet",
    ]
    assert _files(root, "forecasts") == ["date=2024-03-04/20240304T005500Z.parquet"]
    assert _files(root, "forecast_accuracy") == ["date=2024-03-04/part-01.parquet"]
    hour0 = pq.read_table(root / "metrics/date=2024-03-04/part-00.parquet")
    assert hour0.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert hour0.num_rows == 4
    assert hour0["ts"].to_pylist() == sorted(hour0["ts"].to_pylist())  # sorted by time


def test_rewriting_a_slot_replaces_its_file(pstore):
    root = pstore.root
    pstore.write_forecasts(forecasts(["a", "b"], slot(11)))
    path = root / "forecasts/date=2024-03-04/20240304T005500Z.parquet"
    inode = path.stat().st_ino
    for i in range(3):
        pstore.write_forecasts(forecasts(["a", "b"], slot(11), bump=i, model_version=f"v{i}"))
    assert _files(root, "forecasts") == ["date=2024-03-04/20240304T005500Z.parquet"]
    assert path.stat().st_ino != inode  # a new file took the old name (os.replace)
    tab = pq.read_table(path)
    assert tab.num_rows == 24 and set(tab["model_version"].to_pylist()) == {"v2"}
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_recent_window_skips_unneeded_files(pstore):
    """Corrupt files outside the window: the recent read never opens them, a full read does."""
    root = pstore.root
    as_of = 2016 + 288 + 150  # 2024-03-12 12:30
    slots = [as_of - k for k in range(12)]
    slots += [as_of - 288 - k for k in range(12)] + [as_of - 2016 - k for k in range(12)]
    slots += [as_of - 1000, as_of - 600, as_of - 30]  # other dates / hours
    pstore.write_metrics(metrics(["a", "b"], sorted(slots)))
    day = slot(as_of).strftime("%Y-%m-%d")
    between = (slot(as_of) - pd.Timedelta(days=3)).strftime("%Y-%m-%d")
    for bad in (
        root / f"metrics/date={between}/part-05.parquet",  # a date between the ranges
        root / f"metrics/date={day}/part-03.parquet",  # an earlier hour of as_of's date
        root / f"metrics/date={day}/part-{slot(as_of - 30).hour:02d}.parquet",
    ):
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(b"not parquet at all")
    out = pstore.read_recent(slot(as_of), 12, extra_ranges=[(288, 299), (2016, 2027)])
    assert len(out) == 2 * 36
    with pytest.raises(Exception):  # noqa: B017 - any read error proves the file was opened
        pstore.read_metrics()


def test_folder_reads_with_duckdb_pandas_pyarrow(pstore):
    root = pstore.root
    pstore.write_metrics(metrics(["a", "b"], [0, 13, 300]))
    pstore.write_forecasts(forecasts(["a", "b"], slot(13)))
    con = duckdb.connect()
    n, typ = con.execute(
        "SELECT count(*), any_value(typeof(ts)) FROM read_parquet(?, hive_partitioning = true)",
        [str(root / "metrics" / "*" / "*.parquet")],
    ).fetchone()
    assert n == 6 and typ == "TIMESTAMP WITH TIME ZONE"
    latest = con.execute(
        "SELECT count(*) FROM read_parquet(?, hive_partitioning = true) WHERE step = 1",
        [str(root / "forecasts" / "*" / "*.parquet")],
    ).fetchone()[0]
    assert latest == 2
    pdf = pd.read_parquet(root / "metrics")
    assert len(pdf) == 6 and "date" in pdf.columns
    dset = ds.dataset(root / "forecasts", partitioning="hive")
    assert dset.count_rows() == 24


def test_files_written_by_others_naive_and_nixtla(tmp_path):
    root = tmp_path / "ext"
    folder = root / "metrics" / "date=2024-03-04"
    folder.mkdir(parents=True)
    ts = pd.date_range("2024-03-04 00:00", periods=4, freq="5min")  # naive
    pq.write_table(
        pa.table(
            {
                "unique_id": ["x"] * 4,
                "ds": pa.array(ts.to_numpy(), pa.timestamp("ns")),
                "y": pa.array([1, 2, None, 4], pa.int64()),
                "note": ["n"] * 4,
            }
        ),
        folder / "export-from-elsewhere.parquet",
    )
    store = open_store(root, columns=ColumnMap.nixtla())
    with pytest.warns(NaiveTimestampWarning):
        out = store.read_recent(slot(3), 3)
    assert list(out.columns) == ["series_id", "ts", "value"]
    assert list(out["ts"]) == [slot(1), slot(2), slot(3)]
    assert out["value"].iloc[0] == 2.0 and np.isnan(out["value"].iloc[1])  # NULL -> NaN
    assert store.metrics_range() == (slot(0), slot(3), 1)


def test_parquet_structural_errors(tmp_path):
    root = tmp_path / "bad"
    folder = root / "metrics" / "date=2024-03-04"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "series_id": ["a"],
                "ts": pa.array([slot(0)], pa.timestamp("us", tz="UTC")),
                "value": ["12"],
            }
        ),
        folder / "part-00.parquet",
    )
    store = open_store(root)
    with pytest.raises(SchemaError) as err:
        store.read_recent(slot(0), 1)
    assert "'value'" in str(err.value) and "string" in str(err.value)
    nix = open_store(root, columns=ColumnMap.nixtla())
    with pytest.raises(SchemaError) as err:
        nix.read_metrics()
    assert "['unique_id', 'ds', 'y']" in str(err.value)
    assert "['series_id', 'ts', 'value']" in str(err.value)
    empty = open_store(tmp_path / "empty")
    with pytest.raises(SchemaError, match="holds no Parquet files"):
        empty.read_recent(slot(0), 1)


def test_empty_file_gives_no_range(tmp_path):
    root = tmp_path / "e"
    folder = root / "metrics" / "date=2024-03-04"
    folder.mkdir(parents=True)
    schema = pa.schema(
        [("series_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("value", pa.float64())]
    )
    pq.write_table(schema.empty_table(), folder / "part-00.parquet")
    store = open_store(root)
    assert store.metrics_range() is None
    assert store.read_recent(slot(0), 12).empty


def test_a_rename_failing_mid_batch_says_which_files_hold_what(pstore, monkeypatch):
    """A backfill-sized write spans several files: if one rename fails, the error says how
    many were replaced, every file stays whole, and no temp file is left behind."""
    import os

    import storage.parquet
    from storage import WriteError

    old = pd.concat([forecasts(["a", "b"], slot(12 * h)) for h in range(3)])  # 3 hour files
    pstore.write_forecasts(old)
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(storage.parquet.os, "replace", flaky)
    new = pd.concat([forecasts(["a", "b"], slot(12 * h), bump=50.0) for h in range(3)])
    with pytest.raises(WriteError, match="failed after 1 of 3 files") as err:
        pstore.write_forecasts(new)
    assert "Input/output error" in str(err.value)
    monkeypatch.undo()
    assert not [p for p in pstore.root.rglob("*.tmp")], "temp files left behind"
    for h, bumped in ((0, True), (1, False), (2, False)):
        got = pstore.read_forecasts(issued_at=slot(12 * h))
        assert len(got) == 24 and got["yhat"].min() == (150.0 + 1 if bumped else 101.0), h
