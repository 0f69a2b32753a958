"""Shared task options: retries with backoff on transient storage errors, timeouts, and no
result caching (a cached forecast would be a stale forecast)."""

from __future__ import annotations

from functools import lru_cache

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.settings import Settings


def is_transient(task, task_run, state) -> bool:
    """Retry only what may succeed on a second try: a lost connection, a locked or
    unreachable database, an I/O hiccup. Bad data and bugs fail at once."""
    exc = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:  # noqa: BLE001 - classify whatever was raised
            exc = e
    return exc is not None and transient_error(exc)


def transient_error(exc: BaseException) -> bool:
    """storage's own classification: connection, lock and I/O errors are transient."""
    from storage.errors import is_transient

    return is_transient(exc)


STORAGE_TASK = {
    "retries": 4,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),  # 5, 10, 20, 40 s
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": is_transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "timeout_seconds": 600,
}
COMPUTE_TASK = {"cache_policy": NO_CACHE, "persist_result": False, "timeout_seconds": 600}


def retrying(task, settings: Settings):
    """`task` with the storage retry schedule of `settings` (exponential backoff)."""
    return task.with_options(**settings.storage_task_options())


@lru_cache(maxsize=8)
def _open(url: str, settings_json: str):
    from storage import ColumnMap, TableNames, open_store

    s = Settings.model_validate_json(settings_json)
    return open_store(
        url,
        columns=ColumnMap(s.id_col, s.time_col, s.target_col, s.feature_cols),
        tables=TableNames(s.metrics_table, s.forecasts_table, s.accuracy_table),
        freq=s.freq,
    )


def get_store(settings: Settings):
    """The store these settings name, opened once per process (a long-running server
    reuses its connection pool)."""
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


def forget_stores() -> None:
    """Close and drop cached stores (tests, or after a configuration change)."""
    _open.cache_clear()
