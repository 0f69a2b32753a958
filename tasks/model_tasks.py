"""Prefect tasks around the model: the configuration, the champion (with its process-level
cache and last-good fallback) and the batch forecast. Thin: the work is in lstm/."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import torch
from prefect import task

from lstm import (
    ArtifactError,
    ForecastConfig,
    Forecaster,
    InferenceReport,
    Registry,
)
from lstm.slots import freq_to_ns
from storage import MAX_SERIES_ID_LENGTH, ConfigError, invalid_series_ids
from tasks.common import COMPUTE_TASK, STORAGE_TASK, get_registry, run_logger
from tasks.settings import Settings

LOG_NAMED = 50  # skipped series named in the log (all are counted; the artifact names more)
TRAIN_TIMEOUT_S = 6 * 3600
_CACHE: dict[tuple[str, str], Forecaster] = {}
_CACHE_LOCK = threading.Lock()


def forecast_config(settings: Settings) -> ForecastConfig:
    """The model configuration these settings describe."""
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


# ------------------------------------------------------------------ the champion
@task(name="load-champion", **STORAGE_TASK)
def load_champion(settings: Settings) -> tuple[Forecaster, str]:
    """The champion model, loaded once per version per process, checked against the
    settings' grid.

    If the champion's files fail verification (or the pointer is malformed), the run keeps
    forecasting with the last good champion this process loaded, or else the most recent
    earlier champion that verifies; the refusal is logged with its reason. A registry in a
    database is retried on transient errors like the store.
    """
    forecaster, version = _champion(get_registry(settings, create=False))
    if freq_to_ns(settings.freq) != forecaster.spec.freq_ns:
        raise ConfigError(
            f"FORECAST_FREQ={settings.freq!r} does not match the grid of champion {version} "
            f"({pd.Timedelta(forecaster.spec.freq_ns, 'ns')}): set FORECAST_FREQ to the "
            "model's grid, or train a model on this one"
        )
    return forecaster, version


def _champion(reg: Registry) -> tuple[Forecaster, str]:
    reg.cleanup()  # leftovers of a crashed save or promotion (old enough to be dead)
    root = reg.key()
    try:
        version = reg.champion()
    except ArtifactError as exc:  # a malformed pointer
        return _fallback(reg, root, None, exc)
    if version is None:
        saved = reg.versions()
        hint = (
            f"{len(saved)} version(s) are saved but none is promoted (the newest, "
            f"{saved[-1]}, did not beat the baselines): `forecast promote {saved[-1]}` to use "
            "it anyway, or `forecast train` on more history"
            if saved
            else "run `forecast train` (the retrain flow) first"
        )
        raise ArtifactError(f"no champion model in {reg.where}: {hint}")
    with _CACHE_LOCK:
        if (root, version) in _CACHE:
            return _CACHE[(root, version)], version
    try:
        forecaster = reg.load(version)
    except ArtifactError as exc:
        return _fallback(reg, root, version, exc)
    with _CACHE_LOCK:
        for k in [k for k in _CACHE if k[0] == root]:
            del _CACHE[k]  # keep one model per registry in memory
        _CACHE[(root, version)] = forecaster
    return forecaster, version


def _fallback(
    reg: Registry, root: str, refused: str | None, exc: ArtifactError
) -> tuple[Forecaster, str]:
    """The model this process last loaded from this registry, else the registry's last
    good champion; the refusal is logged with its reason."""
    log = run_logger()
    log.error("champion %s refused: %s", refused or "pointer", exc)
    with _CACHE_LOCK:
        cached = [(f, k[1]) for k, f in _CACHE.items() if k[0] == root and k[1] != refused]
    fallback = cached[-1] if cached else reg.last_good(exclude=[refused] if refused else [])
    if fallback is None:
        raise exc
    log.warning("forecasting with previous champion %s instead", fallback[1])
    return fallback


def clear_model_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


@task(name="load-current-champion", **STORAGE_TASK)
def current_champion(settings: Settings) -> tuple[Forecaster | None, str | None]:
    """The champion to compare a challenger with (None when there is none or it cannot be
    loaded: the refusal is logged and the challenger is judged against the baselines)."""
    reg = get_registry(settings)
    try:
        version = reg.champion()
        return (reg.load(version), version) if version else (None, None)
    except ArtifactError as exc:
        run_logger().error("the current champion cannot be loaded and is not compared: %s", exc)
        return None, None


# ------------------------------------------------------------------ predict
def _drop_unwritable_ids(history: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """History without the series `storage.invalid_series_ids` refuses, and those ids with
    the reason. The length check is vectorised; only suspects are examined one by one."""
    if history.empty or "series_id" not in history:
        return history, {}
    ids = pd.Series(pd.unique(history["series_id"]), dtype=object).astype(str)
    suspect = ids[
        (ids.str.len() > MAX_SERIES_ID_LENGTH)
        | (ids.str.len() == 0)
        | ids.str.contains("\x00", regex=False)
    ]
    refused = invalid_series_ids(suspect.tolist()) if len(suspect) else {}
    if not refused:
        return history, {}
    keep = ~history["series_id"].astype(str).isin(list(refused))
    return history[keep], refused


@task(name="forecast-batch", **COMPUTE_TASK)
def forecast_batch(
    forecaster: Forecaster,
    version: str,
    history: pd.DataFrame,
    slots: Sequence[pd.Timestamp],
    settings: Settings,
) -> tuple[pd.DataFrame, InferenceReport]:
    """Forecasts of every series from every slot, in one vectorised call, tagged with the
    model version that produced them. Series whose id no store can key (too long, NUL)
    are skipped and named first, so the others' forecasts can be written."""
    history, refused = _drop_unwritable_ids(history)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.predict_threads))
    try:
        frame, report = forecaster.forecast(
            history, list(slots), level=settings.level, max_missing=settings.max_missing
        )
    finally:
        torch.set_num_threads(threads)
    for sid, reason in refused.items():
        report.skipped[sid] = reason
        report.n_skipped += len(slots)
    report.n_input_series += len(refused)
    frame["model_version"] = version
    log = run_logger()
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
