"""Frames for the storage tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

FREQ = pd.Timedelta("5min")
T0 = pd.Timestamp("2024-03-04 00:00", tz="UTC")  # a Monday


def slot(i: int) -> pd.Timestamp:
    """The i-th 5-minute slot after T0."""
    return T0 + i * FREQ


def metrics(
    series: Sequence[str],
    slots: Iterable[int],
    *,
    seed: int = 0,
    features: bool = True,
    names: tuple[str, str, str] = ("series_id", "ts", "value"),
) -> pd.DataFrame:
    """Random positive values for every series at every slot (random floats, so that
    round trips test exactness)."""
    slots = list(slots)
    rng = np.random.default_rng(seed)
    n = len(series) * len(slots)
    id_col, ts_col, y_col = names
    df = pd.DataFrame(
        {
            id_col: np.repeat(np.asarray(series, dtype=object), len(slots)),
            ts_col: np.tile(pd.DatetimeIndex([slot(i) for i in slots], tz="UTC"), len(series)),
            y_col: rng.gamma(2.0, 50.0, n),
        }
    )
    if features:
        df["error_rate"] = rng.random(n)
    return df


def forecasts(
    series: Sequence[str],
    issued: pd.Timestamp,
    *,
    horizon: int = 12,
    model_version: str = "v1",
    bump: float = 0.0,
    level: float = 0.8,
) -> pd.DataFrame:
    """A forecast of ``horizon`` steps for each series issued at ``issued``."""
    steps = np.arange(1, horizon + 1)
    n = len(series) * horizon
    base = 100.0 + bump + np.tile(steps, len(series)) + np.repeat(np.arange(len(series)), horizon)
    return pd.DataFrame(
        {
            "series_id": np.repeat(np.asarray(series, dtype=object), horizon),
            "issued_at": issued,
            "target_ts": np.tile(pd.DatetimeIndex([issued + s * FREQ for s in steps]), len(series)),
            "step": np.tile(steps, len(series)),
            "yhat": base,
            "yhat_lower": base - 10.0,
            "yhat_upper": base + 10.0,
            "level": np.full(n, level),
            "model_version": model_version,
        }
    )


def canon(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Sorted by ``keys`` with a fresh index, for comparisons."""
    return df.sort_values(list(keys)).reset_index(drop=True)
