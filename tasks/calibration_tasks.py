"""The predict run's live recalibration (thin: the rule is in lstm.livecal / lstm.online).

One bounded read of the champion's recent scored forecasts (``Store.read_scores``: its own
version only, since a factor is relative to that version's calibration), then every
interval of the batch stretched per step and level, the factor recorded in
``interval_scale``. The window reaches back just far enough for `calibration_window`
scores per step across the fleet (ceil(window / series) target slots, at most
`calibration_max_slots`), and ends at the slot before the batch's earliest origin: no row
uses an actual that arrived after it was issued, and a repeated run writes the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from prefect import task

from lstm.livecal import LiveCalibration, recalibrate
from tasks.common import STORAGE_TASK, get_store, run_logger
from tasks.settings import Settings


def window_slots(settings: Settings, n_series: int) -> int:
    """Target slots read: enough for `calibration_window` scores per step, bounded."""
    need = math.ceil(settings.calibration_window / max(n_series, 1))
    return max(1, min(need, settings.calibration_max_slots))


@task(name="recalibrate-intervals", **STORAGE_TASK)
def recalibrate_intervals(
    settings: Settings, frame: pd.DataFrame, version: str, slots: Sequence[pd.Timestamp]
) -> tuple[pd.DataFrame, dict]:
    """The batch with live-recalibrated intervals and ``interval_scale``, and the report
    (window, factors, rolling coverage as written per step and level, breaches)."""
    if not settings.online_calibration or frame.empty or not slots:
        return frame.assign(interval_scale=1.0), {"enabled": settings.online_calibration}
    horizon = int(frame["step"].max())
    span = window_slots(settings, int(frame["series_id"].nunique()))
    # targets up to the slot before the earliest origin: every one was scored by an earlier
    # run, so a repeated run reads the same rows and writes the same intervals
    end = min(slots) - pd.Timedelta(settings.freq)
    start = end - pd.Timedelta(settings.freq) * (span - 1)
    scored = get_store(settings, create=False).read_scores(version, start, end)
    cfg = LiveCalibration(
        window=settings.calibration_window,
        min_scores=settings.calibration_min_scores,
        band=settings.coverage_band,
        breach_min=settings.coverage_breach_min,
    )
    out, report = recalibrate(frame, scored, horizon, cfg)
    report = {"enabled": True, "model_version": version, "window_slots": span, **report}
    for level in sorted({b["level"] for b in report["breaches"]}):  # one warning per level
        cells = [b for b in report["breaches"] if b["level"] == level]
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
    return out, report
