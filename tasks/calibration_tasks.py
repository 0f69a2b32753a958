"""The predict run's live recalibration (thin: the rule is in lstm.livecal / lstm.online).

The factors of an origin depend on that origin alone (``lstm.livecal``): the newest
`calibration_window` scores per step and level of the champion's forecasts whose targets
lie in the `calibration_max_slots` slots before it, so predict, a re-run, catch-up and
backfill write the same intervals for it. What is read:

* the newest scores per step and level before the batch's first origin, cut in the
  database: first ``Store.read_newest_scores`` (the slot just before it: at `window`
  series or more it holds them all, read by primary key), else ``Store.read_scores(...,
  per_step=window)`` over the slots that hold a window at the fleet's size
  (ceil(window / series)), and only when a step or level has fewer there (a small fleet,
  a new champion) over all `calibration_max_slots`. The result is the same either way:
  each read is the newest part of the next.
* a batch of several origins (catch-up, backfill) also needs the scores its later origins
  see that were not scored yet when it runs: forecasts issued at other slots (before its
  first origin, or between its origins where catch-up skipped a written slot) whose
  targets fall in the batch (``read_forecasts`` with their actuals), and its own earlier
  origins' rows, as written (``lstm.livecal.recalibrate_batch``).

Scores are written by the run whose slot is their target (predict scores its own slots,
backfill its range), so the scored rows before an origin are the same whichever run reads
them. A single-origin run (the steady state) reads the scores only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from prefect import task
from prefect.events import emit_event

from lstm.livecal import SCORE_COLUMNS, LiveCalibration, recalibrate_batch, score_order
from tasks.common import STORAGE_TASK, get_store, run_logger
from tasks.settings import Settings


def window_slots(settings: Settings, n_series: int) -> int:
    """Target slots the first read spans: enough for `calibration_window` scores per step
    at this fleet size, bounded by `calibration_max_slots` (a read-size hint only)."""
    need = math.ceil(settings.calibration_window / max(n_series, 1))
    return max(1, min(need, settings.calibration_max_slots))


def _complete(scored: pd.DataFrame, horizon: int, levels: Sequence[float], n: int) -> bool:
    """Whether every step and level the batch needs has its `n` newest scores in `scored`."""
    counts = scored.groupby(["step", "level"]).size()
    return all(counts.get((h, lv), 0) >= n for h in range(1, horizon + 1) for lv in levels)


def _unscored(store, version: str, slots: Sequence[pd.Timestamp], freq, horizon):
    """(scores, actuals) of a batch of origins: the forecasts of `version` issued at slots
    outside the batch with targets in [first, last - freq], scored against their actuals
    here (the batch's runs score them after writing), and the actuals of
    [first, last - freq] (for the batch's own origins)."""
    first, last = min(slots), max(slots)
    end = last - freq
    actuals = store.read_metrics(start=first, end=end)[["series_id", "ts", "value"]]
    grid = pd.date_range(first - freq * (horizon - 1), last - 2 * freq, freq=freq)
    others = grid.difference(pd.DatetimeIndex(slots))  # origins before and between
    if len(others) == 0:
        return pd.DataFrame(columns=SCORE_COLUMNS), actuals
    fc = store.read_forecasts(start=first, end=min(end, others.max() + freq * horizon))
    fc = fc[fc["issued_at"].isin(others) & (fc["model_version"] == version)]
    rows = fc.merge(
        actuals.rename(columns={"ts": "target_ts", "value": "y"}), on=["series_id", "target_ts"]
    )
    return rows[rows["y"].notna()][SCORE_COLUMNS], actuals


@task(name="recalibrate-intervals", **STORAGE_TASK)
def recalibrate_intervals(
    settings: Settings,
    frame: pd.DataFrame,
    version: str,
    slots: Sequence[pd.Timestamp],
    announce: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """The batch with live-recalibrated intervals and ``interval_scale``, and the report
    (window, factors, rolling coverage as written per step and level of the newest origin,
    breaches). A coverage breach is logged and emitted as a Prefect event
    (``forecast.coverage.breach``, one per level, at most `alert_max_events`) unless
    `announce` is false (backfill: past coverage is no news)."""
    if not settings.online_calibration or frame.empty or not slots:
        return frame.assign(interval_scale=1.0), {"enabled": settings.online_calibration}
    horizon = int(frame["step"].max())
    freq = pd.Timedelta(settings.freq)
    first, last = min(slots), max(slots)
    n, most = settings.calibration_window, settings.calibration_max_slots
    levels = sorted(float(v) for v in frame["level"].unique())
    store = get_store(settings, create=False)
    end = first - freq  # targets observed before the first origin
    steps = list(range(1, horizon + 1))
    span = 1  # a fleet of `n` series or more: the newest target slot holds the window
    scored = store.read_newest_scores(version, end, steps, levels, n)
    if not _complete(scored, horizon, levels, n):
        span = window_slots(settings, int(frame["series_id"].nunique()))
        scored = store.read_scores(version, end - freq * (span - 1), end, per_step=n)
    if span < most and not _complete(scored, horizon, levels, n):
        span = most
        scored = store.read_scores(version, end - freq * (span - 1), end, per_step=n)
    actuals = pd.DataFrame(columns=["series_id", "ts", "value"])
    if last > first:
        later, actuals = _unscored(store, version, slots, freq, horizon)
        if len(later):
            scored = score_order(pd.concat([scored, later], ignore_index=True))
    cfg = LiveCalibration(
        window=n,
        min_scores=settings.calibration_min_scores,
        band=settings.coverage_band,
        breach_min=settings.coverage_breach_min,
    )
    out, report = recalibrate_batch(frame, scored, actuals, horizon, cfg, freq, most)
    report = {"enabled": True, "model_version": version, "window_slots": span, **report}
    if announce and report["breaches"]:
        _warn_breaches(settings, version, report["breaches"])
        report["events"] = emit_coverage_events(
            version, last, report["breaches"], settings.alert_max_events
        )
    return out, report


def coverage_event(version: str, as_of: pd.Timestamp, level: float, cells: list[dict]) -> dict:
    """The ``emit_event`` arguments of one level's coverage breach: the resource is the
    model version (automations match ``forecast.model.*``), the payload its cells."""
    return {
        "event": "forecast.coverage.breach",
        "resource": {
            "prefect.resource.id": f"forecast.model.{version}",
            "prefect.resource.name": version,
            "forecast.model_version": version,
        },
        "payload": {
            "model_version": version,
            "as_of": as_of.isoformat(),
            "level": level,
            "cells": [
                {"step": b["step"], "n": b["n"], "coverage_pct": b["coverage_pct"]} for b in cells
            ],
        },
    }


def emit_coverage_events(
    version: str, as_of: pd.Timestamp, breaches: list[dict], limit: int
) -> int:
    """One event per level in breach, at most `limit` (FORECAST_ALERT_MAX_EVENTS);
    returns how many were emitted."""
    levels = list(_by_level(breaches).items())[: max(limit, 0)]
    for level, cells in levels:
        emit_event(**coverage_event(version, as_of, level, cells))
    return len(levels)


def _by_level(breaches: list[dict]) -> dict[float, list[dict]]:
    """The breached cells grouped by level, levels in ascending order."""
    out: dict[float, list[dict]] = {}
    for b in sorted(breaches, key=lambda b: b["level"]):
        out.setdefault(b["level"], []).append(b)
    return out


def _warn_breaches(settings: Settings, version: str, breaches: list[dict]) -> None:
    """One warning per level whose rolling coverage left its band (the warning names
    every cell; the event carries them too)."""
    for level, cells in _by_level(breaches).items():
        run_logger().warning(
            "sustained coverage breach: the %.0f%% intervals of %s cover %s of their last "
            "scored forecasts, outside %.0f +- %.0f%% (FORECAST_COVERAGE_BAND): live "
            "recalibration is not keeping up (a sudden change, or a factor at its bound)",
            100 * level,
            version,
            "; ".join(
                f"{'all steps' if b['step'] == 'all' else 'step ' + str(b['step'])} "
                f"{b['coverage_pct']:.1f}% of {b['n']}"
                for b in cells
            ),
            100 * level,
            100 * settings.coverage_band,
        )
