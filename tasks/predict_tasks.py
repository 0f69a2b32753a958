"""What a predict run decides before and after the forecast: which slots it forecasts
(lateness, catch-up) and the summary it returns and reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from prefect import task

from lstm import InferenceReport
from lstm.slots import catch_up_slots, freq_to_ns, last_complete_slot, slot_range, slot_ts, to_slot
from storage import Shard
from tasks import common
from tasks.alert_tasks import AlertReport
from tasks.common import STORAGE_TASK, get_store, run_logger
from tasks.settings import Settings


@dataclass
class SlotPlan:
    """The forecast origins of one run, oldest first (none when the run is stale)."""

    slots: list[pd.Timestamp]
    status: str = "ok"  # ok | stale
    scheduled: pd.Timestamp | None = None
    reason: str = ""

    @property
    def as_of(self) -> pd.Timestamp | None:
        return self.slots[-1] if self.slots else None

    def span(self, freq: str) -> int:
        """Grid slots from the oldest origin to as_of (catch-up leaves gaps where slots
        were written already): what the run scores, so every target of its slots is scored
        (live recalibration reads those scores)."""
        if not self.slots:
            return 0
        return int((self.slots[-1] - self.slots[0]) / pd.Timedelta(freq)) + 1

    def stale_result(self) -> dict:
        """The return value of a run that forecast nothing because it ran too late."""
        return {"status": self.status, "scheduled": str(self.scheduled), "written": 0}


class Stopwatch:
    """Wall-clock laps of a run's steps (seconds, named)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


def run_shard(shard: int | None, shards: int | None) -> Shard | None:
    """The shard a run's `shard`/`shards` parameters name (None: every series)."""
    return Shard.of(shard, shards)


@task(name="plan-slots", **STORAGE_TASK)
def plan_slots(settings: Settings, as_of: datetime | None, shard: Shard | None = None) -> SlotPlan:
    """The slots to forecast: `as_of` (default: the last complete slot before the run's
    *scheduled* time, so a late or repeated run writes the same rows), plus the slots of the
    last `catch_up_slots` that have no forecasts yet. A scheduled run more than
    `max_lateness_slots` late forecasts nothing (after downtime, the on-time run catches up
    and the backlog does not flood the machine). A shard's run catches up the slots that
    hold no forecast of its own series (another shard may have written them)."""
    freq_ns = freq_to_ns(settings.freq)
    scheduled = None
    if as_of is None:
        scheduled = common.scheduled_time()
        lateness = pd.Timestamp.now(tz="UTC") - scheduled
        if lateness > pd.Timedelta(freq_ns * settings.max_lateness_slots, "ns"):
            reason = (
                f"run scheduled for {scheduled} is {lateness.floor('s')} late: skipping its "
                "slot (the on-time run catches up)"
            )
            run_logger().warning(reason)
            return SlotPlan([], "stale", scheduled, reason)
        as_of = last_complete_slot(scheduled, settings.freq)
    as_slot = to_slot(as_of, freq_ns)
    done: list[int] = []
    if settings.catch_up_slots > 0:
        written = get_store(settings, create=False).issued_slots(
            slot_ts(as_slot - settings.catch_up_slots, freq_ns),
            slot_ts(as_slot - 1, freq_ns),
            shard=shard,
        )
        done = [to_slot(s, freq_ns) for s in written]
    slots = catch_up_slots(as_slot, settings.catch_up_slots, done)
    return SlotPlan([slot_ts(s, freq_ns) for s in slots], "ok", scheduled)


@dataclass
class Arrival:
    """How much of the as-of slot had arrived when a run stopped waiting for it."""

    as_of: pd.Timestamp
    arrived: int  # series with a row at as_of
    expected: int  # series with a row at the slot before
    waited_s: float

    @property
    def share(self) -> float:
        return 1.0 if self.expected == 0 else self.arrived / self.expected

    def as_dict(self) -> dict:
        return {
            "as_of": str(self.as_of),
            "arrived": self.arrived,
            "expected": self.expected,
            "waited_s": round(self.waited_s, 1),
        }


def slot_arrival(recent: pd.DataFrame, as_of: pd.Timestamp, freq: str) -> tuple[int, int]:
    """(series with a row at `as_of`, series with a row at the slot before) in `recent`."""
    if recent.empty:
        return 0, 0
    ts = pd.DatetimeIndex(recent["ts"])
    now = recent["series_id"][ts == as_of].nunique()
    before = recent["series_id"][ts == as_of - pd.Timedelta(freq)].nunique()
    return int(now), int(before)


@task(name="wait-for-data", **{**STORAGE_TASK, "timeout_seconds": 900})
def wait_for_data(settings: Settings, plan: SlotPlan) -> Arrival | None:
    """A sensor for late metrics: a scheduled run polls (every FORECAST_DATA_POLL_SECONDS,
    two slots of one query) until the as-of slot has arrived for FORECAST_DATA_WAIT_SHARE
    of the series that reported the slot before, or FORECAST_DATA_WAIT_SECONDS pass. A run
    given `as_of` by hand, or with the wait set to 0, does not wait."""
    if plan.scheduled is None or plan.as_of is None or settings.data_wait_seconds <= 0:
        return None
    store, log = get_store(settings, create=False), run_logger()
    t0 = time.monotonic()
    while True:
        recent = store.read_recent(plan.as_of, 2)
        arrived, expected = slot_arrival(recent, plan.as_of, settings.freq)
        waited = time.monotonic() - t0
        left = settings.data_wait_seconds - waited
        if expected == 0 or arrived >= settings.data_wait_share * expected or left <= 0:
            break
        log.info(
            "waiting for the metrics of %s: %d of %d series so far (FORECAST_DATA_WAIT_SHARE="
            "%g), up to %.0f s more",
            plan.as_of,
            arrived,
            expected,
            settings.data_wait_share,
            left,
        )
        time.sleep(min(settings.data_poll_seconds, left))
    arrival = Arrival(plan.as_of, arrived, expected, waited)
    if arrival.share < settings.data_wait_share:
        log.warning(
            "the metrics of %s arrived for only %d of %d series after %.0f s "
            "(FORECAST_DATA_WAIT_SECONDS=%g): forecasting what is there",
            plan.as_of,
            arrived,
            expected,
            waited,
            settings.data_wait_seconds,
        )
    return arrival


class ForecastShortfall(RuntimeError):
    """A run forecast too few of the series it read: it ends Failed (its rows are kept)."""


@dataclass
class PredictSummary:
    """What one predict run did: the flow's return value and the artifact's content."""

    plan: SlotPlan
    model_version: str
    report: InferenceReport
    series_forecast: int
    written: int
    scored: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    arrival: Arrival | None = None
    as_of_series: int = 0  # series forecast from the run's own slot (catch-up aside)
    live: list[dict] = field(default_factory=list)  # accuracy of what this run scored
    calibration: dict = field(default_factory=dict)  # live recalibration (calibration_tasks)
    alerts: AlertReport | None = None  # breach alerts opened, resolved and open

    @property
    def forecast_share(self) -> float:
        """Series forecast from the as-of slot / series read; 0 when nothing was read."""
        n = self.report.n_input_series
        return self.as_of_series / n if n else 0.0

    def as_dict(self) -> dict:
        r = self.report
        return {
            "status": self.plan.status,
            "arrival": None if self.arrival is None else self.arrival.as_dict(),
            "series_read": r.n_input_series,
            "as_of_series": self.as_of_series,
            "as_of": str(self.plan.as_of),
            "slots": [str(s) for s in self.plan.slots],
            "model_version": self.model_version,
            "series_forecast": self.series_forecast,
            "forecasts": r.n_forecast,  # series x slots
            "written": self.written,
            "skipped": dict(r.skipped),
            "n_skipped": r.n_skipped,
            "repaired": dict(r.repaired),
            "duplicate_rows": r.duplicate_rows,
            "off_grid_rows": r.off_grid_rows,
            "scored": self.scored,
            "live_accuracy": self.live,
            "calibration": self.calibration,
            "alerts": None if self.alerts is None else self.alerts.as_dict(),
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def summarize(
    plan: SlotPlan,
    version: str,
    frame: pd.DataFrame,
    report: InferenceReport,
    written: int,
    scored: int,
    clock: Stopwatch,
    arrival: Arrival | None = None,
    live: list[dict] | None = None,
    alerts: AlertReport | None = None,
) -> PredictSummary:
    """The run's summary (and its one log line)."""
    series = int(frame["series_id"].nunique()) if len(frame) else 0
    own = frame["series_id"][frame["issued_at"] == plan.as_of] if len(frame) else frame
    as_of_series = int(own.nunique()) if len(own) else 0
    summary = PredictSummary(
        plan,
        version,
        report,
        series,
        written,
        scored,
        clock.total,
        {**clock.laps, **report.timings},
        arrival,
        as_of_series,
        live or [],
        alerts=alerts,
    )
    run_logger().info(
        "as_of %s: %d forecasts (%d slots; %d rows, model %s), %d skipped, %d scored, %.2fs",
        plan.as_of,
        report.n_forecast,
        len(plan.slots),
        written,
        version,
        report.n_skipped,
        scored,
        summary.seconds,
    )
    return summary


def check_forecast_share(summary: PredictSummary, settings: Settings) -> None:
    """Fail the run (after its rows are written and its summary published) when it forecast
    fewer than FORECAST_MIN_FORECAST_SHARE of what it read: a green run must mean forecasts."""
    share = summary.forecast_share
    if summary.report.n_input_series and share >= settings.min_forecast_share:
        return
    r, as_of = summary.report, summary.plan.as_of
    if not r.n_input_series:
        raise ForecastShortfall(
            f"no series has metrics in the window read for {as_of}: nothing to forecast "
            "(is the collector writing to this store and table?)"
        )
    named = "; ".join(f"{k!r}: {v}" for k, v in list(r.skipped.items())[:3])
    raise ForecastShortfall(
        f"forecast {summary.as_of_series} of {r.n_input_series} series from {as_of} "
        f"({share:.0%} < FORECAST_MIN_FORECAST_SHARE={settings.min_forecast_share:g}); "
        f"{len(r.skipped)} series skipped, e.g. {named}; the rows that were forecast are kept"
    )


#: series x slots per backfill batch: bounds memory
MAX_WINDOWS_PER_BATCH = 200_000


def backfill_batches(
    settings: Settings,
    start: object,
    end: object,
    metrics: tuple[pd.Timestamp, pd.Timestamp, int] | None,
    batch_slots: int | None = None,
) -> list[list[pd.Timestamp]]:
    """Every slot of [start, end] (floored to the grid), in batches of `batch_slots` slots
    (default: as many as keep series x slots under MAX_WINDOWS_PER_BATCH, at most a day)."""
    slots = slot_range(start, end, settings.freq)
    n_series = metrics[2] if metrics else 1
    k = batch_slots or max(1, min(288, MAX_WINDOWS_PER_BATCH // max(n_series, 1)))
    return [slots[i : i + k] for i in range(0, len(slots), k)]
