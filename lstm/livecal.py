"""Live recalibration of a predict run's intervals from the forecasts already scored
(issue 14): the rule of ``lstm.online`` applied at one origin to the whole fleet.

The scored rows (one model version, a bounded window of recent targets, oldest first) hold
the intervals as they were written, possibly stretched already by the factor recorded in
``interval_scale``; their half-width scores are taken back to the model's own interval
(score x interval_scale) so each run's factor is relative to the model's calibration, not
to the previous run's: factors do not compound and a run does not react to its own
output. Per step and level, over the fleet (the last `window` scores; pooled over steps
while a step has fewer than `min_scores`; factor 1 below that). The same rows give the
rolling coverage of the intervals as written, and a breach when it leaves
``level +- band`` over at least `breach_min` scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm.online import MIN_SCORES, WINDOW, half_width_scores, live_factors, stretch


@dataclass(frozen=True)
class LiveCalibration:
    """How a run recalibrates: window and minimum in scores per step and level, and the
    coverage band (a fraction) that counts as a breach over at least `breach_min` scores."""

    window: int = WINDOW
    min_scores: int = MIN_SCORES
    band: float = 0.05
    breach_min: int = 1000


def _key(level: float) -> str:
    return f"{round(level * 100, 4):g}"


def recalibrate(
    frame: pd.DataFrame, scored: pd.DataFrame, horizon: int, cfg: LiveCalibration
) -> tuple[pd.DataFrame, dict]:
    """`frame` (a forecast batch: step, level, yhat, yhat_lower, yhat_upper) with its
    intervals stretched around yhat by each (step, level)'s factor from `scored` (rows of
    ``Store.read_scores``, oldest first) and the factor in ``interval_scale``; and a report:
    per level the factor, scores used and coverage as written per step, the coverage over
    all steps, and the breaches."""
    report: dict = {"scores_read": len(scored), "levels": {}, "breaches": []}
    if frame.empty:
        return frame.assign(interval_scale=1.0), report
    s_level = scored["level"].to_numpy(dtype=np.float64)
    f_level = frame["level"].to_numpy(dtype=np.float64)
    f_step = np.clip(frame["step"].to_numpy(dtype=np.int64), 1, horizon)
    scale = np.ones(len(frame))
    for lv in np.unique(f_level):
        rows = scored[np.isclose(s_level, lv)]
        y = rows["y"].to_numpy(dtype=np.float64)
        m = rows["yhat"].to_numpy(dtype=np.float64)
        lo = rows["yhat_lower"].to_numpy(dtype=np.float64)
        hi = rows["yhat_upper"].to_numpy(dtype=np.float64)
        step = rows["step"].to_numpy(dtype=np.int64)
        # back to the model's own interval: written half-width = scale x the model's
        s = half_width_scores(y, m, lo, hi) * rows["interval_scale"].to_numpy(dtype=np.float64)
        factors, used = live_factors(step, s, horizon, float(lv), cfg.window, cfg.min_scores)
        sel = np.isclose(f_level, lv)
        scale[sel] = factors[f_step[sel] - 1]
        key = _key(float(lv))
        report["levels"][key] = _coverage(y, lo, hi, step, horizon, factors, used)
        report["breaches"] += _breaches(report["levels"][key], float(lv), cfg)
    lower, upper = stretch(
        frame["yhat"].to_numpy(),
        frame["yhat_lower"].to_numpy(),
        frame["yhat_upper"].to_numpy(),
        scale,
    )
    out = frame.assign(yhat_lower=lower, yhat_upper=upper, interval_scale=scale)
    return out, report


def _coverage(y, lo, hi, step, horizon, factors, used) -> dict:
    """Factor and scores used per step, and the coverage (in %) of the intervals as written
    over the window read, per step and over all steps."""
    inside = (y >= lo) & (y <= hi)
    n_step = np.bincount(step.clip(0, horizon), minlength=horizon + 1)[1:]
    hits = np.bincount(step.clip(0, horizon), weights=inside, minlength=horizon + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.where(n_step > 0, 100.0 * hits / np.maximum(n_step, 1), np.nan)
    return {
        "factor_by_step": [round(float(v), 4) for v in factors],
        "scores_by_step": [int(v) for v in used],
        "n_by_step": [int(v) for v in n_step],
        "coverage_by_step": [None if np.isnan(v) else round(float(v), 2) for v in cov],
        "n": int(len(y)),
        "coverage_pct": round(100.0 * float(inside.mean()), 2) if len(y) else None,
    }


def _breaches(levels: dict, level: float, cfg: LiveCalibration) -> list[dict]:
    """The coverage of every step, and of all steps together, that left level +- band over
    at least `breach_min` scored forecasts."""
    nominal, band = 100.0 * level, 100.0 * cfg.band
    found = []
    cells = [("all", levels["n"], levels["coverage_pct"])]
    cells += [
        (i + 1, n, c)
        for i, (n, c) in enumerate(
            zip(levels["n_by_step"], levels["coverage_by_step"], strict=True)
        )
    ]
    for step, n, cov in cells:
        if cov is not None and n >= cfg.breach_min and abs(cov - nominal) > band:
            found.append({"level": level, "step": step, "n": n, "coverage_pct": cov})
    return found
