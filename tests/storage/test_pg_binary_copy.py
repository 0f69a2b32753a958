"""PostgreSQL's binary ``COPY`` (``storage.pgbinary``): the bytes follow the documented
format, every type it encodes lands exactly as the CSV path lands it (NULLs, range limits,
NaN and infinities, timestamps before the PostgreSQL epoch, text CSV must quote), and a
column it cannot encode exactly sends the write through CSV, where the server casts or
refuses as it always did."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import numpy as np
import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from storage_pg import PG_URL, require_pg

from storage import dialect_postgres as pgd
from storage import open_store
from storage.pgbinary import SIGNATURE, TRAILER, binary_kinds, encode_rows

UTC = dt.UTC
TS = pa.timestamp("us", tz="UTC")


def test_rows_follow_the_documented_format():
    tab = pa.table(
        {
            "s": pa.array(["ab", None], pa.string()),
            "i": pa.array([7, -1], pa.int32()),
            "f": pa.array([None, 1.5], pa.float64()),
            "t": pa.array([946_684_800_000_001, 0], pa.int64()).cast(TS),
        }
    )
    got = bytes(encode_rows(tab, ["text", "int4", "float8", "ts"]))
    row1 = (
        b"\x00\x04"
        + b"\x00\x00\x00\x02ab"
        + b"\x00\x00\x00\x04\x00\x00\x00\x07"
        + b"\xff\xff\xff\xff"  # NULL: length -1, no bytes
        + b"\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01"  # 1 us after 2000-01-01
    )
    row2 = (
        b"\x00\x04"
        + b"\xff\xff\xff\xff"
        + b"\x00\x00\x00\x04\xff\xff\xff\xff"
        + b"\x00\x00\x00\x08?\xf8\x00\x00\x00\x00\x00\x00"
        + b"\x00\x00\x00\x08"
        + (-946_684_800_000_000).to_bytes(8, "big", signed=True)
    )
    assert got == row1 + row2
    assert SIGNATURE.startswith(b"PGCOPY\n\xff\r\n\x00") and TRAILER == b"\xff\xff"


@pytest.fixture
def pg():
    require_pg()
    store = open_store(PG_URL)
    engine = store.engine
    names: list[str] = []

    def table(ddl: str) -> str:
        name = f"tbin_{uuid.uuid4().hex[:8]}"
        names.append(name)
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {name} ({ddl})"))
        return name

    yield store, table
    with engine.begin() as conn:
        for name in names:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    store.close()


ALL_TYPES = (
    "k int4, s text, v varchar(50), a int2, b int4, c int8, f float8, ok bool,"
    " tz timestamptz, naive timestamp"
)


def _all_types_rows() -> pa.Table:
    ids = ["plain", "a,b", 'q"uote', "line\nbreak", "é-ünï 水", "", None, "x" * 50]
    n = len(ids)
    us = [
        0,
        946_684_800_000_000,
        946_684_799_999_999,
        -1,
        None,
        4_102_444_800_000_000,
        -2_208_988_800_000_000,
        1_780_315_200_000_000,
    ]
    return pa.table(
        {
            "k": pa.array(range(n), pa.int32()),
            "s": pa.array(ids, pa.string()),
            "v": pa.array(list(reversed(ids)), pa.large_string()),
            "a": pa.array([-(2**15), 2**15 - 1, 0, None, 1, -1, 2, 3], pa.int16()),
            "b": pa.array([-(2**31), 2**31 - 1, 0, 5, None, -5, 6, 7], pa.int64()),
            "c": pa.array([-(2**63), 2**63 - 1, 0, 9, 10, None, 11, 12], pa.int64()),
            "f": pa.array(
                [math.nan, math.inf, -math.inf, -0.0, 5e-324, None, 1 / 3, 1e300], pa.float64()
            ),
            "ok": pa.array([True, False, None, True, False, True, False, True]),
            "tz": pa.array(us, pa.int64()).cast(TS),
            "naive": pa.array(list(reversed(us)), pa.int64()).cast(TS),
        }
    )


def _write(store, name: str, tab: pa.Table) -> None:
    with store.engine.begin() as conn:
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        codecs = {c: None for c in ("tz", "naive") if c in tab.column_names}
        store.dialect.bulk_insert(conn, table, tab, codecs, lambda _: None)


def _rows(store, name: str) -> list[tuple]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY k")).all()
    # NaN != NaN: compare floats by their text
    return [tuple(repr(x) if isinstance(x, float) else x for x in r) for r in rows]


@pytest.mark.postgres
def test_every_encoded_type_lands_as_csv_lands_it(pg, monkeypatch):
    store, table = pg
    tab = _all_types_rows()
    binary, csv = table(ALL_TYPES), table(ALL_TYPES)
    with store.engine.connect() as conn:
        kinds = binary_kinds(conn, binary, tab)
    assert kinds == ["int4", "text", "text", "int2", "int4", "int8", "float8", "bool", "ts", "ts"]
    monkeypatch.setattr(pgd, "COPY_IN_ROWS", 3)  # pieces of 3 rows: boundaries inside
    _write(store, binary, tab)
    monkeypatch.setattr(pgd, "COPY_BINARY", False)
    _write(store, csv, tab)
    got, expected = _rows(store, binary), _rows(store, csv)
    assert got == expected
    assert got[4][1] == "é-ünï 水" and got[6][1] is None and got[5][1] == ""
    assert got[1][8] == dt.datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's epoch
    assert got[3][8] == dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert got[0][6] == "nan" and got[1][6] == "inf" and got[3][6] == "-0.0"


@pytest.mark.postgres
@pytest.mark.parametrize(
    "ddl, column, expected",
    [
        ("k int4, x numeric", pa.array([1.25, None], pa.float64()), ["1.25", None]),
        ("k int4, x real", pa.array([1.25, 2.5], pa.float64()), ["1.25", "2.5"]),
        ("k int4, x char(5)", pa.array(["ab", "cd"], pa.string()), ["ab", "cd"]),
        # a float for an integer column: the server's cast of its text decides
        ("k int4, x bigint", pa.array([1.0, 2.0], pa.float64()), ["1", "2"]),
    ],
    ids=["numeric", "real", "char", "float-into-bigint"],
)
def test_a_column_binary_cannot_carry_goes_through_csv(pg, ddl, column, expected):
    store, table = pg
    name = table(ddl)
    tab = pa.table({"k": pa.array([1, 2], pa.int32()), "x": column})
    with store.engine.connect() as conn:
        assert binary_kinds(conn, name, tab) is None
    _write(store, name, tab)
    with store.engine.connect() as conn:
        got = [r[0] for r in conn.execute(sa.text(f"SELECT x::text FROM {name} ORDER BY k"))]
    assert got == expected


@pytest.mark.postgres
def test_a_value_out_of_the_columns_range_is_the_servers_error(pg):
    store, table = pg
    name = table("k int4, a int2")
    tab = pa.table({"k": pa.array([1], pa.int32()), "a": pa.array([40_000], pa.int64())})
    with store.engine.connect() as conn:
        assert binary_kinds(conn, name, tab) is None  # not truncated into 2 bytes
    with pytest.raises(psycopg.errors.NumericValueOutOfRange, match="smallint"):
        _write(store, name, tab)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar() == 0


@pytest.mark.postgres
def test_forecast_writes_go_binary_and_read_back_the_same(pg, monkeypatch):
    """The product's own forecasts table takes the binary path (every column's type is one
    it encodes), and a write read back equals the same write through CSV."""
    store, _ = pg
    from storage_helpers import forecasts, slot
    from storage_pg import unique_tables

    seen = []
    real = pgd.binary_kinds

    def spy(conn, name, tab):
        seen.append(real(conn, name, tab))
        return seen[-1]

    monkeypatch.setattr(pgd, "binary_kinds", spy)
    frames = {}
    for binary in (True, False):
        monkeypatch.setattr(pgd, "COPY_BINARY", binary)
        s = open_store(PG_URL, tables=unique_tables())
        try:
            s.write_forecasts(forecasts(["a", "b,c", "é"], slot(4)), slots=[slot(4)])
            frames[binary] = s.read_forecasts().drop(columns=["created_at"])
        finally:
            s.drop_all()
            s.close()
    assert seen and all(k is not None for k in seen)
    assert frames[True].equals(frames[False])
    assert np.isfinite(frames[True]["yhat"]).all() and len(frames[True]) == 36
