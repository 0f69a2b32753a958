"""PostgreSQL and MariaDB availability and unique table names for the storage tests (a plain module,
importable from test files; conftest modules are not, with several test folders)."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from storage import TableNames

PG_URL = os.environ.get("STORAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("STORAGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BACKENDS = [
    "parquet",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]

_pg_state: dict[str, str | None] = {}
_mariadb_state: dict[str, str | None] = {}


def pg_unavailable() -> str | None:
    """None when PostgreSQL answers, else the reason (checked once per session)."""
    return _unavailable(PG_URL, "PostgreSQL", _pg_state)


def mariadb_unavailable() -> str | None:
    """None when MariaDB/MySQL answers, else the reason (checked once per session)."""
    return _unavailable(MARIADB_URL, "MariaDB", _mariadb_state)


def _unavailable(raw_url: str, what: str, _pg_state: dict[str, str | None]) -> str | None:
    if "reason" not in _pg_state:
        url = sa.engine.make_url(raw_url)
        if url.host not in LOOPBACK:
            _pg_state["reason"] = f"refusing non-loopback {what} host {url.host!r}"
        else:
            engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                _pg_state["reason"] = None
            except Exception as exc:  # noqa: BLE001 - any failure means unavailable
                _pg_state["reason"] = (
                    f"{what} at {url.render_as_string(hide_password=True)} unreachable: "
                    f"{type(exc).__name__}"
                )
            finally:
                engine.dispose()
    return _pg_state["reason"]


def require_pg() -> None:
    """Skip (or fail under CI=true) when PostgreSQL is unavailable."""
    reason = pg_unavailable()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)


def require_mariadb() -> None:
    """Skip (or fail under CI=true) when MariaDB is unavailable."""
    reason = mariadb_unavailable()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true requires MariaDB: {reason}")
        pytest.skip(reason)


def unique_tables() -> TableNames:
    s = uuid.uuid4().hex[:10]
    return TableNames(f"m_{s}", f"f_{s}", f"a_{s}")
