"""Vectorised windowing of N series at once: splits, forecast origins, raw window gathers.

A window is identified by its *origin*: the flat panel position of the last observed slot.
Everything here is integer arithmetic on whole arrays; there is no per-window Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lstm.panel import Panel


@dataclass(frozen=True)
class Split:
    """Per-series chronological split, as lengths: train, validation, test (protocol step 2)."""

    n_train: np.ndarray  # [N]
    n_val: np.ndarray  # [N]
    lengths: np.ndarray  # [N]

    @property
    def test_start(self) -> np.ndarray:
        return self.n_train + self.n_val


def protocol_split(panel: Panel, train: float = 0.7, val: float = 0.1) -> Split:
    """First `train` of each series for fitting, next `val` for early stopping/calibration."""
    lengths = panel.lengths
    n_train = np.floor(lengths * train).astype(np.int64)
    n_val = np.floor(lengths * val).astype(np.int64)
    return Split(n_train, n_val, lengths)


def expand_ranges(
    offsets: np.ndarray, lo: np.ndarray, hi: np.ndarray, stride: int = 1
) -> np.ndarray:
    """Flat positions offsets[i] + r for r in range(lo[i], hi[i] + 1, stride), all series.

    Empty ranges (hi < lo) contribute nothing. Returns int64 positions in series order.
    """
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    counts = np.where(hi >= lo, (hi - lo) // stride + 1, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.asarray(offsets[: len(lo)], dtype=np.int64) + lo, counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts + within * stride


def train_origins(panel: Panel, split: Split, window: int, horizon: int) -> np.ndarray:
    """Origins whose inputs and all H targets lie inside the train part."""
    return expand_ranges(
        panel.offsets, np.full(panel.n_series, window - 1), split.n_train - 1 - horizon
    )


def val_origins(panel: Panel, split: Split, window: int, horizon: int) -> np.ndarray:
    """Origins whose H targets lie inside the validation part (inputs may reach into train)."""
    lo = np.maximum(split.n_train - 1, window - 1)
    return expand_ranges(panel.offsets, lo, split.n_train + split.n_val - 1 - horizon)


def test_origins(
    panel: Panel, split: Split, window: int, horizon: int, stride: int = 12
) -> np.ndarray:
    """Rolling origins every `stride` slots whose targets tile the test part (protocol step 3)."""
    lo = np.maximum(split.test_start - 1, window - 1)
    return expand_ranges(panel.offsets, lo, split.lengths - 1 - horizon, stride)


@dataclass
class RawWindows:
    """Unscaled model inputs for B windows: what `features.encode` turns into tensors."""

    y: np.ndarray  # [B, W] target values of the input window
    exog: np.ndarray  # [B, W, E] exogenous features of the input window
    origin_slot: np.ndarray  # [B] slot number of the last observed value
    lags: (
        np.ndarray
    )  # [B, W+H, L] value `lag` slots before each window and target step (NaN: unknown)
    series: np.ndarray  # [B] series number in the panel
    target: np.ndarray | None = None  # [B, H] actual future values (NaN past the series end)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def target_lags(self) -> np.ndarray:
        """[B, H, L]: the lagged values of the target steps (e.g. seasonal-naive forecasts)."""
        return self.lags[:, self.y.shape[1] :, :]

    def take(self, idx: np.ndarray | slice) -> RawWindows:
        return RawWindows(
            self.y[idx],
            self.exog[idx],
            self.origin_slot[idx],
            self.lags[idx],
            self.series[idx],
            None if self.target is None else self.target[idx],
        )


def gather(
    panel: Panel,
    origins: np.ndarray,
    window: int,
    horizon: int,
    lags: Sequence[int] = (),
    with_target: bool = True,
) -> RawWindows:
    """Gather inputs (and targets) of the windows ending at `origins`, in one fancy-index.

    Lag values are read for every window step and every target step (the slot `lag` before
    it); one before the series start is NaN and is imputed later by the encoder.
    """
    origins = np.asarray(origins, dtype=np.int64)
    series = np.searchsorted(panel.offsets, origins, side="right") - 1
    start = panel.offsets[series]
    end = panel.offsets[series + 1]
    if np.any(origins - start < window - 1):
        raise ValueError("an origin has fewer than `window` observed slots before it")
    win = origins[:, None] + np.arange(-window + 1, 1)  # [B, W]
    steps = origins[:, None] + np.arange(1, horizon + 1)  # [B, H]
    lag_arr = np.asarray(lags, dtype=np.int64)
    both = origins[:, None] + np.arange(-window + 1, horizon + 1)  # [B, W+H]
    lag_pos = both[:, :, None] - lag_arr[None, None, :]  # [B, W+H, L]
    ok = lag_pos >= start[:, None, None]
    lag_vals = np.where(ok, panel.y[np.where(ok, lag_pos, 0)], np.nan)
    target = None
    if with_target:
        inside = steps < end[:, None]
        target = np.where(inside, panel.y[np.where(inside, steps, 0)], np.nan)
    return RawWindows(
        y=panel.y[win],
        exog=panel.exog[win],
        origin_slot=panel.slot[origins],
        lags=lag_vals,
        series=series,
        target=target,
    )
