"""The seed's data-preparation API, redesigned for many series.

`prepare_data_pipeline` regularises a long frame, splits each series 70/10/20 and returns
lazy batch loaders over vectorised windows; `TimeSeriesDataset` windows arrays (one series,
as the seed did) and `WindowDataset` windows a whole panel, both with batched gathers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from lstm.features import CALENDAR_FEATURES, FeatureScaler, FeatureSpec, TargetScaler, encode
from lstm.panel import ColumnNames, Panel, regularize
from lstm.training import BatchIterator
from lstm.windows import (
    expand_ranges,
    gather,
    protocol_split,
    test_origins,
    train_origins,
    val_origins,
)


class TimeSeriesDataset(Dataset):
    """Sliding windows over one series: X [T, F], y [T] -> (X[i:i+W], y[i+W : i+W+H]).

    The seed's dataset (horizon=1 gives its (window, next value) pairs). Indexing with an
    array gathers a whole batch at once.
    """

    def __init__(self, X, y, sequence_length: int = 12, horizon: int = 1) -> None:
        self.X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        self.y = torch.as_tensor(np.asarray(y, dtype=np.float32))
        if self.X.ndim == 1:
            self.X = self.X[:, None]
        if len(self.X) != len(self.y):
            raise ValueError(f"X has {len(self.X)} rows but y has {len(self.y)}")
        self.sequence_length, self.horizon = sequence_length, horizon

    def __len__(self) -> int:
        return max(len(self.X) - self.sequence_length - self.horizon + 1, 0)

    def __getitem__(self, i):
        if isinstance(i, int | np.integer):
            if not 0 <= i < len(self):
                raise IndexError(i)
            w = self.sequence_length
            y = self.y[i + w : i + w + self.horizon]
            return self.X[i : i + w], (y[0] if self.horizon == 1 else y)
        idx = torch.as_tensor(np.asarray(i, dtype=np.int64))
        win = idx[:, None] + torch.arange(self.sequence_length)  # [B, W]
        tgt = idx[:, None] + self.sequence_length + torch.arange(self.horizon)  # [B, H]
        y = self.y[tgt]
        return self.X[win], (y[:, 0] if self.horizon == 1 else y)

    def __getitems__(self, indices):
        x, y = self[np.asarray(indices)]
        return list(zip(x, y, strict=True))


class WindowDataset(Dataset):
    """Windows of many series (a Panel) ending at `origins`, encoded for the model.

    Items are (x [W, F_in], fut [H, F_fut], y [H]); `batch(idx)` gathers and encodes many
    windows in one vectorised call.
    """

    def __init__(
        self,
        panel: Panel,
        origins: np.ndarray,
        spec: FeatureSpec,
        target_scaler: TargetScaler,
        feature_scaler: FeatureScaler,
    ) -> None:
        self.panel, self.origins, self.spec = panel, np.asarray(origins), spec
        self.target_scaler, self.feature_scaler = target_scaler, feature_scaler
        self.exog_idx = [panel.exog_names.index(c) for c in spec.exog]

    def __len__(self) -> int:
        return len(self.origins)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw = gather(
            self.panel, self.origins[idx], self.spec.window, self.spec.horizon, self.spec.lags
        )
        enc = encode(raw, self.spec, self.target_scaler, self.feature_scaler, self.exog_idx)
        return torch.from_numpy(enc.x), torch.from_numpy(enc.fut), torch.from_numpy(enc.z_target)

    def __getitem__(self, i: int):
        x, fut, y = self.batch(np.array([i]))
        return x[0], fut[0], y[0]

    def __getitems__(self, indices):
        x, fut, y = self.batch(np.asarray(indices))
        return list(zip(x, fut, y, strict=True))

    def loader(self, batch_size: int = 1024, shuffle: bool = False, seed: int = 0, max_items=None):
        return BatchIterator(len(self), self.batch, batch_size, shuffle, seed, max_items)


@dataclass
class Pipeline:
    """What prepare_data_pipeline built, beyond the seed's 5-tuple."""

    panel: Panel
    spec: FeatureSpec
    train: WindowDataset
    val: WindowDataset
    test: WindowDataset


def prepare_data_pipeline(
    df: pd.DataFrame,
    sequence_length: int = 12,
    batch_size: int = 1024,
    train_ratio: float = 0.7,
    val_ratio: float = 0.1,
    *,
    horizon: int = 12,
    freq: str = "5min",
    columns: ColumnNames = ColumnNames(),
    lags: Sequence[int] = (288, 2016),
    seed: int = 0,
    return_pipeline: bool = False,
):
    """Long frame -> (train_loader, val_loader, test_loader, scaler_target, scaler_features).

    Every series is regularised, split chronologically (train_ratio / val_ratio / rest),
    and windowed without a per-window loop; loaders yield (x, fut, y) tensor batches for
    `train`. With return_pipeline=True a `Pipeline` (panel, spec, datasets) is appended.
    """
    panel, _ = regularize(df, freq, columns)
    split = protocol_split(panel, train_ratio, val_ratio)
    spec = FeatureSpec(
        window=sequence_length,
        horizon=horizon,
        freq_ns=panel.freq_ns,
        calendar=CALENDAR_FEATURES,
        exog=tuple(panel.exog_names),
        lags=tuple(lags),
    )
    train_pos = expand_ranges(panel.offsets, np.zeros(panel.n_series, np.int64), split.n_train - 1)
    scaler_features = FeatureScaler().fit(spec.exog, panel.exog[train_pos])
    scaler_target = TargetScaler()
    make = lambda o: WindowDataset(panel, o, spec, scaler_target, scaler_features)  # noqa: E731
    train_ds = make(train_origins(panel, split, sequence_length, horizon))
    val_ds = make(val_origins(panel, split, sequence_length, horizon))
    test_ds = make(test_origins(panel, split, sequence_length, horizon))
    out = (
        train_ds.loader(batch_size, shuffle=True, seed=seed),
        val_ds.loader(batch_size),
        test_ds.loader(batch_size),
        scaler_target,
        scaler_features,
    )
    if return_pipeline:
        return (*out, Pipeline(panel, spec, train_ds, val_ds, test_ds))
    return out


def validate_data_shapes(
    df: pd.DataFrame, expected_features: Sequence[str] | None = None, window_size: int = 12
) -> tuple[bool, str]:
    """(ok, message) for a frame about to be windowed: columns present, no NaN, enough rows
    per series (the seed's checks, per series for a long frame)."""
    expected = list(expected_features) if expected_features is not None else ["value"]
    missing = [f for f in expected if f not in df.columns]
    if missing:
        return False, f"Missing columns: {missing}"
    nulls = [c for c in expected if df[c].isna().any()]
    if nulls:
        return False, f"NaN values found in: {nulls}"
    if "series_id" in df.columns:
        sizes = df.groupby("series_id").size()
        short = sizes[sizes < window_size]
        if len(short):
            return False, (
                f"Not enough data: series {list(short.index[:5])} have "
                f"{list(short.values[:5])} rows < {window_size} (minimum window size)"
            )
    elif len(df) < window_size:
        return False, f"Not enough data: {len(df)} rows < {window_size} (minimum window size)"
    return True, "Validation passed"
