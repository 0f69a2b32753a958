"""`GET /metrics`: the job's state and the forecast band in the Prometheus text format.

Everything is read from the store, so any number of API replicas agree and nothing lives
only in a predict worker's memory (the run's own summary is a Prefect artifact, which a
Prometheus scrape should not depend on):

* job metrics of the *last run* = the run that wrote the newest forecast slot: when it was
  issued and how old it is, how many series it forecast, how many series reported that
  slot but got no forecast from it (skipped), and how long after the slot closed its
  forecasts landed (the late-data wait plus the run's duration: an upper bound of the
  duration that needs no Prefect API);
* rolling accuracy per model version and level (MAE, WAPE, interval coverage and the
  number of scored forecasts, over the last FORECAST_API_ACCURACY_WINDOW_S seconds,
  re-aggregated at most every ACCURACY_TTL_S);
* the forecast band *for the current slot*, per series and step:
  `lstm_forecast_yhat{series_id="a",step="3"}` is what was forecast for now three slots
  ago. Samples carry no timestamp, so Prometheus stamps them with the scrape time:
  Grafana draws the actual next to the forecast made h steps ago, and nothing is ever
  stamped in the future. Cardinality: the series of FORECAST_API_METRICS_SERIES (an
  allow-list), else the FORECAST_API_METRICS_TOP_N (100) series with the largest step-1
  forecast of the newest run (the busiest; the choice is stable within a slot), times
  the steps of FORECAST_API_METRICS_STEPS (default every step), times 3 gauges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storage import StorageError, Store
from tasks.settings import Settings

PREFIX = "lstm_forecast"
#: the rolling accuracy is re-aggregated at most this often (seconds)
ACCURACY_TTL_S = 60.0
BAND_COLUMNS = ["series_id", "step", "yhat", "yhat_lower", "yhat_upper"]


@dataclass
class Snapshot:
    """What one scrape reports (computed at most every FORECAST_API_CACHE_S seconds)."""

    store_up: bool
    error: str | None = None
    current_slot: pd.Timestamp | None = None
    newest_issued_at: pd.Timestamp | None = None
    newest_created_at: pd.Timestamp | None = None
    series_forecast: int = 0
    series_skipped: int = 0
    band: pd.DataFrame = field(default_factory=pd.DataFrame)  # series_id, step, yhat, lo, hi
    band_series_total: int = 0  # series the newest run forecast (the allow-list: found)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)


def seconds(ts: pd.Timestamp) -> float:
    return ts.value / 1e9


class Reader:
    """Computes snapshots from the store, cached: one scrape's reads serve every scrape
    within FORECAST_API_CACHE_S (several Prometheus replicas, a dashboard refresh)."""

    def __init__(
        self,
        settings: Settings,
        store: Callable[[], Store],
        now: Callable[[], pd.Timestamp] = lambda: pd.Timestamp.now(tz="UTC"),
    ) -> None:
        self.settings = settings
        self.store = store
        self.now = now
        self.freq = pd.Timedelta(settings.freq)
        self._cached: tuple[float, Snapshot] | None = None
        self._accuracy_cached: tuple[float, pd.DataFrame] | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        with self._lock:
            hit = self._cached
            if hit is not None and time.monotonic() - hit[0] < self.settings.api_cache_s:
                return hit[1]
            snap = self._compute()
            self._cached = (time.monotonic(), snap)
            return snap

    def newest_issued(self, store: Store, now: pd.Timestamp) -> pd.Timestamp | None:
        """The newest forecast origin: searched back one bound of healthy age, then a day,
        then a week (an unhealthy job's age is still reported, up to a week)."""
        bound = pd.Timedelta(seconds=self.settings.api_max_forecast_age_s)
        for back in (bound + self.freq, pd.Timedelta(days=1), pd.Timedelta(days=7)):
            slots = store.issued_slots(start=now - back)
            if slots:
                return slots[-1]
        return None

    def _compute(self) -> Snapshot:
        now = self.now()
        current = now.floor(self.freq)
        try:
            store = self.store()
            newest = self.newest_issued(store, now)
            snap = Snapshot(True, current_slot=current, newest_issued_at=newest)
            first = pd.DataFrame({"series_id": [], "yhat": []})
            if newest is not None:  # the newest run's step-1 rows: one per series
                first = store.read_forecasts(
                    issued_at=newest, start=newest + self.freq, end=newest + self.freq
                )
                snap.series_forecast = int(first["series_id"].nunique())
                if len(first):
                    snap.newest_created_at = first["created_at"].max()
                reported = store.read_recent(newest, 1)
                snap.series_skipped = int(len(set(reported["series_id"]) - set(first["series_id"])))
            snap.band, snap.band_series_total = self._band(store, current, first)
            snap.accuracy = self._accuracy(store, now)
            return snap
        except StorageError as exc:
            return Snapshot(False, error=str(exc), current_slot=current)

    def _accuracy(self, store: Store, now: pd.Timestamp) -> pd.DataFrame:
        """Rolling accuracy, recomputed at most every ACCURACY_TTL_S (it changes once per
        predict run, and it aggregates series x 66 rows an hour)."""
        hit = self._accuracy_cached
        if hit is not None and time.monotonic() - hit[0] < max(ACCURACY_TTL_S, 0):
            return hit[1]
        acc = store.read_accuracy(
            start=now - pd.Timedelta(seconds=self.settings.api_accuracy_window_s),
            end=now,
            by=("model_version", "level"),
        )
        self._accuracy_cached = (time.monotonic(), acc)
        return acc

    def _band(
        self, store: Store, current: pd.Timestamp, first: pd.DataFrame
    ) -> tuple[pd.DataFrame, int]:
        """The forecasts targeted at the current slot, one row per series and step, for
        the allow-listed series, else the top N by the newest run's step-1 forecast
        (`first`); the steps bounded by FORECAST_API_METRICS_STEPS."""
        s = self.settings
        if s.api_metrics_series:
            ids = list(s.api_metrics_series)
        else:
            ranked = first.sort_values(["yhat", "series_id"], ascending=[False, True])
            ids = ranked["series_id"].head(s.api_metrics_top_n).tolist()
        rows = store.read_forecasts(series_ids=ids, start=current, end=current) if ids else None
        total = int(first["series_id"].nunique())
        if rows is None:
            return pd.DataFrame(columns=BAND_COLUMNS), total
        if s.api_metrics_series:
            total = int(rows["series_id"].nunique())
        if s.api_metrics_steps:
            rows = rows[rows["step"].isin(list(s.api_metrics_steps))]
        return rows.sort_values(["series_id", "step"])[BAND_COLUMNS].reset_index(drop=True), total


class ForecastCollector(Collector):
    """The prometheus_client collector of a Reader's snapshot (plus the serving model)."""

    def __init__(self, reader: Reader, serving: Callable[[], str | None]) -> None:
        self.reader = reader
        self.serving = serving

    def describe(self) -> list[Metric]:
        return []  # collected on demand (nothing is read when the collector is registered)

    def collect(self) -> Iterator[Metric]:
        snap = self.reader.snapshot()
        now = self.reader.now()
        yield gauge("store_up", "1 when the store answered the last read, else 0", snap.store_up)
        version = self.serving()
        info = GaugeMetricFamily(
            f"{PREFIX}_serving_model_info",
            "The model version /predict runs on (value 1)",
            labels=["model_version"],
        )
        if version:
            info.add_metric([version], 1)
        yield info
        if not snap.store_up:
            return
        if snap.newest_issued_at is not None:
            yield gauge(
                "newest_issued_at_timestamp_seconds",
                "Forecast origin (issued_at, a slot start) of the newest forecast, Unix time",
                seconds(snap.newest_issued_at),
            )
            yield gauge(
                "newest_forecast_age_seconds",
                "Seconds since the newest forecast's origin slot started",
                (now - snap.newest_issued_at).total_seconds(),
            )
        yield gauge(
            "last_run_series_forecast",
            "Series forecast from the newest origin slot (by the run that wrote it)",
            snap.series_forecast,
        )
        yield gauge(
            "last_run_series_skipped",
            "Series with a metric at the newest origin slot but no forecast from it",
            snap.series_skipped,
        )
        if snap.newest_created_at is not None and snap.newest_issued_at is not None:
            closed = snap.newest_issued_at + self.reader.freq
            yield gauge(
                "last_run_delay_seconds",
                "Seconds from the end of the newest origin slot to the write of its forecasts "
                "(the late-data wait plus the predict run's duration)",
                (snap.newest_created_at - closed).total_seconds(),
            )
        yield from accuracy_families(snap.accuracy)
        yield gauge(
            "band_series",
            "Series the band is chosen from: forecast by the newest run (or allow-listed "
            "and found)",
            snap.band_series_total,
        )
        yield gauge(
            "band_series_exported",
            "Series whose forecast band is exported here (FORECAST_API_METRICS_SERIES / _TOP_N)",
            int(snap.band["series_id"].nunique()) if len(snap.band) else 0,
        )
        yield from band_families(snap.band)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))


def accuracy_families(acc: pd.DataFrame) -> Iterator[Metric]:
    specs = [
        ("mae", "mae", "Rolling MAE of scored forecasts (requests per slot)", 1.0),
        ("wape_ratio", "wape_pct", "Rolling WAPE of scored forecasts (sum|err| / sum|y|)", 0.01),
        (
            "interval_coverage_ratio",
            "coverage_pct",
            "Rolling share of actuals inside the stored interval (compare with the level)",
            0.01,
        ),
        ("scored_forecasts", "n", "Forecasts scored in the rolling window", 1.0),
    ]
    for name, col, doc, scale in specs:
        fam = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["model_version", "level"])
        for row in acc.itertuples(index=False):
            value = getattr(row, col)
            if value is not None and np.isfinite(value):
                fam.add_metric([str(row.model_version), f"{row.level:g}"], float(value) * scale)
        yield fam


def band_families(band: pd.DataFrame) -> Iterator[Metric]:
    names = [
        ("yhat", "yhat", "Forecast for the current slot, made `step` slots ago"),
        ("yhat_lower", "yhat_lower", "Lower bound of that forecast's interval"),
        ("yhat_upper", "yhat_upper", "Upper bound of that forecast's interval"),
    ]
    ids = band["series_id"].astype(str).tolist() if len(band) else []
    steps = band["step"].astype(str).tolist() if len(band) else []
    for name, col, doc in names:
        fam = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["series_id", "step"])
        values = band[col].tolist() if len(band) else []
        for sid, step, value in zip(ids, steps, values, strict=True):
            fam.add_metric([sid, step], value)
        yield fam
