from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from api_helpers import NEWEST, NOW, demo_store, make_registry  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from api import create_app  # noqa: E402
from tasks.common import forget_stores  # noqa: E402
from tasks.settings import get_settings  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A SQLite store (3 forecast series, 1 series with metrics only, 12 origins up to
    12:00, scored) and a registry with two versions, the first champion."""
    root = tmp_path_factory.mktemp("api-demo")
    url = f"sqlite:///{root / 'store.db'}"
    store = demo_store(url)
    store.score_forecasts(NEWEST, 288)
    reg, versions = make_registry(root / "models", n=2)
    yield {"url": url, "store": store, "models": root / "models", "versions": versions}
    store.close()
    forget_stores()


def settings_for(demo, **overrides):
    return get_settings(store_url=demo["url"], models_dir=str(demo["models"]), **overrides)


@pytest.fixture
def client(demo):
    app = create_app(settings_for(demo, api_cache_s=0), now=lambda: NOW)
    with TestClient(app) as c:
        yield c
