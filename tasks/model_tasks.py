"""Prefect tasks around the lstm library: prepare, train, compare, register, forecast."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import pandas as pd
from prefect import get_run_logger, task

from flows.settings import Settings
from lstm import (
    ArtifactError,
    ForecastConfig,
    Forecaster,
    InferenceReport,
    ModelRegistry,
    regularize,
)
from lstm.panel import Panel, PrepReport
from lstm.promotion import Decision, compare_models, decide_promotion, holdout_split
from lstm.windows import Split
from tasks.common import COMPUTE_TASK

LOG_NAMED = 50  # skipped series named in the log (all are counted; the artifact names more)
_CACHE: dict[tuple[str, str], Forecaster] = {}
_CACHE_LOCK = threading.Lock()


def _logger():
    try:
        return get_run_logger()
    except Exception:  # outside a run (plain function call in tests or the CLI)
        return logging.getLogger("tasks")


class _ToRunLogger(logging.Handler):
    """Forwards the library's log records to the Prefect run logger (console and UI)."""

    def __init__(self, target: logging.LoggerAdapter | logging.Logger) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, "%s", record.getMessage())


@contextmanager
def library_progress(name: str = "lstm") -> Iterator[None]:
    """Within a task: the `lstm` library's INFO logs (per-epoch training progress, data
    repairs) reach the run's log, which Prefect prints and shows in the UI."""
    lib = logging.getLogger(name)
    saved = lib.handlers, lib.level, lib.propagate
    lib.handlers = [_ToRunLogger(_logger())]  # the run logger prints each line once
    lib.setLevel(logging.INFO)
    lib.propagate = False
    try:
        yield
    finally:
        lib.handlers, lib.propagate = saved[0], saved[2]
        lib.setLevel(saved[1])  # setLevel, not .level: it clears the enabled-for cache


def forecast_config(settings: Settings) -> ForecastConfig:
    cfg = ForecastConfig(
        window=settings.window,
        horizon=settings.horizon,
        freq=settings.freq,
        lags=None if settings.lags is None else tuple(settings.lags),
        levels=tuple(sorted({0.8, 0.95, settings.level})),
        select_top_k=settings.select_top_k,
        rank_features=settings.feature_ranking,
    )
    return replace(
        cfg,
        model=replace(cfg.model, hidden_size=settings.hidden_size, num_layers=settings.num_layers),
        train=replace(cfg.train, max_seconds=settings.train_max_seconds, seed=settings.seed),
    )


def load_champion_cached(settings: Settings) -> tuple[Forecaster, str]:
    """The champion model, loaded once per version per process.

    If the champion's files fail verification, the run keeps forecasting with the last
    good champion this process loaded, or else with the most recent earlier champion that
    verifies; the refusal is logged with the file it names.
    """
    registry = ModelRegistry(settings.models_dir)
    registry.cleanup()  # leftovers of a crashed save or promotion (dead processes only)
    root = str(registry.root.resolve())
    version = registry.champion()
    if version is None:
        raise ArtifactError(
            f"no champion model in {str(registry.root)!r}: run `forecast train` (the retrain flow) first"
        )
    key = (root, version)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key], version
    try:
        forecaster = registry.load(version)
    except ArtifactError as exc:
        _logger().error("champion %s refused: %s", version, exc)
        fallback = _fallback(registry, root, version)
        if fallback is None:
            raise
        _logger().warning("forecasting with previous champion %s instead", fallback[1])
        return fallback
    with _CACHE_LOCK:
        for k in [k for k in _CACHE if k[0] == root]:
            del _CACHE[k]  # keep one model per registry in memory
        _CACHE[key] = forecaster
    return forecaster, version


def _fallback(registry: ModelRegistry, root: str, bad: str) -> tuple[Forecaster, str] | None:
    with _CACHE_LOCK:
        cached = [(k[1], f) for k, f in _CACHE.items() if k[0] == root and k[1] != bad]
    if cached:
        return cached[-1][1], cached[-1][0]
    import json

    pointer = registry.root / "champion.json"
    history = json.loads(pointer.read_text()).get("history", []) if pointer.exists() else []
    for entry in reversed(history):
        v = entry.get("version")
        if v and v != bad:
            try:
                return registry.load(v), v
            except ArtifactError:
                continue
    return None


def clear_model_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


@task(name="prepare-panel", **COMPUTE_TASK)
def prepare_panel(history: pd.DataFrame, settings: Settings) -> tuple[Panel, PrepReport]:
    """Validate and regularise the training history (repairs counted, bad series named)."""
    if history.empty:
        raise ValueError("the metrics table holds no rows in the requested history window")
    with library_progress():
        panel, report = regularize(history, settings.freq, strict=False)
    log = _logger()
    log.info(
        "history: %d series, %d slots; filled %d gaps, summed %d duplicates, %d invalid values, "
        "dropped %d series",
        report.n_series,
        report.slots_out,
        report.filled_slots,
        report.duplicate_rows,
        sum(report.invalid_values.values()),
        len(report.dropped),
    )
    for sid, reason in list(report.dropped.items())[:20]:
        log.warning("series %r dropped: %s", sid, reason)
    return panel, report


@task(name="train-challenger", **{**COMPUTE_TASK, "timeout_seconds": 6 * 3600})
def train_challenger(panel: Panel, split: Split, settings: Settings) -> Forecaster:
    """Fit a new global model (feature ranking, early stopping, interval calibration); the
    per-epoch progress goes to the run's log."""
    with library_progress():
        return Forecaster.fit(panel, split, forecast_config(settings))


def holdout(panel: Panel, settings: Settings) -> Split:
    slots = int(pd.Timedelta(days=settings.holdout_days) / pd.Timedelta(settings.freq))
    return holdout_split(panel, slots)


@task(name="compare-models", **COMPUTE_TASK)
def compare(
    panel: Panel,
    split: Split,
    challenger: Forecaster,
    champion: Forecaster | None,
    settings: Settings,
) -> tuple[pd.DataFrame, dict, Decision]:
    """Challenger vs champion vs Naive and SeasonalNaive on the same held-out period."""
    table, extras = compare_models(
        panel,
        split,
        {"challenger": challenger, "champion": champion},
        settings.horizon,
        settings.horizon,
    )
    for name, err in extras["errors"].items():
        _logger().warning("%s could not be evaluated: %s", name, err)
    decision = decide_promotion(table, settings.promotion_margin)
    return table, extras, decision


@task(name="forecast-batch", **COMPUTE_TASK)
def forecast_batch(
    forecaster: Forecaster,
    version: str,
    history: pd.DataFrame,
    slots: Sequence[pd.Timestamp],
    settings: Settings,
) -> tuple[pd.DataFrame, InferenceReport]:
    """Forecasts of every series from every slot, in one vectorised call, tagged with the
    model version that produced them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.predict_threads))
    try:
        frame, report = forecaster.forecast(
            history, list(slots), level=settings.level, max_missing=settings.max_missing
        )
    finally:
        torch.set_num_threads(threads)
    frame["model_version"] = version
    log = _logger()
    if report.skipped:
        named = list(report.skipped.items())[:LOG_NAMED]
        more = len(report.skipped) - len(named)
        log.warning(
            "skipped %d forecast(s) of %d series: %s%s",
            report.n_skipped,
            len(report.skipped),
            "; ".join(f"{k}: {v}" for k, v in named),
            f"; and {more} more (named in the run's predict-summary artifact)" if more else "",
        )
    if report.repaired:
        log.info(
            "interpolated %d missing values in %d series",
            sum(report.repaired.values()),
            len(report.repaired),
        )
    return frame, report
