"""Fixtures for the storage contract suite: one store per backend with unique table names.

PostgreSQL runs on 127.0.0.1:5432 (``STORAGE_TEST_PG_URL`` may point at another loopback
database), MariaDB on 127.0.0.1:3306 (``STORAGE_TEST_MARIADB_URL``). Each is required when CI=true (the tests fail if it is unreachable) and skipped
with the reason otherwise. Each test gets tables with a random suffix, dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from storage_pg import (  # noqa: F401
    BACKENDS,
    IN_CI,
    LOOPBACK,
    MARIADB_URL,
    PG_URL,
    pg_unavailable,
    require_mariadb,
    require_pg,
    unique_tables,
)

from storage import ColumnMap, Store, TableNames, open_store

StoreFactory = Callable[..., Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_pg()
    if request.param == "mariadb":
        require_mariadb()
    return request.param


@pytest.fixture
def store_url(backend: str, tmp_path) -> str:
    return {
        "parquet": f"parquet://{tmp_path / 'store'}",
        "sqlite": f"sqlite:///{tmp_path / 'store.db'}",
        "postgres": PG_URL,
        "mariadb": MARIADB_URL,
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
