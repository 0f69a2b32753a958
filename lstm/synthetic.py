"""Synthetic request metrics that look like production traffic, for the demo, tests and
benchmarks, generated block by block in time so a fleet fits in bounded memory.

Per series: a level between a few and several thousand requests per slot, a daily profile
with its own time-zone phase, quieter weekends, a slow trend, multiplicative AR(1) drift,
Poisson counting noise, occasional bursts (2-8x for 1-5 slots), and an error rate that rises
with load and during bursts. Fully determined by the seed: each slot draws from its own
seeded generator, so the same values come out whatever the block size
(`MetricsGenerator.blocks`), and `forecast demo-data` can write 100,000 series x 30 days an
hour at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from lstm.slots import utc

PHI = 0.98  # AR(1) coefficient of the log drift
MAX_BURST = 5  # slots


class MetricsGenerator:
    """`n_series` synthetic series of `days` days at `freq`, produced in time blocks."""

    def __init__(
        self,
        n_series: int = 20,
        days: float = 14,
        freq: str = "5min",
        seed: int = 0,
        start: str | pd.Timestamp = "2026-01-05",
        level_range: tuple[float, float] = (5.0, 5000.0),
        spikes_per_day: float = 0.7,
        id_prefix: str = "svc",
    ) -> None:
        self.n, self.seed, self.freq = int(n_series), int(seed), pd.Timedelta(freq)
        self.n_slots = int(pd.Timedelta(days=days) / self.freq)
        self.start = utc(start)
        n = self.n
        rng = np.random.default_rng([self.seed, 0])  # the series' fixed traits
        self.level = np.exp(rng.uniform(np.log(level_range[0]), np.log(level_range[1]), n))
        self.phase = rng.uniform(-8, 8, n)  # time zone of the users, hours
        self.amp = rng.uniform(0.3, 0.8, n)
        self.weekend = rng.uniform(0.45, 0.95, n)
        self.slope = rng.uniform(-0.2, 0.3, n)
        self.base_err = rng.uniform(0.001, 0.02, n)
        self.burst_p = spikes_per_day / (pd.Timedelta(days=1) / self.freq)
        width = len(str(n))
        self.ids = np.array([f"{id_prefix}-{i:0{width}d}" for i in range(n)], dtype=object)

    def blocks(self, block_slots: int = 12) -> Iterator[pd.DataFrame]:
        """Long frames `series_id, ts, value, error_rate` of every series, `block_slots`
        slots at a time, oldest first; the drift and bursts carry over between blocks.
        Blocks are aligned to multiples of `block_slots` slots since the epoch (12 slots of
        5 minutes: whole hours), so each block fills whole files of a Parquet store."""
        n = self.n
        drift = np.zeros(n)
        burst_left = np.zeros(n, dtype=np.int64)
        burst_factor = np.ones(n)
        first_slot = self.start.value // int(self.freq.value)
        first = block_slots - first_slot % block_slots
        bounds = [0, *range(first, self.n_slots, block_slots), self.n_slots]
        for t0, t1 in zip(bounds[:-1], bounds[1:], strict=True):
            if t1 <= t0:
                continue
            k = t1 - t0
            ts = pd.DatetimeIndex(self.start + self.freq * np.arange(t0, t1))
            hours = (ts.hour + ts.minute / 60).to_numpy()[:, None]
            dow = ts.day_of_week.to_numpy()[:, None]
            local = (hours + self.phase) % 24
            daily = (
                1
                + self.amp * (np.exp(-((local - 14) ** 2) / 18) * 1.6 - 0.55)
                + 0.1 * self.amp * np.sin(2 * np.pi * local / 12)
            )
            weekly = np.where(dow >= 5, self.weekend, 1.0)
            trend = 1 + self.slope * (np.arange(t0, t1) / max(self.n_slots - 1, 1))[:, None]
            base = self.level * np.maximum(daily, 0.05) * weekly * trend  # [k, n]
            value = np.empty((k, n))
            err = np.empty((k, n))
            for i in range(k):  # over time only; vectorised across series
                rng = np.random.default_rng([self.seed, 1, t0 + i])
                shock = rng.normal(0, 0.03, n)
                if t0 + i > 0:
                    drift = PHI * drift + shock
                new = (rng.random(n) < self.burst_p) & (burst_left == 0)
                lengths, factors = rng.integers(1, MAX_BURST + 1, n), rng.uniform(2, 8, n)
                burst_left = np.where(new, lengths, burst_left)
                burst_factor = np.where(new, factors, burst_factor)
                mult = np.where(burst_left > 0, burst_factor, 1.0)
                burst_left = np.maximum(burst_left - 1, 0)
                mean = base[i] * np.exp(drift) * mult
                value[i] = rng.poisson(mean)
                load = mean / (self.level * 1.5)
                e = self.base_err * (1 + 0.5 * np.maximum(load - 1, 0)) + 0.03 * (mult > 1)
                err[i] = np.clip(e * np.exp(rng.normal(0, 0.2, n)), 0, 1)
            yield pd.DataFrame(
                {
                    "series_id": np.tile(self.ids, k),
                    "ts": np.repeat(ts, n),
                    "value": value.ravel(),
                    "error_rate": err.ravel(),
                }
            )


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
    """Long frame `series_id, ts, value, error_rate` of n_series x (days at freq) rows,
    sorted by series and time (all in memory: `MetricsGenerator` streams)."""
    gen = MetricsGenerator(
        n_series, days, freq, seed, start, level_range, spikes_per_day, id_prefix
    )
    frame = pd.concat(list(gen.blocks(288)), ignore_index=True)
    return frame.sort_values(["series_id", "ts"], kind="stable", ignore_index=True)
