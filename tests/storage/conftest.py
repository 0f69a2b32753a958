"""Fixtures for the storage contract suite: one store per backend with unique table names.

PostgreSQL runs on 127.0.0.1:5432 (``STORAGE_TEST_PG_URL`` may point at another loopback
database). It is required when CI=true (the tests fail if it is unreachable) and skipped
with the reason otherwise. Each test gets tables with a random suffix, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from storage import ColumnMap, Store, TableNames, open_store

PG_URL = os.environ.get("STORAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BACKENDS = [
    "parquet",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
]

_pg_state: dict[str, str | None] = {}


def pg_unavailable() -> str | None:
    """None when PostgreSQL answers, else the reason (checked once per session)."""
    if "reason" not in _pg_state:
        url = sa.engine.make_url(PG_URL)
        if url.host not in LOOPBACK:
            _pg_state["reason"] = f"refusing non-loopback PostgreSQL host {url.host!r}"
        else:
            engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                _pg_state["reason"] = None
            except Exception as exc:  # noqa: BLE001 - any failure means unavailable
                _pg_state["reason"] = (
                    f"PostgreSQL at {url.render_as_string(hide_password=True)} unreachable: "
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


def unique_tables() -> TableNames:
    s = uuid.uuid4().hex[:10]
    return TableNames(f"m_{s}", f"f_{s}", f"a_{s}")


StoreFactory = Callable[..., Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_pg()
    return request.param


@pytest.fixture
def store_url(backend: str, tmp_path) -> str:
    return {
        "parquet": f"parquet://{tmp_path / 'store'}",
        "sqlite": f"sqlite:///{tmp_path / 'store.db'}",
        "postgres": PG_URL,
    }[backend]


@pytest.fixture
def make_store(store_url: str) -> Iterator[StoreFactory]:
    """Open stores on this test's backend; all share this test's unique table names."""
    tables = unique_tables()
    opened: list[Store] = []

    def factory(columns: ColumnMap | None = None, tables_: TableNames | None = None, **kw) -> Store:
        store = open_store(store_url, columns=columns, tables=tables_ or tables, **kw)
        opened.append(store)
        return store

    yield factory
    cleaners = {id(s.tables): s for s in opened if hasattr(s, "drop_all")}
    for store in cleaners.values():
        store.drop_all()
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()
