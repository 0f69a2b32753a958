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
from one origin to the next); while a step has fewer than `min_scores` scores, the scores
of all steps pooled stand in (small fleets: 12 times as many), and with fewer than that
the factor is 1 (the model's own calibration). The median is never changed, so point accuracy is unchanged.
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


def window_factor(scores: np.ndarray, level: float, min_scores: int = MIN_SCORES) -> float:
    """The factor one window of scores gives (bounded), or 1 (the model's own calibration)
    when it holds fewer than `min_scores`. The one rule the backtest replay and the predict
    run share."""
    if len(scores) < min_scores:
        return 1.0
    return min(max(conformal_factor(scores, level), MIN_FACTOR), MAX_FACTOR)


def _replay(
    times: np.ndarray,
    obs_t: np.ndarray,
    obs_s: np.ndarray,
    level: float,
    window: int,
    min_scores: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(factor, scores available) at each of `times` from the scores observed strictly
    before it (the last `window` of them); one factor per distinct count, not per time."""
    by_time = np.argsort(obs_t, kind="stable")
    obs_t, obs_s = obs_t[by_time], obs_s[by_time]
    avail = np.searchsorted(obs_t, times, side="left")
    counts, which = np.unique(avail, return_inverse=True)
    per_count = np.array(
        [window_factor(obs_s[max(0, n - window) : n], level, min_scores) for n in counts]
    )
    return per_count[which], avail


def online_factors(
    issued_ns: np.ndarray,
    observed_ns: np.ndarray,
    scores: np.ndarray,
    level: float,
    window: int = WINDOW,
    min_scores: int = MIN_SCORES,
    pool_steps: bool = True,
) -> np.ndarray:
    """[B, H] the factor for each forecast and step, from the scores of forecasts of the
    same step observed strictly before it was issued (no future residual can leak in).
    While a step has fewer than `min_scores` such scores, the scores of every step pooled
    give its factor (`pool_steps`; a half-width score is relative to its own step's
    interval, so a common drift shows in all of them), and 1 while those are too few.

    issued_ns [B]: when each forecast was issued; observed_ns [B, H]: when each step's
    actual arrived; scores [B, H]: half-width scores (NaN where the actual is unknown)."""
    b, h = scores.shape
    out = np.ones((b, h), dtype=np.float64)
    order_issue = np.argsort(issued_ns, kind="stable")
    times = issued_ns[order_issue]
    ok = np.isfinite(observed_ns) & ~np.isnan(scores)
    pooled = None
    if pool_steps and h > 1:
        pooled, _ = _replay(times, observed_ns[ok], scores[ok], level, window, min_scores)
    for step in range(h):
        col = ok[:, step]
        f, avail = _replay(
            times, observed_ns[col, step], scores[col, step], level, window, min_scores
        )
        if pooled is not None:
            f = np.where(avail >= min_scores, f, pooled)
        out[order_issue, step] = f
    return out


def live_factors(
    step: np.ndarray,
    scores: np.ndarray,
    horizon: int,
    level: float,
    window: int = WINDOW,
    min_scores: int = MIN_SCORES,
    pool_steps: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """([H] factor, [H] scores used) for the next forecasts from scored history: `step`
    (1-based) and `scores` ordered oldest first (all observed already). The same rule as
    `online_factors` at one origin: each step's last `window` scores, pooled over steps
    while a step has fewer than `min_scores`, 1 while those are too few."""
    step = np.asarray(step, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    keep = ~np.isnan(scores)
    step, scores = step[keep], scores[keep]
    factors = np.ones(horizon, dtype=np.float64)
    used = np.zeros(horizon, dtype=np.int64)
    pooled = window_factor(scores[-window:], level, min_scores) if pool_steps else 1.0
    n_pooled = min(len(scores), window) if pool_steps and pooled != 1.0 else 0
    for h in range(1, horizon + 1):
        mine = scores[step == h][-window:]
        if len(mine) >= min_scores:
            factors[h - 1], used[h - 1] = window_factor(mine, level, min_scores), len(mine)
        elif n_pooled:
            factors[h - 1], used[h - 1] = pooled, n_pooled
    return factors, used


def stretch(median: np.ndarray, lower: np.ndarray, upper: np.ndarray, factor: np.ndarray):
    """The interval scaled around the median by `factor` (lower, upper)."""
    return median - factor * (median - lower), median + factor * (upper - median)
