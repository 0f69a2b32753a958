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


def tiny_forecaster(seed: int = 5):
    """A 12-slot window, 12-step model using error_rate and the one-day lag: an untrained
    network with deterministic weights, scalers and intervals (fast; API, registry and
    benchmark tests share it)."""
    import numpy as np

    from lstm import FeatureScaler, FeatureSpec, Forecaster, LSTMConfig, LSTMModel, TargetScaler
    from lstm.intervals import ConformalIntervals

    spec = FeatureSpec(exog=("error_rate",), lags=(288,))
    rng = np.random.default_rng(seed)
    cfg = LSTMConfig(
        input_size=spec.input_size,
        hidden_size=8,
        num_layers=1,
        horizon=spec.horizon,
        future_size=spec.future_size,
        context_size=3,
        decoder_hidden=8,
    )
    model = LSTMModel(cfg)
    for p in model.parameters():
        p.data = p.data.new_tensor(rng.normal(0, 0.3, tuple(p.shape)))
    fs = FeatureScaler().fit(spec.exog, rng.normal([0.01], [0.005], (500, 1)))
    resid = rng.normal(0, 0.2, (2000, spec.horizon))
    intervals = ConformalIntervals.fit(resid, rng.normal(3, 1, 2000), n_bins=2)
    return Forecaster(spec, model.eval(), TargetScaler(), fs, intervals)
