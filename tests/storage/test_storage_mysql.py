"""MariaDB/MySQL-only behaviour: column types, time zones that are not UTC, key collation,
existing user tables, connection errors and the view consumers query (the contract suite
runs on MariaDB too, through the ``backend`` fixture)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pandas as pd
import pytest
import sqlalchemy as sa
from storage_helpers import canon, forecasts, metrics, slot
from storage_pg import MARIADB_URL, require_mariadb, unique_tables

from storage import ColumnMap, StorageConnectionError, open_store
from storage.alerts import alerts_table
from storage.breaches import Alert
from storage.errors import is_transient


def us(ts: pd.Timestamp) -> int:
    return ts.value // 1000


pytestmark = pytest.mark.mariadb


@pytest.fixture
def backend():
    require_mariadb()
    return "mariadb"


@pytest.fixture
def raw():
    """A plain PyMySQL connection whose session time zone is +05:00 (as a server or user
    default that is not UTC would be)."""
    import pymysql

    u = sa.engine.make_url(MARIADB_URL)
    conn = pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        database=u.database,
        init_command="SET time_zone = '+05:00'",
        autocommit=True,
    )
    yield conn
    conn.close()


def _wall(ts: pd.Timestamp) -> dt.datetime:
    return ts.tz_convert("UTC").tz_localize(None).to_pydatetime()


def _sql(raw, sql: str, args=None) -> list[tuple]:
    with raw.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def test_tables_are_innodb_utf8mb4_with_datetime6_and_nopad_keys(make_store, raw):
    store = make_store()
    store.write_forecasts(forecasts(["a"], slot(1), horizon=1))
    rows = _sql(
        raw,
        "SELECT column_name, column_type, collation_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name = %s",
        (store.tables.forecasts,),
    )
    types = {r[0]: (r[1], r[2]) for r in rows}
    for c in ("issued_at", "target_ts", "created_at"):
        assert types[c][0] == "datetime(6)"
    assert types["series_id"] == ("varchar(512)", "utf8mb4_nopad_bin")
    assert types["yhat"][0] == "double"
    engine = _sql(
        raw,
        "SELECT engine FROM information_schema.tables WHERE table_schema = DATABASE() "
        "AND table_name = %s",
        (store.tables.forecasts,),
    )
    assert engine == [("InnoDB",)]


def test_ids_differing_in_case_or_trailing_space_are_different_series(make_store):
    store = make_store()
    ids = ["a", "A", "a ", "ä"]
    store.write_metrics(metrics(ids, range(3)))
    out = store.read_recent(slot(2), 3)
    assert sorted(set(out["series_id"])) == sorted(ids) and len(out) == 12
    assert set(store.read_recent(slot(2), 3, series_ids=["a "])["series_id"]) == {"a "}


def test_a_session_time_zone_other_than_utc_changes_nothing(make_store, raw):
    """The store pins time_zone on each of its connections; DATETIME values are UTC wall time
    whatever a reader's session says, and a store opened with a +05:00 init_command still
    writes and reads UTC."""
    store = make_store(engine_kwargs={"connect_args": {"init_command": "SET time_zone='+05:00'"}})
    store.write_metrics(metrics(["s"], [1, 2]))
    store.write_forecasts(forecasts(["s"], slot(1), horizon=1))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT @@session.time_zone").scalar() == "+00:00"
    stored = _sql(raw, f"SELECT ts FROM `{store.tables.metrics}` ORDER BY ts")
    assert [r[0] for r in stored] == [_wall(slot(1)), _wall(slot(2))]
    assert list(store.read_recent(slot(2), 2)["ts"]) == [slot(1), slot(2)]
    created = store.read_forecasts()["created_at"].iloc[0]
    assert abs(created - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=5)


def test_existing_user_table_with_timestamp_column_written_in_another_time_zone(make_store, raw):
    """A user's TIMESTAMP column, written by a +05:00 session: the store reads UTC."""
    tables = unique_tables()
    _sql(
        raw,
        f"CREATE TABLE `{tables.metrics}` (host INT NOT NULL, ts TIMESTAMP NOT NULL, "
        "rps DOUBLE, PRIMARY KEY (host, ts)) ENGINE=InnoDB",
    )
    try:
        local = _wall(slot(1) + pd.Timedelta(hours=5))
        _sql(raw, f"INSERT INTO `{tables.metrics}` VALUES (7, %s, 1.5)", (local,))
        store = make_store(columns=ColumnMap("host", "ts", "rps"), tables_=tables)
        out = store.read_recent(slot(1), 1, series_ids=["7"])
        assert list(out["series_id"]) == ["7"] and list(out["ts"]) == [slot(1)]
        store.write_forecasts(forecasts(["7"], slot(0), horizon=1))
        assert store.score_forecasts(slot(1)) == 1
        assert store.score_forecasts(slot(1)) == 1  # re-scoring counts each row once
    finally:
        _sql(raw, f"DROP TABLE IF EXISTS `{tables.metrics}`")


def test_latest_view_answers_plain_sql(make_store, raw):
    store = make_store()
    store.write_forecasts(forecasts(["a", "b"], slot(100), model_version="old"))
    store.write_forecasts(forecasts(["a"], slot(101), model_version="new"))
    rows = _sql(
        raw,
        "SELECT series_id, target_ts, issued_at, model_version, yhat "
        f"FROM `{store.tables.latest_view}` ORDER BY series_id, target_ts",
    )
    api = store.read_latest_forecasts()
    assert len(rows) == len(api) == 25
    assert [r[0] for r in rows] == list(api["series_id"])
    assert [pd.Timestamp(r[1], tz="UTC") for r in rows] == list(api["target_ts"])
    assert [r[3] for r in rows] == list(api["model_version"])


def test_many_series_ids_in_one_filter(make_store):
    store = make_store()
    store.write_metrics(metrics(["a", "b"], range(3)))
    ids = [f"id{i}" for i in range(40_000)] + ["b"]
    out = store.read_recent(slot(2), 3, series_ids=ids)
    assert set(out["series_id"]) == {"b"} and len(out) == 3


def test_ids_travel_as_bound_parameters(make_store, raw):
    store = make_store()
    evil = f"x'); DROP TABLE `{store.tables.forecasts}`; -- \\ %s"
    store.write_metrics(metrics([evil, "b"], range(3)))
    store.write_forecasts(forecasts([evil], slot(2), horizon=2))
    assert set(store.read_recent(slot(2), 3, series_ids=[evil])["series_id"]) == {evil}
    assert len(store.read_forecasts(series_ids=[evil])) == 2


@pytest.mark.parametrize(
    "url, permanent",
    [
        ("mysql+pymysql://root@127.0.0.1:3306/lstmf_no_such_db", True),
        ("mysql+pymysql://lstmf_no_such_user:s3cr3t-pw@127.0.0.1:3306/test", True),
        ("mysql+pymysql://root:s3cr3t-pw@no-such-host.invalid:3306/test", True),
        ("mariadb+pymysql://root:s3cr3t-pw@127.0.0.1:1/test", False),
    ],
    ids=["no_such_database", "access_denied", "unknown_host", "refused"],
)
def test_connection_errors_are_classified_and_mask_the_password(backend, url, permanent):
    with pytest.raises(StorageConnectionError) as err:
        open_store(url + "?connect_timeout=3")
    msg = str(err.value)
    assert "s3cr3t-pw" not in msg and "cannot connect to" in msg, msg
    assert err.value.permanent is permanent, msg
    assert is_transient(err.value) is not permanent


def test_driver_error_codes():
    import pymysql

    assert is_transient(pymysql.err.OperationalError(2013, "Lost connection to server"))
    assert is_transient(pymysql.err.OperationalError(2006, "MySQL server has gone away"))
    assert is_transient(pymysql.err.OperationalError(1213, "Deadlock found"))
    assert is_transient(pymysql.err.OperationalError(2003, "Can't connect ([Errno 111])"))
    assert not is_transient(pymysql.err.OperationalError(1049, "Unknown database 'x'"))
    assert not is_transient(pymysql.err.OperationalError(1045, "Access denied"))
    assert not is_transient(pymysql.err.IntegrityError(1062, "Duplicate entry"))
    assert not is_transient(pymysql.err.ProgrammingError(1146, "Table doesn't exist"))


def test_url_forms_and_wrong_driver(backend):
    from storage import ConfigError

    with pytest.raises(ConfigError, match=r"mysql\+pymysql://") as err:
        open_store("mysql+mysqldb://root:tiger-pw@127.0.0.1:3306/test")
    assert "tiger-pw" not in str(err.value)
    store = open_store(MARIADB_URL.replace("mysql+pymysql", "mariadb+pymysql"))
    try:
        assert store.backend == "mysql"
    finally:
        store.close()


def test_datetime_range_bounds_are_utc(make_store):
    store = make_store()
    store.write_metrics(metrics(["s"], range(3)))
    first, last, n = store.metrics_range()
    assert (first, last, n) == (slot(0), slot(2), 1)
    assert isinstance(first, pd.Timestamp) and first.tzinfo is not None


def test_the_privileges_the_readme_lists_are_enough(make_store):
    """An account with only the grants README.md lists writes, reads the view, scores,
    keeps alerts and applies retention (the metrics table is the user's: SELECT only)."""
    admin = make_store()
    t = admin.tables
    admin.write_metrics(metrics(["a", "b"], range(30)))
    user = "lstmf_priv_" + t.metrics[-6:]
    grants = [f"GRANT SELECT ON test.`{t.metrics}` TO '{user}'@'127.0.0.1'"]
    grants += [
        f"GRANT SELECT, CREATE, INDEX, INSERT, UPDATE, DELETE ON test.`{n}` TO '{user}'@'127.0.0.1'"
        for n in (t.forecasts, t.accuracy, t.accuracy_daily, t.alerts)
    ]
    grants.append(
        f"GRANT SELECT, CREATE, CREATE VIEW ON test.`{t.latest_view}` TO '{user}'@'127.0.0.1'"
    )
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP VIEW `{t.latest_view}`")
        for name in (t.alerts, t.accuracy_daily, t.accuracy, t.forecasts):
            conn.exec_driver_sql(f"DROP TABLE `{name}`")
        conn.exec_driver_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw-x1'")
        for g in grants:
            conn.exec_driver_sql(g)
    store = None
    try:
        url = sa.engine.make_url(MARIADB_URL).set(username=user, password="pw-x1")
        store = open_store(url.render_as_string(hide_password=False), tables=t)
        store.write_forecasts(forecasts(["a", "b"], slot(5)))
        store.write_forecasts(forecasts(["a"], slot(6)), slots=[slot(6)])
        assert store.score_forecasts(slot(29)) == 36
        assert len(store.read_latest_forecasts()) == 25  # a: 13 target times, b: 12
        out = store.apply_retention(1 / 288, 1 / 24, now=slot(40) + pd.Timedelta(days=1))
        assert out["forecasts_deleted"] == 36 and out["accuracy_deleted"] == 36, out
        assert out["days_aggregated"] == 1 and len(store.read_accuracy_daily()) > 0
        # alerts: an upsert (twice: ON DUPLICATE KEY UPDATE), a read, a retention delete
        assert store.update_alerts(slot(40), k=3).written == 0 and store.read_alerts().empty
        alert = Alert("a", "above", *(us(slot(i)) for i in (1, 3, 4, 6)), 4, 2, 1.5, 0.8, 1, "v")
        for status in ("open", "resolved"):
            resolved = us(slot(6)) if status == "resolved" else None
            alert = replace(alert, status=status, resolved_at=resolved)
            store._write_alerts(alerts_table([alert]))
        assert list(store.read_alerts()["status"]) == ["resolved"]
        out = store.apply_retention(1 / 288, 1 / 24, now=slot(40) + pd.Timedelta(days=1))
        assert out["alerts_deleted"] == 1 and store.read_alerts().empty
    finally:
        if store is not None:
            store.close()
        with admin.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


# ----------------------------------------------------------------- fast paths
ODD_IDS = ["tab\there", "new\nline", "cr\rx", "back\\slash", "\\N", "it's", 'q"q', "é日本", "a "]
ODD_VALUES = [0.1 + 0.2, 1e-300, 5e-324, 1.7976931348623157e308, -2.5e-8, 123456.789012345678]


@pytest.fixture
def spies(monkeypatch):
    """Counts of each read and write path taken."""
    import storage.dialect_mysql as dm

    seen = {"arrow": 0, "rows": 0, "load": 0, "insert": 0}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            seen[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(dm, "read_arrow", spy("arrow", dm.read_arrow))
    cls = dm.MysqlDialect
    monkeypatch.setattr(cls, "_fetch_rows", spy("rows", cls._fetch_rows))
    monkeypatch.setattr(cls, "_load", spy("load", cls._load))
    monkeypatch.setattr(cls, "_executemany", spy("insert", cls._executemany))
    return seen


def _odd_frames():
    m = metrics(ODD_IDS, range(3))
    m["value"] = [ODD_VALUES[i % len(ODD_VALUES)] for i in range(len(m))]
    f = forecasts(ODD_IDS, slot(2), horizon=2)
    f["yhat"] = [ODD_VALUES[i % len(ODD_VALUES)] for i in range(len(f))]
    return m, f


def test_odd_text_and_floats_round_trip_exactly_through_load_data_and_arrow(make_store, spies):
    """Tabs, newlines, backslashes, the text ``\\N``, quotes and non-ASCII in ids and the
    extreme doubles: written by LOAD DATA, read back the same through ConnectorX and
    through PyMySQL."""
    store = make_store()
    m, f = _odd_frames()
    store.write_metrics(m)
    store.write_forecasts(f)
    assert spies["load"] == 2 and spies["insert"] == 0
    fast_m = canon(store.read_metrics(), ["series_id", "ts"])
    fast_f = canon(store.read_forecasts(), ["series_id", "issued_at", "step"])
    assert spies["arrow"] == 2 and spies["rows"] == 0
    store.dialect.arrow_url = None  # the PyMySQL reader
    slow_m = canon(store.read_metrics(), ["series_id", "ts"])
    slow_f = canon(store.read_forecasts(), ["series_id", "issued_at", "step"])
    assert spies["rows"] == 2
    pd.testing.assert_frame_equal(fast_m, slow_m)
    pd.testing.assert_frame_equal(fast_f, slow_f)
    assert sorted(set(fast_m["series_id"])) == sorted(ODD_IDS)
    want = canon(m, ["series_id", "ts"])
    assert [float(v).hex() for v in fast_m["value"]] == [float(v).hex() for v in want["value"]]
    assert set(fast_f["yhat"].map(float.hex)) == {v.hex() for v in ODD_VALUES}
    one = store.read_recent(slot(2), 3, series_ids=["\\N", "it's"])  # ids as hex literals
    assert set(one["series_id"]) == {"\\N", "it's"} and len(one) == 6


def test_a_client_without_local_infile_writes_with_insert(make_store, spies):
    """``?local_infile=0`` in the URL: the client never announces the capability; the
    store writes with INSERT ... ON DUPLICATE KEY UPDATE and reads stay on ConnectorX."""
    base = make_store()
    store = open_store(MARIADB_URL + "?local_infile=0", tables=base.tables)
    try:
        m, f = _odd_frames()
        store.write_metrics(m)
        store.write_forecasts(f)
        store.write_forecasts(f)  # an upsert: the same rows again
        assert spies["load"] == 0 and spies["insert"] == 3
        got = canon(store.read_forecasts(), ["series_id", "issued_at", "step"])
        assert len(got) == len(f) and spies["arrow"] == 1
        assert sorted(set(got["series_id"])) == sorted(ODD_IDS)
    finally:
        store.close()


def test_load_data_the_server_refuses_falls_back_to_insert_before_writing(
    make_store, spies, monkeypatch
):
    """A server that refuses LOAD DATA LOCAL (here: the client did not announce it, so
    MariaDB answers 4166, as it does with local_infile OFF): the first chunk's error
    switches the store to INSERT for good and the write succeeds whole."""
    import storage.dialect_mysql as dm

    base = make_store()
    store = open_store(MARIADB_URL + "?local_infile=0", tables=base.tables)
    try:
        monkeypatch.setattr(dm.MysqlDialect, "_can_load", lambda self, conn: True)
        f = forecasts(["a", "b"], slot(3))
        assert store.write_forecasts(f) == len(f)
        assert store.dialect.local_infile is False
        assert spies["load"] == 1 and spies["insert"] == 1
        assert len(store.read_forecasts()) == len(f)
    finally:
        store.close()


def test_a_row_load_data_would_change_is_an_error_and_nothing_is_written(make_store):
    """With LOCAL the server only warns about a value it truncates or a duplicate key and
    goes on; the store raises each such warning and the transaction rolls back."""
    import pyarrow as pa
    import pymysql

    from storage.validate import forecasts_table, now_us

    store = make_store()
    assert store.dialect.local_infile is not False
    store.write_forecasts(forecasts(["a"], slot(3), horizon=2))
    before = store.read_forecasts()

    def arrow(df):
        return forecasts_table(df, store._freq_us, store.max_horizon, store._warn, now_us())

    fresh = arrow(forecasts(["b"], slot(4), horizon=2))
    too_long = fresh.set_column(0, "series_id", pa.array(["x" * 600, "y"]))
    duplicate = pa.concat_tables([fresh, arrow(forecasts(["a"], slot(3), horizon=1))])
    f, codecs = store.forecasts, store._ts_codecs(store.forecasts)
    for bad, code in ((too_long, "1406|1265"), (duplicate, "1062")):
        with pytest.raises(pymysql.err.DataError, match=code), store.engine.begin() as conn:
            store.dialect.bulk_insert(conn, f, bad, codecs, lambda _: None)
    pd.testing.assert_frame_equal(store.read_forecasts(), before)


def test_a_read_connectorx_cannot_run_falls_back_to_pymysql_and_masks_the_password(
    make_store, spies, monkeypatch, caplog
):
    """ConnectorX failing to connect: the read is answered by PyMySQL, later reads skip
    ConnectorX for a while, and the log line carries no password. A server that refuses
    TCP connections is not handed to ConnectorX at all (it would wait ~30 s)."""
    import storage.dialect_mysql as dm

    store = make_store()
    store.write_metrics(metrics(["a", "b"], range(3)))
    store.dialect.arrow_url = "mysql://root:s3cr3t-pw@127.0.0.1:3306/test"

    def refuse(url, sql, fields):
        raise RuntimeError(f"timed out waiting for connection: {url} refused s3cr3t-pw")

    monkeypatch.setattr(dm, "read_arrow", refuse)
    with caplog.at_level("INFO", logger="storage.dialect_mysql"):
        assert len(store.read_metrics()) == 6
        assert len(store.read_recent(slot(2), 2)) == 4
    assert store.dialect._arrow_usable() is False and spies["rows"] == 2
    assert "fall back to PyMySQL" in caplog.text and "s3cr3t-pw" not in caplog.text
    from storage.mysqlfast import reachable

    u = sa.engine.make_url(MARIADB_URL)
    assert reachable(u.host, u.port or 3306) and not reachable("127.0.0.1", 1)


def test_a_timestamp_column_keeps_its_reads_on_pymysql():
    """A user's TIMESTAMP column reads in the session time zone: only PyMySQL's is UTC."""
    from storage.mysqlfast import has_timestamp

    md = sa.MetaData()
    t = sa.Table("m", md, sa.Column("ts", sa.dialects.mysql.TIMESTAMP), sa.Column("v", sa.Float))
    d = sa.Table("d", md, sa.Column("ts", sa.dialects.mysql.DATETIME(fsp=6)))
    assert has_timestamp(sa.select(t.c.v).where(t.c.ts > dt.datetime(2024, 1, 1)))
    assert not has_timestamp(sa.select(d.c.ts).where(d.c.ts > dt.datetime(2024, 1, 1)))


def test_parameters_become_literals_that_no_sql_mode_reads_differently():
    from storage.mysqlfast import literal_sql

    sql = "SELECT a FROM t WHERE s IN (%(s_1)s, %(s_2)s) AND ts >= %(t)s AND n = %(n)s LIKE '%%'"
    out = literal_sql(
        sql, {"s_1": "it's \\", "s_2": "é", "t": dt.datetime(2024, 1, 2, 3, 4, 5, 6), "n": 7}
    )
    assert out == (
        "SELECT a FROM t WHERE s IN (_utf8mb4 X'69742773205c', _utf8mb4 X'c3a9') AND ts >= "
        "'2024-01-02 03:04:05.000006' AND n = 7 LIKE '%'"
    )
    assert literal_sql("x = %(f)s", {"f": 0.1}) == "x = 0.1"
    assert literal_sql("x = %(b)s AND y = %(z)s", {"b": True, "z": None}) == "x = 1 AND y = NULL"
    for bad in (
        float("nan"),
        float("inf"),
        "\ud800",
        b"raw",
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    ):
        assert literal_sql("x = %(v)s", {"v": bad}) is None, bad
    assert literal_sql("x = %(v)s", {}) is None


def test_the_connectorx_url_encodes_credentials_and_skips_options_it_cannot_apply():
    from storage.mysqlfast import arrow_url

    url = sa.engine.make_url("mysql+pymysql://u%40x:p%3A%2Fw@db.local:3307/my%20db")
    assert arrow_url(url, {"connect_timeout": 10}) == "mysql://u%40x:p%3A%2Fw@db.local:3307/my%20db"
    v6 = sa.engine.make_url("mysql+pymysql://root@[::1]/test")
    assert arrow_url(v6, {}) == "mysql://root@[::1]:3306/test"
    assert arrow_url(url.update_query_dict({"ssl_ca": "/ca.pem"}), {}) is None
    assert arrow_url(url.update_query_dict({"charset": "latin1"}), {}) is None
    assert arrow_url(url, {"ssl": {"ca": "/ca.pem"}}) is None
    assert arrow_url(sa.engine.make_url("mysql+pymysql://root@/test"), {}) is None  # a socket


def test_a_table_with_a_trigger_or_another_unique_key_is_upserted_not_replaced(make_store, spies):
    """REPLACE deletes before it inserts: where a trigger would see that delete, or a
    second unique key would make it delete another row, the store upserts with INSERT ...
    ON DUPLICATE KEY UPDATE instead (and the stored rows are the upsert's)."""
    first = make_store()
    first.write_metrics(metrics(["a", "b"], range(3)))
    assert spies["load"] == 1  # no trigger yet: REPLACE
    t = first.tables.metrics
    log = f"{t}_deletes"
    with first.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE `{log}` (n INT NOT NULL)")
        conn.exec_driver_sql(
            f"CREATE TRIGGER `{t}_on_delete` AFTER DELETE ON `{t}` "
            f"FOR EACH ROW INSERT INTO `{log}` VALUES (1)"
        )
    try:
        store = make_store()  # a new store: it asks again which tables REPLACE suits
        spies["load"] = spies["insert"] = 0
        store.write_metrics(metrics(["a", "b"], range(3), seed=4))
        assert spies["insert"] == 1 and spies["load"] == 0
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{log}`").scalar() == 0
        got = canon(store.read_metrics(), ["series_id", "ts"])
        want = canon(metrics(["a", "b"], range(3), seed=4), ["series_id", "ts"])
        assert list(got["value"]) == list(want["value"])
        store.write_forecasts(forecasts(["a"], slot(2)))  # its own table: LOAD DATA
        assert spies["load"] == 1
    finally:
        with first.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS `{t}_on_delete`")
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{log}`")
