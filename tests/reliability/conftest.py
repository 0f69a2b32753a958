"""Reliability fixtures: a champion trained once per session, and per test a fresh store
(unique tables) holding the metrics, with a copy of the model registry."""

from __future__ import annotations

import pytest
from reliability_helpers import drop_env_tables, make_env, make_metrics, train_small

from lstm import ModelRegistry


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(registry folder, champion version, metrics frame): one small model for all tests."""
    frame = make_metrics()
    root = tmp_path_factory.mktemp("registry-template")
    registry = ModelRegistry(root)
    version = registry.save(train_small(frame, seed=0), metrics={"note": "reliability fixture"})
    registry.promote(version, "fixture")
    return root, version, frame


@pytest.fixture(
    params=["sqlite", "parquet", "postgres", pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def env(request, harness, trained, tmp_path, monkeypatch):
    from tasks.common import forget_stores
    from tasks.model_tasks import clear_model_cache

    e = make_env(request.param, trained, tmp_path, monkeypatch)
    yield e
    if e.backend in ("postgres", "mariadb"):
        drop_env_tables(e)
    forget_stores()
    clear_model_cache()


@pytest.fixture
def sqlite_env(harness, trained, tmp_path, monkeypatch):
    from tasks.common import forget_stores
    from tasks.model_tasks import clear_model_cache

    e = make_env("sqlite", trained, tmp_path, monkeypatch)
    yield e
    forget_stores()
    clear_model_cache()


@pytest.fixture(params=["sqlite", "parquet", "postgres", "mariadb"])
def bare_store(request, tmp_path):
    """A store on each backend with unique table names and no flows (store-level rows);
    PostgreSQL and MariaDB tables are dropped afterwards."""
    import uuid

    from forecast_test_support import require_mariadb, require_postgres

    from storage import TableNames, open_store

    suffix = uuid.uuid4().hex[:8]
    tables = TableNames(metrics=f"m_{suffix}", forecasts=f"f_{suffix}", accuracy=f"a_{suffix}")
    url = {
        "sqlite": lambda: f"sqlite:///{tmp_path / 'store.db'}",
        "parquet": lambda: str(tmp_path / "lake"),
        "postgres": require_postgres,
        "mariadb": require_mariadb,
    }[request.param]()
    store = open_store(url, tables=tables)
    yield store
    if request.param in ("postgres", "mariadb"):
        store.drop_all()
    store.close()
