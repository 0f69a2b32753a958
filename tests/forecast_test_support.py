"""Helpers shared by the test folders (a plain module: tests/ is not a package)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = os.environ.get("STORAGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _answers(url: str) -> bool:
    """A database server on loopback accepts a connection within 3 s."""
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


def _require(name: str, url: str, where: str) -> str:
    """`url` when the server answers; else fail when CI=true, skip with the reason elsewhere."""
    if not _answers(url):
        if IN_CI:
            pytest.fail(f"{name} at {url} is required when CI=true but unreachable")
        pytest.skip(f"{name} on {where} not reachable (required only when CI=true)")
    return url


def pg_available() -> bool:
    """PostgreSQL on loopback answers (tests needing it skip otherwise, fail when CI=true)."""
    return _answers(PG_URL)


def require_postgres() -> str:
    return _require("PostgreSQL", PG_URL, "127.0.0.1:5432")


def require_mariadb() -> str:
    return _require("MariaDB", MARIADB_URL, "127.0.0.1:3306 (or pymysql missing)")
