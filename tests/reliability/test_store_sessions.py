"""Row 22 of the reliability table: PostgreSQL session defaults of the database (DateStyle,
extra_float_digits, TimeZone), and MariaDB session settings (time_zone, sql_mode), do not
change what the store reads. Row 25: permanent connection errors are not retried."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from forecast_test_support import require_mariadb, require_postgres
from reliability_helpers import END, forecast_frame, metrics_frame

from storage import open_store

DB = "lstmf_rel_settings"
PRECISE = 3907.1234567890123  # more digits than extra_float_digits = -2 prints


@pytest.fixture
def odd_settings_db():
    """A database whose defaults are hostile: DMY SQL dates, rounded floats, a non-UTC zone."""
    base = sa.engine.make_url(require_postgres())
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {DB}")
        conn.exec_driver_sql(f"ALTER DATABASE {DB} SET datestyle = 'SQL, DMY'")
        conn.exec_driver_sql(f"ALTER DATABASE {DB} SET extra_float_digits = -2")
        conn.exec_driver_sql(f"ALTER DATABASE {DB} SET timezone = 'Asia/Kolkata'")
    try:
        yield base.set(database=DB).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.dispose()


def test_r22_database_session_defaults_do_not_change_what_is_read(odd_settings_db):
    probe = sa.create_engine(odd_settings_db)
    with probe.connect() as conn:  # the defaults are really in force for a plain session
        assert conn.exec_driver_sql("SHOW datestyle").scalar() == "SQL, DMY"
        shown = conn.exec_driver_sql(f"SELECT {PRECISE!r}::float8::text").scalar()
        assert float(shown) != PRECISE, shown  # 13 significant digits: rounded
    probe.dispose()
    store = open_store(odd_settings_db)
    try:
        metrics = metrics_frame(["a", "b"], value=3907.123)
        metrics.loc[metrics.index[-1], "value"] = PRECISE
        store.write_metrics(metrics)
        back = store.read_metrics()
        assert back["value"].tolist() == metrics["value"].tolist()  # exact, not rounded
        assert back["ts"].tolist() == metrics["ts"].tolist()
        fc = forecast_frame(["a", "b"], END, yhat=PRECISE)
        store.write_forecasts(fc)
        got = store.read_forecasts(issued_at=END)
        assert len(got) == len(fc)
        assert got["yhat"].tolist() == fc["yhat"].tolist()  # exact, not rounded
        assert got["target_ts"].tolist() == fc["target_ts"].tolist()
        latest = store.read_latest_forecasts()
        assert len(latest) == len(fc) and latest["yhat_upper"].tolist() == (
            fc["yhat_upper"].tolist()
        )
        assert store.metrics_range() == (metrics.ts.min(), pd.Timestamp(END), 2)
    finally:
        store.close()


def test_r22_mariadb_session_settings_do_not_change_what_is_read():
    """A session whose time zone is +05:30 and whose sql_mode quotes with ANSI_QUOTES and
    takes backslashes literally (as a server's or user's defaults may say): the store pins
    its own settings on every connection."""
    hostile = "SET time_zone = '+05:30', sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'"
    store = open_store(require_mariadb(), engine_kwargs={"connect_args": {"init_command": hostile}})
    try:
        metrics = metrics_frame(["a", "b\\'c"], value=3907.123)
        metrics.loc[metrics.index[-1], "value"] = PRECISE
        store.write_metrics(metrics)
        back = store.read_metrics().sort_values(["series_id", "ts"], ignore_index=True)
        want = metrics.sort_values(["series_id", "ts"], ignore_index=True)
        assert back["series_id"].tolist() == want["series_id"].tolist()
        assert back["value"].tolist() == want["value"].tolist()  # exact, not rounded
        assert back["ts"].tolist() == want["ts"].tolist()
        fc = forecast_frame(["a"], END, yhat=PRECISE)
        store.write_forecasts(fc)
        got = store.read_latest_forecasts()
        assert got["yhat"].tolist() == fc["yhat"].tolist()
        assert got["target_ts"].tolist() == fc["target_ts"].tolist()
    finally:
        store.drop_all()
        store.close()


@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
@pytest.mark.parametrize(
    "case, permanent",
    [
        ("no such database", True),
        ("no such role", True),
        ("unknown host", True),
        ("refused", False),
    ],
)
def test_r25_permanent_connection_errors_are_not_retried(
    harness, tmp_path, monkeypatch, case, permanent, backend
):
    """Row 25: a database or role that does not exist, or a host name that does not
    resolve, fails the run on its first try; a refused connection (a server restarting) is
    retried on the backoff schedule."""
    from prefect import get_client

    from flows.predict import predict
    from storage.errors import is_transient
    from tasks.common import forget_stores
    from tasks.settings import get_settings

    if backend == "postgres":
        require_postgres()
        url = {
            "no such database": "postgresql+psycopg://postgres@127.0.0.1:5432/lstmf_no_such_db",
            "no such role": "postgresql+psycopg://lstmf_no_such_role@127.0.0.1:5432/test",
            "unknown host": "postgresql+psycopg://postgres@no-such-host.invalid:5432/test",
            "refused": "postgresql+psycopg://postgres@127.0.0.1:1/test",
        }[case]
    else:
        require_mariadb()
        url = {
            "no such database": "mysql+pymysql://root@127.0.0.1:3306/lstmf_no_such_db",
            "no such role": "mysql+pymysql://lstmf_no_such_role@127.0.0.1:3306/test",
            "unknown host": "mysql+pymysql://root@no-such-host.invalid:3306/test",
            "refused": "mysql+pymysql://root@127.0.0.1:1/test",
        }[case]
    with pytest.raises(Exception) as info:
        open_store(url)
    assert is_transient(info.value) is (not permanent), repr(info.value)
    if permanent:
        assert "will not succeed on a retry" in str(info.value)
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(tmp_path / "models"))
    state = predict(as_of=END.to_pydatetime(), store_url=url, return_state=True)
    forget_stores()
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    mine = [r for r in runs if r.flow_run_id == state.state_details.flow_run_id]
    plan = [r for r in mine if r.name.startswith("plan-slots")]
    assert len(plan) == 1
    expected = 1 if permanent else 1 + get_settings().storage_retries
    assert plan[0].run_count == expected, (case, plan[0].run_count)
