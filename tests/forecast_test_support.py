"""Helpers shared by the test folders (a plain module: tests/ is not a package)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = os.environ.get("STORAGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def pg_available() -> bool:
    """PostgreSQL on loopback answers (tests needing it skip otherwise, fail when CI=true)."""
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


def require_postgres() -> str:
    if not pg_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} is required when CI=true but unreachable")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 not reachable (required only when CI=true)")
    return PG_URL


def mariadb_available() -> bool:
    """MariaDB on loopback answers (tests needing it skip otherwise, fail when CI=true)."""
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(MARIADB_URL, connect_args={"connect_timeout": 3})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


def require_mariadb() -> str:
    if not mariadb_available():
        if IN_CI:
            pytest.fail(f"MariaDB at {MARIADB_URL} is required when CI=true but unreachable")
        pytest.skip(
            "MariaDB on 127.0.0.1:3306 not reachable (or pymysql missing); required only "
            "when CI=true"
        )
    return MARIADB_URL
