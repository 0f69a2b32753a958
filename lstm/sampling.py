"""A representative, deterministic sample of series for training a global model, and a
separate held-out sample to judge it on series it never saw.

A global model learns dynamics shared by all series; it needs a sample that covers the
fleet, not every series. Each series is profiled from a few recent windows (`profile_series`:
its level, mean log1p(value), and its noise, the mean absolute change of log1p(value) from
one slot to the next), put in one of level tercile x noise tercile strata (9 strata;
series without a usable profile form a 10th), and ranked inside its stratum by a hash of
(seed, series_id). The training sample takes the first series of every stratum in
proportion to its size (every non-empty stratum gets at least one when the sample has room);
the held-out sample takes the next ones the same way. Same seed, same series -> same
samples, whatever order the series come in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lstm.panel import ColumnNames, to_ns, validate_columns

LEVEL_BINS = 3
NOISE_BINS = 3


@dataclass
class SeriesProfile:
    """Per series: level (mean log1p(value)) and noise (mean |change| of log1p(value) between
    consecutive slots); NaN where the recent windows held too little to say."""

    ids: np.ndarray  # [N] str
    level: np.ndarray  # [N]
    noise: np.ndarray  # [N]

    def __len__(self) -> int:
        return len(self.ids)


def profile_series(recent: pd.DataFrame, freq_ns: int) -> SeriesProfile:
    """Profile every series of a long frame of a few recent windows (e.g. `read_recent`)."""
    cols, _ = validate_columns(recent, ColumnNames(), feature_cols=[], strict=False)
    codes, ids = pd.factorize(cols.ids, sort=True)
    ids = np.asarray(ids, dtype=object).astype(str)
    n = len(ids)
    slot = to_ns(cols.ts) // freq_ns
    y = cols.y
    ok = np.isfinite(y) & (y >= 0)
    codes, slot, ly = codes[ok], slot[ok], np.log1p(y[ok])
    order = np.lexsort((slot, codes))
    codes, slot, ly = codes[order], slot[order], ly[order]
    count = np.bincount(codes, minlength=n)
    level = np.bincount(codes, weights=ly, minlength=n) / np.maximum(count, 1)
    level = np.where(count > 0, level, np.nan)
    step = (np.diff(codes) == 0) & (np.diff(slot) == 1)  # consecutive slots of one series
    d_codes = codes[1:][step]
    d = np.abs(np.diff(ly))[step]
    d_count = np.bincount(d_codes, minlength=n)
    noise = np.bincount(d_codes, weights=d, minlength=n) / np.maximum(d_count, 1)
    noise = np.where(d_count > 0, noise, np.nan)
    return SeriesProfile(ids, level, noise)


@dataclass
class SeriesSample:
    """Which series train the model and which judge it (disjoint)."""

    train: list[str]
    holdout: list[str]
    n_series: int
    seed: int
    strata: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> sizes

    @property
    def complete(self) -> bool:
        """Every series of the store is in the training sample."""
        return len(self.train) == self.n_series

    def as_dict(self) -> dict:
        return {
            "method": "level x noise terciles, hash-ranked within each stratum",
            "seed": self.seed,
            "n_series": self.n_series,
            "train": len(self.train),
            "holdout": len(self.holdout),
            "strata": self.strata,
        }


def series_rank(ids: np.ndarray, seed: int) -> np.ndarray:
    """[N] a stable pseudo-random key per series: blake2b of (seed, id)."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{seed}:{sid}".encode(), digest_size=8).digest(), "big")
            for sid in ids
        ],
        dtype=np.uint64,
    )


def strata_of(profile: SeriesProfile) -> np.ndarray:
    """[N] stratum number: level tercile * 3 + noise tercile, 9 for series without a profile."""
    out = np.full(len(profile), LEVEL_BINS * NOISE_BINS, dtype=np.int64)
    known = np.isfinite(profile.level) & np.isfinite(profile.noise)
    if known.any():
        lv = _bins(profile.level[known], LEVEL_BINS)
        nz = _bins(profile.noise[known], NOISE_BINS)
        out[known] = lv * NOISE_BINS + nz
    return out


def _bins(values: np.ndarray, k: int) -> np.ndarray:
    edges = np.quantile(values, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def stratified_sample(
    profile: SeriesProfile, n_train: int, n_holdout: int, seed: int = 0
) -> SeriesSample:
    """The training sample (at most `n_train` series; all of them when there are fewer)
    and a disjoint held-out sample of at most `n_holdout` of the others."""
    n = len(profile)
    strata = strata_of(profile)
    rank = series_rank(profile.ids, seed)
    order = np.lexsort((profile.ids, rank, strata))  # by stratum, then hash rank
    sizes = np.bincount(strata, minlength=LEVEL_BINS * NOISE_BINS + 1)
    take_train = _allocate(sizes, min(n_train, n))
    take_hold = _allocate(sizes - take_train, min(n_holdout, n - int(take_train.sum())))
    train, hold = [], []
    start = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(len(sizes)):
        members = order[start[k] : start[k + 1]]
        train += profile.ids[members[: take_train[k]]].tolist()
        hold += profile.ids[members[take_train[k] : take_train[k] + take_hold[k]]].tolist()
    names = {k: _stratum_name(k) for k in range(len(sizes)) if sizes[k]}
    table = {
        name: {"series": int(sizes[k]), "train": int(take_train[k]), "holdout": int(take_hold[k])}
        for k, name in names.items()
    }
    return SeriesSample(sorted(train), sorted(hold), n, seed, table)


def _allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Integers <= sizes summing to `total`, proportional to sizes (largest remainder),
    with at least one per non-empty stratum when `total` allows."""
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros_like(sizes)
    total = min(int(total), int(sizes.sum()))
    if total <= 0:
        return out
    nonempty = np.flatnonzero(sizes > 0)
    if total >= len(nonempty):
        out[nonempty] = 1
    left = total - int(out.sum())
    while left > 0:
        room = sizes - out
        share = room / room.sum() * left
        add = np.minimum(np.floor(share).astype(np.int64), room)
        if add.sum() == 0:  # hand out the remainder by the largest fractional share
            frac = np.where(room > 0, share - np.floor(share), -1.0)
            add = np.zeros_like(out)
            add[np.argsort(-frac, kind="stable")[:left]] = 1
            add = np.minimum(add, room)
        out += add
        left = total - int(out.sum())
    return out


def _stratum_name(k: int) -> str:
    if k == LEVEL_BINS * NOISE_BINS:
        return "unprofiled"
    levels, noises = ("low", "mid", "high"), ("smooth", "medium", "noisy")
    return f"{levels[k // NOISE_BINS]}-volume/{noises[k % NOISE_BINS]}"
