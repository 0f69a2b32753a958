"""A demo store and registry for the API tests: a tiny model (untrained, deterministic
weights: instant) promoted to champion, and forecast rows written straight to the store
with known values (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from forecast_test_support import tiny_forecaster  # noqa: F401 - bench_api imports it here

from lstm import (
    ModelRegistry,
)
from storage import open_store

FREQ = pd.Timedelta("5min")
#: the tests' clock: 12:07 on a Wednesday; the current slot is 12:05
NOW = pd.Timestamp("2026-12-02T12:07:30Z")
CURRENT = NOW.floor(FREQ)
NEWEST = CURRENT - FREQ  # the last run forecast from 12:00


def make_registry(root: Path, n: int = 1) -> tuple[ModelRegistry, list[str]]:
    """A registry with `n` versions (different weights); the first is champion."""
    reg = ModelRegistry(root)
    versions = [reg.save(tiny_forecaster(seed=5 + i)) for i in range(n)]
    reg.promote(versions[0], "test")
    return reg, versions


def band_value(sid: int, step: int, issued: pd.Timestamp) -> float:
    """A distinct, exactly representable-ish value per series, step and origin."""
    return 100.0 * (sid + 1) + step + (issued - NEWEST) / FREQ * 0.001 + 0.123456789


def forecast_rows(n_series: int, slots: list[pd.Timestamp], version: str = "v1") -> pd.DataFrame:
    rows = []
    for issued in slots:
        for sid in range(n_series):
            for step in range(1, 13):
                y = band_value(sid, step, issued)
                rows.append(
                    {
                        "series_id": f"svc-{sid}",
                        "issued_at": issued,
                        "target_ts": issued + step * FREQ,
                        "step": step,
                        "yhat": y,
                        "yhat_lower": y - 10.5,
                        "yhat_upper": y + 20.25,
                        "level": 0.8,
                        "model_version": version,
                    }
                )
    return pd.DataFrame(rows)


def metric_rows(n_series: int, slots: list[pd.Timestamp]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"series_id": f"svc-{sid}", "ts": ts, "value": 100.0 * (sid + 1), "error_rate": 0.01}
            for ts in slots
            for sid in range(n_series)
        ]
    )


def demo_store(url: str, n_series: int = 3, skipped: int = 1, newest: pd.Timestamp = NEWEST):
    """Metrics for n_series + skipped series (the extra ones get no forecast), forecasts
    of the last 12 origins up to `newest`, written directly."""
    store = open_store(url)
    hist = [newest - k * FREQ for k in range(24)]
    store.write_metrics(metric_rows(n_series + skipped, hist))
    slots = [newest - k * FREQ for k in range(12)]
    store.write_forecasts(forecast_rows(n_series, slots))
    return store


def predict_body(n: int = 12) -> dict:
    ts = pd.Timestamp("2026-12-02T12:00:00Z")
    return {
        "requests_target": [100.0 + 3 * i for i in range(n)],
        "error_rate": [0.01] * n,
        "hour_sin": [0.0] * n,
        "hour_cos": [-1.0] * n,
        "is_weekend": [0] * n,
        "ts": ts.isoformat(),
    }
