"""Prediction intervals by split conformal calibration, per horizon step and level bin.

Residuals are taken in the model's scaled (log) space on the validation windows, which the
model never trained on. For each nominal level, step and bin of the window's level (loc),
the interval is [z + q_lo, z + q_hi] with q the finite-sample-corrected empirical quantiles
of the signed residuals; mapping back through the monotone inverse scaling keeps the
coverage and gives asymmetric intervals that widen with the level of the series.
Binning by level (a Mondrian split) keeps low-count series, whose log residuals are wider,
from under-covering while busy series over-cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def _conformal_quantile(r: np.ndarray, q: float, lower: bool) -> float:
    """Empirical quantile with the split-conformal (n + 1) correction."""
    n = len(r)
    rs = np.sort(r)
    if lower:
        k = int(np.floor(q * (n + 1))) - 1
        return float(rs[max(k, 0)])
    k = int(np.ceil(q * (n + 1))) - 1
    return float(rs[min(k, n - 1)])


@dataclass
class ConformalIntervals:
    """Calibrated offsets: lo/hi[level_index, bin, step] in scaled units."""

    levels: tuple[float, ...] = (0.8, 0.95)
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # inner bin edges on loc
    lo: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 0)))
    hi: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 0)))
    n_calibration: int = 0

    @classmethod
    def fit(
        cls,
        residuals: np.ndarray,
        loc: np.ndarray,
        levels: Sequence[float] = (0.8, 0.95),
        n_bins: int = 4,
        min_per_bin: int = 200,
    ) -> ConformalIntervals:
        """residuals [B, H] = z_true - z_pred on calibration windows, loc [B] their levels."""
        residuals = np.asarray(residuals, dtype=np.float64)
        b, h = residuals.shape
        if b == 0:
            raise ValueError("cannot calibrate intervals on zero validation windows")
        n_bins = max(1, min(n_bins, b // max(min_per_bin, 1)))
        edges = np.quantile(loc, np.linspace(0, 1, n_bins + 1)[1:-1]) if n_bins > 1 else np.zeros(0)
        edges = np.unique(edges)
        bins = np.searchsorted(edges, loc, side="right")
        nb = len(edges) + 1
        lo = np.zeros((len(levels), nb, h))
        hi = np.zeros((len(levels), nb, h))
        for li, level in enumerate(levels):
            alpha = 1.0 - level
            for k in range(nb):
                r = residuals[bins == k]
                if len(r) < min_per_bin // 2:
                    r = residuals  # too few in this bin: fall back to all windows
                for step in range(h):
                    lo[li, k, step] = _conformal_quantile(r[:, step], alpha / 2, lower=True)
                    hi[li, k, step] = _conformal_quantile(r[:, step], 1 - alpha / 2, lower=False)
        return cls(tuple(float(v) for v in levels), edges, lo, hi, b)

    def bounds(
        self, z_pred: np.ndarray, loc: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scaled lower and upper bounds [B, H] at `level` (one of self.levels)."""
        li = self._level_index(level)
        bins = np.searchsorted(self.edges, loc, side="right")
        return z_pred + self.lo[li, bins], z_pred + self.hi[li, bins]

    def _level_index(self, level: float) -> int:
        for i, v in enumerate(self.levels):
            if abs(v - level) < 1e-9:
                return i
        raise ValueError(f"no intervals calibrated at level {level}; available: {self.levels}")

    def to_dict(self) -> dict:
        return {
            "method": "split_conformal_by_level_bin",
            "levels": list(self.levels),
            "edges": self.edges.tolist(),
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "n_calibration": self.n_calibration,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ConformalIntervals:
        return cls(
            tuple(float(v) for v in d["levels"]),
            np.asarray(d["edges"], dtype=np.float64),
            np.asarray(d["lo"], dtype=np.float64),
            np.asarray(d["hi"], dtype=np.float64),
            int(d["n_calibration"]),
        )


def level_key(level: float) -> str:
    """0.8 -> '80' (the JSON keys of the backtest report)."""
    pct = level * 100
    return str(int(round(pct))) if abs(pct - round(pct)) < 1e-9 else f"{pct:g}"
