"""Breach alerts from scored forecasts: pure functions, no store (``storage.alerts`` runs them).

A **breach** is an actual outside its forecast's interval: ``above`` when ``y > yhat_upper``,
``below`` when ``y < yhat_lower`` (the complement of the accuracy table's ``covered``). Its
**excess** is how far outside, in interval widths: ``(y - yhat_upper) / width`` above,
``(yhat_lower - y) / width`` below (0 inside).

An **alert** is judged on one forecast step (each target slot has exactly one forecast of
that step; the job judges the one made 12 slots before, README "Breach alerts"), per series
and direction, as a small state machine over the scored target slots in time order:

* it **opens** at the ``k``-th consecutive slot breached in the same direction by more than
  ``min_excess`` widths (consecutive on the slot grid: a slot without a scored forecast, a
  *gap*, restarts the count); its ``started_at`` is the first of those ``k`` slots,
  ``opened_at`` the ``k``-th;
* while open, every further breach in its direction (of any excess) adds to
  ``slots_breached``, moves ``last_breach_at`` and may raise ``max_excess``; a gap neither
  continues nor ends it;
* it is **resolved** at the ``m``-th consecutive scored slot *not* breached in its direction
  (inside the band, or outside on the other side; a gap restarts that count too), and
  ``resolved_at`` is that slot. The other direction is judged on its own;
* a forecast **issued** while an alert of its series was open, or up to ``quiet`` slots
  after it was resolved, opens nothing (either direction): it was computed from the
  anomaly's values, and forecasts made during a surge see the return to normal as a drop.

Idempotence (a re-run or a re-scored slot must not open a second alert): an open alert only
folds in slots after its ``checked_at``, and a run of breaches that starts at or before the
``resolved_at`` of a stored alert of the same series and direction belongs to that alert and
opens nothing (a new alert's run can only start after the previous one was resolved, since
the resolving slot is not a breach). ``advance_alerts`` is vectorised for the common case:
only series with an open alert or with ``k`` consecutive breaches in the rows given walk the
state machine in Python. Fed slot by slot (each call given the ``k - 1`` slots before), it
ends where one call over the whole history ends (``tests/storage/test_breaches.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

ABOVE, BELOW = "above", "below"
OPEN, RESOLVED = "open", "resolved"
_DIRECTION = {1: ABOVE, -1: BELOW}
_CODE = {ABOVE: 1, BELOW: -1}


def breach_codes(
    y: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(+1 above / -1 below / 0 inside, excess in interval widths) of each actual. A zero
    width is floored to 1e-12 of the bounds' magnitude, so the excess stays finite."""
    y, lower, upper = (np.asarray(a, dtype="float64") for a in (y, lower, upper))
    floor = 1e-12 * np.maximum(1.0, np.maximum(np.abs(lower), np.abs(upper)))
    width = np.maximum(upper - lower, floor)
    code = np.where(y > upper, 1, np.where(y < lower, -1, 0)).astype("int8")
    excess = np.where(code > 0, (y - upper) / width, np.where(code < 0, (lower - y) / width, 0.0))
    return code, excess


def expected_false_alerts(level: float, k: int, slots_per_day: float) -> float:
    """Alerts a day one well-calibrated series opens by chance: an actual falls above (or
    below) a central ``level`` interval with ``p = (1 - level) / 2``; a run of ``k`` such
    slots starts at a slot with probability ``(1 - p) * p**k``; two directions."""
    p = (1.0 - level) / 2.0
    return 2.0 * slots_per_day * (1.0 - p) * p**k


#: The false-alarm rate the default ``k`` is chosen for: one per series per 1,000 days.
DEFAULT_FALSE_ALERTS_PER_DAY = 0.001


def default_alert_slots(
    level: float, slots_per_day: float, rate: float = DEFAULT_FALSE_ALERTS_PER_DAY
) -> int:
    """The smallest ``k`` whose expected false alerts per series and day are at most
    ``rate`` (80 % interval, 288 slots a day: 6; 95 %: 4)."""
    for k in range(1, 289):
        if expected_false_alerts(level, k, slots_per_day) <= rate:
            return k
    return 288


@dataclass
class Alert:
    """One alert's state; timestamps are epoch microseconds (``resolved_at`` None while
    open). Field names and order are ``storage.columns.ALERT_SCHEMA``'s."""

    series_id: str
    direction: str
    started_at: int
    opened_at: int
    last_breach_at: int
    checked_at: int
    slots_breached: int
    clear_slots: int
    max_excess: float
    level: float
    step: int
    model_version: str
    status: str = OPEN
    resolved_at: int | None = None


@dataclass
class AlertDelta:
    """What one call of ``advance_alerts`` changed: every alert to upsert (new and
    updated), and among them the ones opened and the ones resolved."""

    changed: list[Alert]
    opened: list[Alert]
    resolved: list[Alert]


def _us(values: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(values).as_unit("us").asi8


def _known_alerts(known: pd.DataFrame | None) -> dict[str, list[Alert]]:
    """Stored alerts (a frame of ALERT_SCHEMA's columns) by series."""
    out: dict[str, list[Alert]] = {}
    if known is None or known.empty:
        return out
    ts = {c: _us(known[c]) for c in ("started_at", "opened_at", "last_breach_at", "checked_at")}
    resolved_at = pd.DatetimeIndex(known["resolved_at"]).as_unit("us")
    resolved, missing = resolved_at.asi8, resolved_at.isna()
    for i, rec in enumerate(known.itertuples(index=False)):
        out.setdefault(str(rec.series_id), []).append(
            Alert(
                str(rec.series_id),
                str(rec.direction),
                *(int(ts[c][i]) for c in ts),
                int(rec.slots_breached),
                int(rec.clear_slots),
                float(rec.max_excess),
                float(rec.level),
                int(rec.step),
                str(rec.model_version),
                str(rec.status),
                None if missing[i] else int(resolved[i]),
            )
        )
    return out


def run_lengths(sid: np.ndarray, t: np.ndarray, code: np.ndarray, freq_us: int) -> np.ndarray:
    """For rows sorted by series then time: how many consecutive slots (no gap, same
    series, same non-zero code) end at each row (0 where the code is 0)."""
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype="int64")
    cont = np.zeros(n, dtype=bool)
    cont[1:] = (
        (sid[1:] == sid[:-1])
        & (t[1:] - t[:-1] == freq_us)
        & (code[1:] == code[:-1])
        & (code[1:] != 0)
    )
    starts = np.flatnonzero(~cont)
    run = np.arange(n) - starts[np.cumsum(~cont) - 1] + 1
    return np.where(code != 0, run, 0)


def advance_alerts(
    rows: pd.DataFrame,
    known: pd.DataFrame | None,
    *,
    k: int,
    m: int,
    freq_us: int,
    level: float,
    step: int,
    min_excess: float = 0.0,
    quiet: int = 0,
) -> AlertDelta:
    """Fold scored forecasts of one step and level into the stored alerts.

    ``rows``: ``series_id, target_ts, y, yhat_lower, yhat_upper, model_version`` (any order;
    one row per series and target slot); they should start ``k - 1`` slots before the first
    slot not judged yet, so a run of breaches under way is counted whole. ``known``: the
    stored alerts (``ALERT_SCHEMA`` columns) that are open or were resolved at or after
    ``step + quiet`` slots before the first row's slot. See the module docstring."""
    if k < 1 or m < 1:
        raise ValueError(f"k and m must be at least 1, got k={k}, m={m}")
    stored = _known_alerts(known)
    delta = AlertDelta([], [], [])
    if rows.empty and not stored:
        return delta
    codes, names = pd.factorize(rows["series_id"], sort=False)
    t_all = _us(rows["target_ts"])
    order = np.lexsort((t_all, codes))  # contiguous per series, in time order
    sid, t = codes[order], t_all[order]
    code, excess = breach_codes(
        *(rows[c].to_numpy(dtype="float64")[order] for c in ("y", "yhat_lower", "yhat_upper"))
    )
    runs = run_lengths(sid, t, np.where(excess > min_excess, code, 0), freq_us)
    names = np.asarray(names, dtype=object)
    busy = {str(x) for x in names[np.unique(sid[runs >= k])]}
    busy |= {s for s, alerts in stored.items() if any(a.status == OPEN for a in alerts)}
    position = {str(x): i for i, x in enumerate(names) if str(x) in busy}
    versions = rows["model_version"]
    for series in sorted(busy):
        i = position.get(series)
        a, b = (0, 0) if i is None else np.searchsorted(sid, [i, i + 1])
        _advance_series(
            series,
            (t[a:b], code[a:b], excess[a:b], versions.iloc[order[a:b]].to_numpy(dtype=object)),
            stored.get(series, []),
            (k, m, freq_us, level, step, min_excess, quiet),
            delta,
        )
    return delta


@dataclass
class _Run:
    """Consecutive breaches of one direction not (yet) an alert."""

    n: int = 0
    start: int = 0
    max_excess: float = 0.0


def _advance_series(
    series: str,
    slots: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    stored: list[Alert],
    params: tuple[int, int, int, float, int, float, int],
    delta: AlertDelta,
) -> None:
    """The state machine of one series over its slots (see the module docstring)."""
    k, m, freq_us, level, step, min_excess, quiet = params
    open_: dict[int, Alert] = {}
    guard = {1: -math.inf, -1: -math.inf}  # a new run must start after this slot
    # forecasts issued in these spans saw an alert's anomaly in their input: (start, end)
    tainted: dict[tuple[int, int], tuple[float, float]] = {}
    for alert in stored:
        d = _CODE[alert.direction]
        if alert.status == OPEN:
            open_[d] = replace(alert)
            tainted[(d, alert.started_at)] = (alert.started_at, math.inf)
        elif alert.resolved_at is not None:
            guard[d] = max(guard[d], alert.resolved_at)
            end = alert.resolved_at + quiet * freq_us
            tainted[(d, alert.started_at)] = (alert.started_at, end)
    runs = {1: _Run(), -1: _Run()}
    changed: dict[tuple[int, int], Alert] = {}
    prev: int | None = None
    times, codes, excess, versions = slots
    for i in range(len(times)):
        ti, ci, ei, vi = int(times[i]), int(codes[i]), float(excess[i]), str(versions[i])
        gap = prev is not None and ti - prev != freq_us
        prev = ti
        for d in (1, -1):
            alert = open_.get(d)
            if alert is not None:
                if ti <= alert.checked_at:
                    continue  # folded in by an earlier run
                if ci == d:
                    alert.slots_breached += 1
                    alert.last_breach_at = ti
                    alert.max_excess = max(alert.max_excess, ei)
                    alert.model_version = vi
                    alert.clear_slots = 0
                else:
                    after_gap = ti - alert.checked_at != freq_us
                    alert.clear_slots = (0 if after_gap else alert.clear_slots) + 1
                    if alert.clear_slots >= m:
                        alert.status, alert.resolved_at = RESOLVED, ti
                        delta.resolved.append(alert)
                        del open_[d]
                        guard[d] = ti
                        tainted[(d, alert.started_at)] = (alert.started_at, ti + quiet * freq_us)
                alert.checked_at = ti
                changed[(d, alert.started_at)] = alert
                continue
            run = runs[d]
            issued = ti - step * freq_us
            hit = ci == d and ei > min_excess
            hit = hit and not any(lo <= issued <= hi for lo, hi in tainted.values())
            if gap or not hit:
                run.n = 0
            if not hit:
                continue
            if run.n == 0:
                run.start, run.max_excess = ti, ei
            run.n += 1
            run.max_excess = max(run.max_excess, ei)
            if run.n >= k and run.start > guard[d]:
                alert = Alert(
                    series_id=series,
                    direction=_DIRECTION[d],
                    started_at=run.start,
                    opened_at=ti,
                    last_breach_at=ti,
                    checked_at=ti,
                    slots_breached=run.n,
                    clear_slots=0,
                    max_excess=run.max_excess,
                    level=level,
                    step=step,
                    model_version=vi,
                )
                open_[d] = alert
                tainted[(d, alert.started_at)] = (alert.started_at, math.inf)
                changed[(d, alert.started_at)] = alert
                delta.opened.append(alert)
                run.n = 0
    delta.changed.extend(changed.values())
