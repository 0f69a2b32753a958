"""SQL-only behaviour (SQLite and PostgreSQL): the view consumers query, how timestamps are
stored, existing user tables, structural errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from storage_helpers import forecasts, metrics, slot
from storage_pg import PG_URL, require_pg, unique_tables

from storage import ColumnMap, NaiveTimestampWarning, SchemaError, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    if request.param == "postgres":
        require_pg()
    return request.param


@pytest.fixture
def engine(store_url):
    eng = sa.create_engine(store_url)
    yield eng
    eng.dispose()


def _ts_text(value) -> pd.Timestamp:
    return (
        pd.Timestamp(value).tz_convert("UTC")
        if pd.Timestamp(value).tzinfo
        else pd.Timestamp(value).tz_localize("UTC")
    )


def test_latest_view_answers_plain_sql(make_store, engine):
    store = make_store()
    store.write_forecasts(forecasts(["a", "b"], slot(100), model_version="old"))
    store.write_forecasts(forecasts(["a"], slot(101), model_version="new"))
    view = store.tables.latest_view
    q = engine.dialect.identifier_preparer.quote(view)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT series_id, target_ts, issued_at, model_version, yhat FROM {q} "
                "ORDER BY series_id, target_ts"
            )
        ).all()
    api = store.read_latest_forecasts()
    assert len(rows) == len(api) == 25
    assert [r[0] for r in rows] == list(api["series_id"])
    assert [_ts_text(r[1]) for r in rows] == list(api["target_ts"])
    assert [_ts_text(r[2]) for r in rows] == list(api["issued_at"])
    assert [r[3] for r in rows] == list(api["model_version"])
    assert [r[4] for r in rows] == list(api["yhat"])


def test_timestamps_are_stored_timezone_aware_utc(make_store, engine, backend):
    store = make_store(columns=ColumnMap.nixtla())
    store.write_metrics(metrics(["s"], [1], names=("unique_id", "ds", "y"), features=False))
    store.write_forecasts(forecasts(["s"], slot(1), horizon=1))
    with engine.connect() as conn:
        cols = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns(store.tables.metrics)}
        assert set(cols) == {"unique_id", "ds", "y"}  # the user's names are the stored names
        if backend == "postgres":
            types = dict(
                conn.execute(
                    sa.text(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = :t"
                    ),
                    {"t": store.tables.forecasts},
                ).all()
            )
            for c in ("issued_at", "target_ts", "created_at"):
                assert types[c] == "timestamp with time zone"
            assert types["yhat"] == "double precision"
        else:
            raw = conn.execute(sa.text(f"SELECT typeof(ds), ds FROM {store.tables.metrics}")).one()
            assert raw == ("text", "2024-03-04 00:05:00+00:00")
            created = conn.execute(
                sa.text(f"SELECT created_at FROM {store.tables.forecasts}")
            ).scalar_one()
            assert created.endswith("+00:00") and len(created) == len(
                "2024-01-01 00:00:00.000000+00:00"
            )


def test_ids_travel_as_bound_parameters(make_store, engine):
    store = make_store()
    evil = f"x'); DROP TABLE {store.tables.forecasts}; --"
    store.write_metrics(metrics([evil, "b"], range(3)))
    store.write_forecasts(forecasts([evil], slot(2), horizon=2))
    assert set(store.read_recent(slot(2), 3, series_ids=[evil])["series_id"]) == {evil}
    assert len(store.read_forecasts(series_ids=[evil])) == 2
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table(store.tables.forecasts)


def test_many_series_ids_in_one_filter(make_store):
    store = make_store()
    store.write_metrics(metrics(["a", "b"], range(3)))
    ids = [f"id{i}" for i in range(40_000)] + ["b"]  # above SQLite's bound-variable limit
    out = store.read_recent(slot(2), 3, series_ids=ids)
    assert set(out["series_id"]) == {"b"} and len(out) == 3


def _create_user_table(engine, name: str, ddl_cols: str, rows: list[tuple], cols: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} ({ddl_cols})")
        if rows:
            marks = (
                ", ".join(["?"] * len(rows[0]))
                if engine.dialect.name == "sqlite"
                else (", ".join(["%s"] * len(rows[0])))
            )
            conn.exec_driver_sql(f"INSERT INTO {name} ({cols}) VALUES ({marks})", rows)


def _drop(engine, name):
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def test_missing_column_names_table_column_and_existing_ones(make_store, engine):
    tables = unique_tables()
    _create_user_table(
        engine, tables.metrics, "unique_id TEXT, ds TEXT, value DOUBLE PRECISION", [], ""
    )
    try:
        with pytest.raises(SchemaError) as err:
            make_store(columns=ColumnMap.nixtla(), tables_=tables)
        msg = str(err.value)
        assert repr(tables.metrics) in msg and "['y']" in msg
        assert "['unique_id', 'ds', 'value']" in msg
    finally:
        _drop(engine, tables.metrics)


def test_text_target_is_a_schema_error(make_store, engine):
    tables = unique_tables()
    _create_user_table(engine, tables.metrics, "series_id TEXT, ts TEXT, value TEXT", [], "")
    try:
        with pytest.raises(SchemaError) as err:
            make_store(tables_=tables)
        msg = str(err.value)
        assert "'value'" in msg and "TEXT" in msg and "numeric" in msg
    finally:
        _drop(engine, tables.metrics)


def test_missing_metrics_table_lists_tables(make_store):
    store = make_store()
    with pytest.raises(SchemaError) as err:
        store.read_metrics()
    msg = str(err.value)
    assert repr(store.tables.metrics) in msg and store.tables.forecasts in msg
    with pytest.raises(SchemaError):
        store.metrics_range()


def test_existing_table_nulls_read_as_nan_and_empty_range(make_store, engine, backend):
    tables = unique_tables()
    ts_type = "TIMESTAMPTZ" if backend == "postgres" else "TEXT"
    ddl = (
        f"series_id TEXT NOT NULL, ts {ts_type} NOT NULL, value DOUBLE PRECISION, "
        "cpu DOUBLE PRECISION, note TEXT, PRIMARY KEY (series_id, ts)"
    )
    _create_user_table(engine, tables.metrics, ddl, [], "")
    try:
        store = make_store(tables_=tables)
        assert store.metrics_range() is None
        t1 = "2024-03-04 00:05:00+00:00"
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {tables.metrics} (series_id, ts, value, cpu, note) "
                    "VALUES ('a', :t, NULL, 0.5, 'x')"
                ),
                {"t": t1 if backend == "sqlite" else pd.Timestamp(t1).to_pydatetime()},
            )
        out = store.read_recent(slot(1), 1)
        assert list(out.columns) == ["series_id", "ts", "value", "cpu"]  # text 'note' skipped
        assert np.isnan(out["value"].iloc[0]) and out["cpu"].iloc[0] == 0.5
        assert store.metrics_range() == (slot(1), slot(1), 1)
        # a NULL actual is not scored
        store.write_forecasts(forecasts(["a"], slot(0), horizon=1))
        assert store.score_forecasts(slot(1)) == 0
        with pytest.raises(SchemaError, match="error_rate"):
            store.write_metrics(metrics(["a"], [2]))  # frame feature absent from the table
    finally:
        _drop(engine, tables.metrics)


@pytest.mark.parametrize(
    "constraint, message",
    [
        ("", "needs a primary key or unique index on (series_id, ts)"),
        (", extra TEXT NOT NULL, PRIMARY KEY (series_id, ts)", "extra"),
    ],
    ids=["no_key", "not_null_column"],
)
def test_writes_into_a_user_table_that_cannot_take_them_fail_clearly(
    make_store, engine, backend, constraint, message
):
    """The bulk paths use the driver's cursor: its errors must still become a WriteError
    naming the table (not a raw sqlite3/psycopg error that the job would retry as if the
    database were down), and nothing is written."""
    from storage import WriteError
    from storage.errors import is_transient

    tables = unique_tables()
    ts_type = "TIMESTAMPTZ" if backend == "postgres" else "TEXT"
    ddl = f"series_id TEXT NOT NULL, ts {ts_type} NOT NULL, value DOUBLE PRECISION{constraint}"
    _create_user_table(engine, tables.metrics, ddl, [], "")
    try:
        store = make_store(tables_=tables)
        with pytest.raises(WriteError) as err:
            store.write_metrics(metrics(["a", "b"], range(3), features=False))
        msg = str(err.value)
        assert repr(tables.metrics) in msg and message in msg, msg
        assert "nothing was written" in msg and not is_transient(err.value)
        assert store.metrics_range() is None
    finally:
        _drop(engine, tables.metrics)


def test_transient_errors_are_told_apart_from_permanent_ones():
    import sqlite3

    import psycopg

    from storage import StorageConnectionError
    from storage.errors import is_transient

    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(sqlite3.OperationalError("no such table: metrics"))
    assert not is_transient(sqlite3.IntegrityError("NOT NULL constraint failed: m.extra"))
    assert is_transient(psycopg.OperationalError("connection refused"))
    assert not is_transient(psycopg.errors.UniqueViolation("duplicate key"))
    assert is_transient(StorageConnectionError("host 127.0.0.1 unreachable"))
    wrapped = sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such column"))
    assert not is_transient(wrapped)
    assert not is_transient(ValueError("bad data"))


def test_existing_forecasts_table_missing_columns(make_store, engine):
    tables = unique_tables()
    _create_user_table(engine, tables.forecasts, "series_id TEXT, yhat DOUBLE PRECISION", [], "")
    try:
        with pytest.raises(SchemaError) as err:
            make_store(tables_=tables)
        assert "issued_at" in str(err.value) and repr(tables.forecasts) in str(err.value)
    finally:
        _drop(engine, tables.forecasts)


PG_ONLY = pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])


@PG_ONLY
def test_password_never_shown(backend):
    require_pg()
    url = sa.engine.make_url(PG_URL).set(password="hunter2-secret")
    tables = unique_tables()
    store = open_store(url.render_as_string(hide_password=False), tables=tables)
    try:
        info = store.describe()
        assert "hunter2-secret" not in repr(info) and "***" in info["url"]
        assert "hunter2-secret" not in repr(store)
    finally:
        store.drop_all()
        store.close()


# ------------------------------------------------ SQLite tables written by others
@pytest.mark.parametrize(
    ("declared", "stored", "expect"),
    [
        ("TEXT", "2024-03-04T00:05:00", "2024-03-04T00:10:00"),
        ("TIMESTAMP", "2024-03-04 00:05:00.000000", "2024-03-04 00:10:00.000000"),
        ("TEXT", "2024-03-04T00:05:00Z", "2024-03-04T00:10:00Z"),
        ("INTEGER", 1709510700, 1709511000),
        ("INTEGER", 1709510700000, 1709511000000),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_existing_timestamp_formats(make_store, engine, backend, declared, stored, expect):
    tables = unique_tables()
    _create_user_table(
        engine,
        tables.metrics,
        f"sid TEXT, t {declared}, y REAL, PRIMARY KEY (sid, t)",
        [("a", stored, 1.5)],
        "sid, t, y",
    )
    cm = ColumnMap("sid", "t", "y")
    if isinstance(stored, str) and not stored.endswith("Z"):
        with pytest.warns(NaiveTimestampWarning):
            store = make_store(columns=cm, tables_=tables)
    else:
        store = make_store(columns=cm, tables_=tables)
    try:
        store.write_metrics(pd.DataFrame({"sid": ["a"], "t": [slot(2)], "y": [2.5]}))
        out = store.read_recent(slot(2), 2)
        assert list(out["ts"]) == [slot(1), slot(2)]
        assert list(out["value"]) == [1.5, 2.5]
        with engine.connect() as conn:
            written = conn.exec_driver_sql(
                f"SELECT t FROM {tables.metrics} ORDER BY t DESC LIMIT 1"
            ).scalar_one()
        assert written == expect  # new rows use the table's own format
        # scoring joins forecasts to this table's format correctly
        store.write_forecasts(forecasts(["a"], slot(0), horizon=2))
        assert store.score_forecasts(slot(2)) == 2
        assert list(store.read_accuracy_rows()["y"]) == [1.5, 2.5]
    finally:
        _drop(engine, tables.metrics)


@PG_ONLY
def test_postgres_timestamp_without_time_zone_is_utc(make_store, engine, backend):
    require_pg()
    tables = unique_tables()
    _create_user_table(
        engine,
        tables.metrics,
        "series_id TEXT, ts TIMESTAMP, value DOUBLE PRECISION, PRIMARY KEY (series_id, ts)",
        [("a", pd.Timestamp("2024-03-04 00:05:00").to_pydatetime(), 1.5)],
        "series_id, ts, value",
    )
    try:
        with pytest.warns(NaiveTimestampWarning):
            store = make_store(tables_=tables)
            store.write_metrics(metrics(["a"], [2], features=False))
            out = store.read_recent(slot(2), 2)
        assert list(out["ts"]) == [slot(1), slot(2)]
        store.write_forecasts(forecasts(["a"], slot(0), horizon=2))
        assert store.score_forecasts(slot(2)) == 2
        assert store.metrics_range() == (slot(1), slot(2), 1)
    finally:
        _drop(engine, tables.metrics)


def test_existing_table_with_integer_ids(make_store, engine, backend):
    tables = unique_tables()
    ts_type = "TIMESTAMPTZ" if backend == "postgres" else "TEXT"
    _create_user_table(
        engine,
        tables.metrics,
        f"host INTEGER NOT NULL, ts {ts_type} NOT NULL, rps DOUBLE PRECISION, "
        "PRIMARY KEY (host, ts)",
        [],
        "",
    )
    try:
        store = make_store(columns=ColumnMap("host", "ts", "rps"), tables_=tables)
        df = pd.DataFrame({"host": [7, 7, 12], "ts": [slot(1), slot(2), slot(2)], "rps": 1.5})
        assert store.write_metrics(df) == 3
        out = store.read_recent(slot(2), 2, series_ids=["7"])
        assert list(out["series_id"]) == ["7", "7"] and list(out["ts"]) == [slot(1), slot(2)]
        store.write_forecasts(forecasts(["7", "12"], slot(1), horizon=1))
        assert store.score_forecasts(slot(2)) == 2
        assert list(store.read_accuracy_rows()["series_id"]) == ["12", "7"]
    finally:
        _drop(engine, tables.metrics)
