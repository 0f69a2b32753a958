"""Synthetic request metrics that look like production traffic, for the demo and tests.

Per series: a level between a few and several thousand requests per slot, a daily profile
with its own time-zone phase, quieter weekends, a slow trend, multiplicative AR(1) drift,
Poisson counting noise, occasional bursts (2-8x for a few slots), and an error rate that
rises with load and during bursts. Fully determined by the seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm.slots import utc


def generate_metrics(
    n_series: int = 20,
    days: float = 14,
    freq: str = "5min",
    seed: int = 0,
    start: str | pd.Timestamp = "2026-01-05",
    level_range: tuple[float, float] = (5.0, 5000.0),
    spikes_per_day: float = 0.7,
    id_prefix: str = "svc",
) -> pd.DataFrame:
    """Long frame `series_id, ts, value, error_rate` of n_series x (days at freq) rows."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(freq)
    t = int(pd.Timedelta(days=days) / step)
    start = utc(start)
    ts = pd.date_range(start, periods=t, freq=step)
    hours = (ts.hour + ts.minute / 60).to_numpy()[None, :]  # [1, T]
    dow = ts.day_of_week.to_numpy()[None, :]
    n = n_series

    level = np.exp(rng.uniform(np.log(level_range[0]), np.log(level_range[1]), (n, 1)))
    phase = rng.uniform(-8, 8, (n, 1))  # time zone of the users, hours
    amp = rng.uniform(0.3, 0.8, (n, 1))
    local = (hours + phase) % 24
    daily = (
        1
        + amp * (np.exp(-((local - 14) ** 2) / 18) * 1.6 - 0.55)
        + 0.1 * amp * np.sin(2 * np.pi * local / 12)
    )
    weekend = rng.uniform(0.45, 0.95, (n, 1))
    weekly = np.where(dow >= 5, weekend, 1.0)
    trend = 1 + rng.uniform(-0.2, 0.3, (n, 1)) * np.linspace(0, 1, t)[None, :]

    # multiplicative AR(1) drift in log space
    phi = 0.98
    shocks = rng.normal(0, 0.03, (n, t))
    drift = np.zeros((n, t))
    for i in range(1, t):  # over time only: O(T) vectorised across series
        drift[:, i] = phi * drift[:, i - 1] + shocks[:, i]

    mean = level * np.maximum(daily, 0.05) * weekly * trend * np.exp(drift)

    bursts = np.ones((n, t))
    n_bursts = rng.poisson(spikes_per_day * days, n)
    for i in range(n):
        for s in rng.integers(0, t, n_bursts[i]):
            length = int(rng.integers(1, 6))
            bursts[i, s : s + length] *= rng.uniform(2, 8)
    mean = mean * bursts
    value = rng.poisson(mean).astype(np.float64)

    base_err = rng.uniform(0.001, 0.02, (n, 1))
    load = mean / (level * 1.5)
    error_rate = base_err * (1 + 0.5 * np.maximum(load - 1, 0)) + 0.03 * (bursts > 1)
    error_rate = np.clip(error_rate * np.exp(rng.normal(0, 0.2, (n, t))), 0, 1)

    width = len(str(n_series))
    ids = np.array([f"{id_prefix}-{i:0{width}d}" for i in range(n)])
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, t),
            "ts": np.tile(ts.to_numpy(), n),
            "value": value.ravel(),
            "error_rate": error_rate.ravel(),
        }
    ).assign(ts=lambda d: pd.to_datetime(d["ts"], utc=True))
