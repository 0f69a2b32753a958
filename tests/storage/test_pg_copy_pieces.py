"""PostgreSQL ``COPY`` in and out in bounded pieces (``storage.dialect_postgres``): rows
cut into pieces of any size read and write exactly what one piece does, and an error the
server raises late in a ``COPY ... TO`` still reaches the caller."""

from __future__ import annotations

import pandas as pd
import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from storage_helpers import canon, forecasts, metrics, slot
from storage_pg import PG_URL, require_pg, unique_tables

from storage import dialect_postgres as pgd
from storage import open_store

pytestmark = pytest.mark.postgres

# ids the CSV text must quote (comma, quote, newline) and multi-byte characters: a piece
# boundary inside one of them would corrupt the rows
IDS = ["plain", "a,b", 'q"uote', "line\nbreak", "é-ünï", "x" * 40]
# (rows per COPY-in piece, bytes per COPY-out block): one piece each way (the defaults at
# this size), one row per block, a few rows per piece
SIZES = [(None, None), (1, 1), (7, 300)]


@pytest.fixture
def pg_store():
    require_pg()
    store = open_store(PG_URL, tables=unique_tables())
    yield store
    store.drop_all()
    store.close()


def _everything(store) -> dict[str, pd.DataFrame]:
    return {
        "metrics": canon(store.read_metrics(), ["series_id", "ts"]),
        "forecasts": canon(store.read_forecasts(), ["series_id", "issued_at", "step"]),
        "latest": canon(store.read_latest_forecasts(), ["series_id", "target_ts"]),
        "accuracy": canon(store.read_accuracy_rows(), ["series_id", "issued_at", "step"]),
    }


def _fill(store) -> None:
    store.write_metrics(metrics(IDS, range(30), seed=3))  # staged COPY + upsert
    store.write_forecasts(forecasts(IDS, slot(5)))  # upsert
    store.write_forecasts(forecasts(IDS, slot(6), bump=1.5), slots=[slot(6)])  # COPY into
    store.write_forecasts(forecasts(IDS[:2], slot(6), bump=2.5), slots=[slot(6)])  # replaces
    store.score_forecasts(slot(20), lookback_slots=20)


@pytest.mark.parametrize("in_rows, out_bytes", SIZES, ids=["one", "row", "few"])
def test_pieces_of_any_size_give_the_rows_of_one_piece(pg_store, monkeypatch, in_rows, out_bytes):
    reference = open_store(PG_URL, tables=unique_tables())
    try:
        _fill(reference)  # default sizes: everything in one piece
        expected = _everything(reference)
    finally:
        reference.drop_all()
        reference.close()
    if in_rows is not None:
        monkeypatch.setattr(pgd, "COPY_IN_ROWS", in_rows)
        monkeypatch.setattr(pgd, "COPY_OUT_BYTES", out_bytes)
    _fill(pg_store)
    got = _everything(pg_store)
    written = canon(metrics(IDS, range(30), seed=3), ["series_id", "ts"])
    pd.testing.assert_frame_equal(got["metrics"], written, check_dtype=False)
    assert str(got["metrics"]["ts"].dtype) == "datetime64[us, UTC]"
    assert len(got["forecasts"]) == len(IDS) * 12 + 2 * 12
    assert len(got["accuracy"]) > 0
    created = ["created_at", "scored_at"]  # now() at each write: differs between stores
    for name, frame in got.items():
        drop = [c for c in created if c in frame.columns]
        for c in drop:  # still written, as UTC instants
            assert frame[c].notna().all() and str(frame[c].dtype) == "datetime64[us, UTC]"
        pd.testing.assert_frame_equal(frame.drop(columns=drop), expected[name].drop(columns=drop))


def test_a_user_row_that_does_not_parse_is_skipped_in_its_block_only(pg_store, monkeypatch):
    """'infinity' fails the fast parse of its block alone: the loose parse of that block
    drops the row (counted), the blocks around it parse as usual."""
    pg_store.write_metrics(metrics(["a", "b"], range(10), features=False))
    q = pg_store.dialect.quote(pg_store.tables.metrics)
    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {q} (series_id, ts, value) VALUES ('b', 'infinity', 1.0)"
        )
    monkeypatch.setattr(pgd, "COPY_OUT_BYTES", 100)
    with pytest.warns(Warning):
        out = pg_store.read_metrics()
    assert len(out) == 20 and sum(pg_store.skipped_rows.values()) == 1
    assert out["ts"].notna().all() and str(out["ts"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("out_bytes", [1, 1 << 20])
def test_a_server_error_late_in_copy_out_is_raised(pg_store, monkeypatch, out_bytes):
    """Rows were already received when the server fails: the error is raised (not a
    short result), and the connection serves the next query."""
    monkeypatch.setattr(pgd, "COPY_OUT_BYTES", out_bytes)
    n = 50_000
    x = sa.literal_column(f"1.0 / ({n} - g)").label("x")  # fails at the last row
    stmt = sa.select(x).select_from(sa.text(f"generate_series(1, {n}) AS g"))
    ok = sa.select(sa.literal(1.5).label("x"))
    with pg_store.engine.connect() as conn, pytest.raises(psycopg.errors.DivisionByZero):
        pg_store.dialect.fetch(conn, stmt, [("x", pa.float64())])
    with pg_store.engine.connect() as conn:  # the pool's connection, rolled back
        assert pg_store.dialect.fetch(conn, ok, [("x", pa.float64())])["x"].to_pylist() == [1.5]


def test_timestamps_are_formatted_once_per_distinct_value():
    arr = pa.chunked_array(
        [
            pa.array([0, 1_500_000, None], pa.timestamp("us", tz="UTC")),
            pa.array([1_500_000, 86_400_000_000], pa.timestamp("us", tz="UTC")),
        ]
    )
    aware = pgd._iso_text(arr, True).to_pylist()
    assert aware == [
        "1970-01-01 00:00:00.000000+00",
        "1970-01-01 00:00:01.500000+00",
        None,
        "1970-01-01 00:00:01.500000+00",
        "1970-01-02 00:00:00.000000+00",
    ]
    assert pgd._iso_text(arr, False).to_pylist()[1] == "1970-01-01 00:00:01.500000"
