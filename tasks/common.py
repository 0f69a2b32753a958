"""What every task shares: one retry policy for the store, timeouts, no result caching (a
cached forecast would be a stale forecast), the store and the model registry a run uses
(`get_store`, `get_registry`), and its logger.

The retry policy is declared once, here: transient storage errors (a lost or refused
connection, a locked database, an I/O hiccup) are retried with exponential backoff,
FORECAST_STORAGE_RETRIES times starting at FORECAST_STORAGE_RETRY_DELAY_S (4 times: 5, 10,
20, 40 s); everything else fails at once. The values are read when the job starts (every
served or worker run is a fresh process).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import lru_cache

import pandas as pd
from prefect import get_client, get_run_logger, runtime
from prefect.cache_policies import NO_CACHE

from lstm import ModelRegistry, Registry
from lstm.slots import last_complete_slot
from storage import (
    ColumnMap,
    ConfigError,
    SqlRegistryBackend,
    Store,
    TableNames,
    missing_store,
    open_store,
    redact_url,
)
from storage.errors import is_transient as storage_is_transient
from tasks.settings import Settings, SettingsError, get_settings

#: the libraries whose log lines a run shows (Prefect sends them to the run's log through
#: PREFECT_LOGGING_EXTRA_LOGGERS, which the entry points set)
LIBRARY_LOGGERS = ("lstm", "storage")
for _name in LIBRARY_LOGGERS:
    logging.getLogger(_name).setLevel(logging.INFO)


def is_transient(task, task_run, state) -> bool:
    """Retry only what may succeed on a second try; bad data and bugs fail at once."""
    exc = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:  # noqa: BLE001 - classify whatever was raised
            exc = e
    return exc is not None and storage_is_transient(exc)


def _startup_settings() -> Settings:
    try:
        return get_settings()
    except SettingsError:  # reported with its reason when the run builds its settings
        return Settings.model_construct()


COMPUTE_TASK = {"cache_policy": NO_CACHE, "persist_result": False, "timeout_seconds": 600}
STORAGE_TASK = {
    **COMPUTE_TASK,
    **_startup_settings().storage_task_options(),
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": is_transient,
}


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task run, a plain logger outside one."""
    try:
        return get_run_logger()
    except Exception:  # outside a run (a plain function call in tests or the CLI)
        return logging.getLogger("tasks")


def scheduled_time() -> pd.Timestamp:
    """When this flow run was scheduled to start (now, for a run started by hand)."""
    return pd.Timestamp(runtime.flow_run.scheduled_start_time).tz_convert("UTC")


def _name_time(value: object) -> str:
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%MZ") if value else ""


def _utc(value: object) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def flow_run_namer(kind: str) -> Callable[[], str]:
    """A flow-run name for what the run does: `predict-2026-12-02T12:40Z` (its as-of slot),
    `backfill-<start>..<end>`, `retrain-<history end>` (renamed `retrain-<version>` once
    the version is registered), instead of Prefect's random words."""

    def name() -> str:
        p = runtime.flow_run.parameters
        try:
            freq = get_settings().freq
        except SettingsError:
            freq = "5min"
        if kind == "backfill":
            return f"backfill-{_name_time(_utc(p['start']))}..{_name_time(_utc(p['end']))}"
        given = p.get("as_of" if kind.startswith("predict") else "history_end")
        if given:
            slot = _utc(given).floor(pd.Timedelta(freq))
        else:
            slot = last_complete_slot(scheduled_time(), freq)
        shard, shards = p.get("shard"), p.get("shards")
        part = f"-shard{shard}of{shards}" if shard is not None and shards and shards > 1 else ""
        return f"{kind}-{_name_time(slot)}{part}"

    name.__name__ = f"{kind}_run_name"
    return name


def rename_flow_run(name: str) -> None:
    """Rename the current flow run (no-op outside one, and never fails the run)."""
    run_id = runtime.flow_run.id
    if not run_id:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=name)
    except Exception as exc:  # noqa: BLE001 - a name is cosmetic; the run goes on
        logging.getLogger("tasks").warning("could not rename the flow run to %r: %s", name, exc)


@lru_cache(maxsize=8)
def _open(url: str, settings_json: str) -> Store:
    s = Settings.model_validate_json(settings_json)
    return open_store(
        url,
        columns=ColumnMap(s.id_col, s.time_col, s.target_col, s.feature_cols),
        tables=TableNames(s.metrics_table, s.forecasts_table, s.accuracy_table),
        freq=s.freq,
    )


def get_store(settings: Settings, create: bool = True) -> Store:
    """The store these settings name, opened once per process (a long-running server
    reuses its connection pool). With `create=False` (commands and flows that only read
    metrics) a missing SQLite file or Parquet folder is an error naming it, instead of a
    new empty database at a mistyped path."""
    if not create:
        why = missing_store(settings.resolved_store_url())
        if why:
            raise ConfigError(
                f"{why}: check FORECAST_STORE_URL / --store (currently "
                f"{redact_url(settings.resolved_store_url())}), or write metrics first "
                "(`forecast demo-data` for a demo)"
            )
    keep = settings.model_dump_json(
        include={
            "freq",
            "id_col",
            "time_col",
            "target_col",
            "feature_cols",
            "metrics_table",
            "forecasts_table",
            "accuracy_table",
        }
    )
    return _open(settings.resolved_store_url(), keep)


_REGISTRIES: dict[tuple[str, str], Registry] = {}
_REGISTRIES_LOCK = threading.Lock()


def _sql_registry(url: str, prefix: str) -> Registry:
    with _REGISTRIES_LOCK:
        reg = _REGISTRIES.get((url, prefix))
        if reg is None:
            reg = _REGISTRIES[(url, prefix)] = Registry(SqlRegistryBackend(url, prefix))
        return reg


def get_registry(settings: Settings, create: bool = True) -> Registry:
    """The model registry these settings name: the folder `models_dir` (embedded default),
    or the tables of the database `models_url` names (opened once per process). Every
    construction of a registry goes through here. With `create=False` (commands and
    flows that only read models) a missing SQLite file is an error naming it, instead of
    a new empty registry at a mistyped path."""
    url = settings.resolved_models_url()
    if url is None:
        return ModelRegistry(settings.models_dir)
    if not create:
        why = missing_store(url)
        if why:
            raise ConfigError(
                f"{why}: check FORECAST_MODELS_URL / --models (currently "
                f"{settings.registry_location()}), or train a model first (`forecast train`)"
            )
    return _sql_registry(url, settings.models_table_prefix)


def forget_stores() -> None:
    """Close and drop cached stores and registries (tests, or after a configuration
    change)."""
    _open.cache_clear()
    with _REGISTRIES_LOCK:
        for reg in _REGISTRIES.values():
            reg.backend.close()
        _REGISTRIES.clear()
