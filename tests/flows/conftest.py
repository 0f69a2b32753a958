"""Flows run for real under one session-scoped Prefect test harness (slow to start)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from flow_helpers import END, make_metrics
from forecast_test_support import require_postgres


@dataclass
class Job:
    backend: str
    url: str
    models_dir: Path
    frame: pd.DataFrame
    retrain: dict
    env: dict

    def store(self):
        from tasks.common import get_store
        from tasks.settings import get_settings

        return get_store(get_settings(store_url=self.url))


@pytest.fixture(scope="module", params=["sqlite", "parquet", "postgres"])
def job(request, harness, tmp_path_factory):
    """Metrics written, a first model trained and promoted: the state after `make demo`."""
    yield from open_job(request.param, tmp_path_factory)


def open_job(backend: str, tmp_path_factory):
    """A Job on `backend` (a generator: the teardown follows the yield)."""
    root = tmp_path_factory.mktemp(f"job-{backend}")
    suffix = uuid.uuid4().hex[:8]
    env = {
        "FORECAST_TRAIN_MAX_SECONDS": "20",
        "FORECAST_HIDDEN_SIZE": "32",
        "FORECAST_NUM_LAYERS": "1",
        "FORECAST_METRICS_TABLE": f"m_{suffix}",
        "FORECAST_FORECASTS_TABLE": f"f_{suffix}",
        "FORECAST_ACCURACY_TABLE": f"a_{suffix}",
    }
    if backend == "sqlite":
        url = f"sqlite:///{root / 'forecast.db'}"
    elif backend == "parquet":
        url = str(root / "lake")
    else:
        url = require_postgres()
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    from flows.retrain import retrain
    from tasks.common import forget_stores, get_store
    from tasks.settings import get_settings

    frame = make_metrics()
    get_store(get_settings(store_url=url)).write_metrics(frame)
    result = retrain(store_url=url, models_dir=str(root / "models"), history_end=END)
    yield Job(backend, url, root / "models", frame, result, env)
    if backend == "postgres":
        store = get_store(get_settings(store_url=url))
        store.drop_all()
    forget_stores()
    mp.undo()
