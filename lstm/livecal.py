"""Live recalibration of a predict run's intervals from the forecasts already scored
(issue 14): the rule of ``lstm.online`` applied at one origin to the whole fleet.

The window of an origin o depends on o alone, never on the run that forecasts it: the
most recent `window` scores of each step and level (order: target_ts, series_id by its
bytes, step) among the forecasts of the version whose target lies in
[o - max_slots, o - freq], i.e. whose actual was observed before o (the backtest's rule).
A run that forecasts several origins at once (catch-up, backfill) takes them in time order
and adds each origin's rows, as written, with their actuals to what the later ones see
(``recalibrate_batch``), so predict, a re-run, catch-up and backfill write the same rows.

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


#: the columns of a scored row (``Store.read_scores``) the rule reads
SCORE_COLUMNS = [
    "target_ts",
    "series_id",
    "step",
    "level",
    "y",
    "yhat",
    "yhat_lower",
    "yhat_upper",
    "interval_scale",
]


def _key(level: float) -> str:
    return f"{round(level * 100, 4):g}"


def score_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Scored rows in the one order every store and run share: target_ts, then series_id
    (code-point order: the bytes of its UTF-8), then step."""
    if len(frame) <= 1:
        return frame.reset_index(drop=True)
    order = np.lexsort(
        (
            frame["step"].to_numpy(),
            pd.factorize(frame["series_id"].to_numpy(dtype=object), sort=True)[0],
            pd.DatetimeIndex(frame["target_ts"]).asi8,
        )
    )
    return frame.iloc[order].reset_index(drop=True)


def newest_per_step(scored: pd.DataFrame, n: int) -> pd.DataFrame:
    """The last `n` rows of each (step, level) of `scored` (in :func:`score_order`)."""
    if len(scored) == 0:
        return scored
    return scored[scored.groupby(["step", "level"], sort=False).cumcount(ascending=False) < n]


def recalibrate_batch(
    frame: pd.DataFrame,
    scored: pd.DataFrame,
    actuals: pd.DataFrame,
    horizon: int,
    cfg: LiveCalibration,
    freq: pd.Timedelta,
    max_slots: int,
) -> tuple[pd.DataFrame, dict]:
    """`frame` (the forecasts of one or more origins, ``issued_at``) recalibrated origin by
    origin, oldest first, each from its own window (module docstring).

    `scored`: the scores of the version from forecasts issued before the batch's first
    origin, targets up to its last origin - freq (at least the newest `cfg.window` per
    step and level before the first origin), in :func:`score_order`. `actuals`
    (series_id, ts, value): the actuals of targets from the first origin to the last - freq,
    which score the batch's own earlier origins for its later ones. Returns the frame
    (rows in its order) with ``interval_scale`` and the report of the last origin (plus the
    number of origins and of scores read)."""
    if frame.empty:
        return recalibrate(frame, scored, horizon, cfg)
    scored = _typed(scored[SCORE_COLUMNS])
    origins = [pd.Timestamp(o) for o in np.sort(frame["issued_at"].unique())]
    # kept: the newest `window` per (step, level) visible so far, in score_order;
    # pending: rows whose target is not visible yet, by target. An older row than a kept
    # window's oldest can never enter a later window (newer rows stay visible), so the
    # state stays bounded however many origins the batch has.
    kept = scored.iloc[:0]
    pending: dict[pd.Timestamp, list[pd.DataFrame]] = {}  # by target_ts
    _hold(pending, scored)
    if len(actuals):
        actuals = actuals.rename(columns={"ts": "target_ts", "value": "y"})[
            ["series_id", "target_ts", "y"]
        ]
        actuals = actuals[actuals["y"].notna()].sort_values("target_ts", kind="stable")
    a_ts = pd.DatetimeIndex(actuals["target_ts"]) if len(actuals) else None
    parts, where, report = [], [], {}
    by_origin = frame.groupby("issued_at", sort=False).indices
    for i, o in enumerate(origins):
        seen = [t for t in pending if t <= o - freq]
        window = pd.concat([kept, *(df for t in seen for df in pending.pop(t))], ignore_index=True)
        window = window[window["target_ts"] >= o - freq * max_slots]
        kept = newest_per_step(score_order(window), cfg.window)
        rows = frame.iloc[by_origin[o]]
        where.append(by_origin[o])
        done, report = recalibrate(rows, kept, horizon, cfg)
        parts.append(done)
        if i + 1 < len(origins) and a_ts is not None:  # as written, scored for later ones
            end = min(o + freq * horizon, origins[-1] - freq)
            lo, hi = a_ts.searchsorted(o + freq, "left"), a_ts.searchsorted(end, "right")
            fresh = done[done["target_ts"] <= end].merge(
                actuals.iloc[lo:hi], on=["series_id", "target_ts"]
            )
            _hold(pending, fresh[SCORE_COLUMNS])
    out = pd.concat(parts)
    out = out.iloc[np.argsort(np.concatenate(where), kind="stable")]
    out.index = frame.index
    report = {**report, "scores_read": len(scored), "origins": len(origins)}
    return out, report


def _hold(pending: dict, rows: pd.DataFrame) -> None:
    """Add scored rows to `pending`, one list of frames per target_ts."""
    if len(rows) == 0:
        return
    for t, part in rows.groupby("target_ts", sort=False):
        pending.setdefault(pd.Timestamp(t), []).append(part)


def _typed(scored: pd.DataFrame) -> pd.DataFrame:
    """Scored rows with numeric columns (an empty frame may come with object ones, which
    would turn every later concat and comparison into Python-object work)."""
    out = scored.astype(
        {c: np.float64 for c in SCORE_COLUMNS if c not in ("target_ts", "series_id", "step")}
        | {"step": np.int64}
    )
    if out["target_ts"].dtype == object:
        out["target_ts"] = pd.to_datetime(out["target_ts"], utc=True)
    return out


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
