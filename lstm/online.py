"""Online recalibration of the intervals from the forecasts already scored (issue 14).

Split-conformal intervals are fitted once on the validation part; real series drift after
that. A rolling conformal quantile fixes the width from what was observed since: for every
scored forecast, the *half-width score* says how much of its interval's half-width (above or
below the median) the actual used: s = (y - m) / (U - m) when y >= m, else (m - y) / (m - L);
the actual was inside exactly when s <= 1. The factor for a nominal level is the
finite-sample-corrected level-quantile of the last `window` scores of that step whose target
had been observed before the forecast was issued; the interval is then stretched (or shrunk)
around the median by it: L' = m - f (m - L), U' = m + f (U - m). Pooled over series per step
and level, over a window of thousands of scores, the factor moves slowly (no oscillation
from one origin to the next); with fewer than `min_scores` scores it is 1 (the model's own
calibration). The median is never changed, so point accuracy is unchanged.
"""

from __future__ import annotations

import math

import numpy as np

#: scores per (step, level) a factor is computed from, and the fewest it needs
WINDOW = 2000
MIN_SCORES = 200
#: a factor is kept within these bounds (a run of exact hits cannot collapse an interval)
MIN_FACTOR, MAX_FACTOR = 0.05, 20.0


def half_width_scores(y: np.ndarray, median: np.ndarray, lower: np.ndarray, upper: np.ndarray):
    """[...] the share of the interval's half-width on the actual's side that the actual
    used (<= 1: inside). A zero half-width scores 0 when hit exactly, else +inf."""
    y, m, lo, hi = (np.asarray(a, dtype=np.float64) for a in (y, median, lower, upper))
    dist = np.where(y >= m, y - m, m - y)
    half = np.where(y >= m, hi - m, m - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(half > 0, dist / half, np.where(dist == 0, 0.0, np.inf))
    return s


def conformal_factor(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score (split-conformal correction)."""
    n = len(scores)
    k = min(math.ceil((n + 1) * level), n) - 1
    return float(np.partition(scores, k)[k])


def online_factors(
    issued_ns: np.ndarray,
    observed_ns: np.ndarray,
    scores: np.ndarray,
    level: float,
    window: int = WINDOW,
    min_scores: int = MIN_SCORES,
) -> np.ndarray:
    """[B, H] the factor for each forecast and step, from the scores of forecasts of the
    same step observed strictly before it was issued (no future residual can leak in).

    issued_ns [B]: when each forecast was issued; observed_ns [B, H]: when each step's
    actual arrived; scores [B, H]: half-width scores (NaN where the actual is unknown)."""
    b, h = scores.shape
    out = np.ones((b, h), dtype=np.float64)
    order_issue = np.argsort(issued_ns, kind="stable")
    times = issued_ns[order_issue]
    for step in range(h):
        ok = np.isfinite(observed_ns[:, step]) & ~np.isnan(scores[:, step])
        obs_t = observed_ns[ok, step]
        obs_s = scores[ok, step]
        by_time = np.argsort(obs_t, kind="stable")
        obs_t, obs_s = obs_t[by_time], obs_s[by_time]
        # for each forecast: how many scores were observed strictly before its issue time
        avail = np.searchsorted(obs_t, times, side="left")
        # one factor per distinct number of available scores (forecasts issued at the same
        # time share it), not one Python step per forecast
        counts, which = np.unique(avail, return_inverse=True)
        per_count = np.array(
            [
                min(
                    max(conformal_factor(obs_s[max(0, n - window) : n], level), MIN_FACTOR),
                    MAX_FACTOR,
                )
                if n >= min_scores
                else 1.0
                for n in counts
            ]
        )
        factors = per_count[which]
        out[order_issue, step] = factors
    return out


def stretch(median: np.ndarray, lower: np.ndarray, upper: np.ndarray, factor: np.ndarray):
    """The interval scaled around the median by `factor` (lower, upper)."""
    return median - factor * (median - lower), median + factor * (upper - median)
