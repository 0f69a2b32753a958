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


@pytest.fixture(params=["sqlite", "parquet", "postgres"])
def env(request, harness, trained, tmp_path, monkeypatch):
    from tasks.common import forget_stores
    from tasks.model_tasks import clear_model_cache

    e = make_env(request.param, trained, tmp_path, monkeypatch)
    yield e
    if e.backend == "postgres":
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
