"""The periodic retrain flow with champion/challenger promotion."""

# No `from __future__ import annotations` in flow modules: `flow.serve()` ships the flow
# to its run process by value (cloudpickle), where string annotations such as
# 'datetime | None' no longer resolve and every run fails parameter validation.

import time

from prefect import flow, get_run_logger

from tasks.model_tasks import (
    compare,
    comparison_dict,
    current_champion,
    prepare_panel,
    register,
    registry,
    train_challenger,
)
from tasks.reporting import publish_retrain
from tasks.settings import get_settings
from tasks.storage_tasks import read_history


@flow(name="retrain", timeout_seconds=6 * 3600)
def retrain(
    history_days: float | None = None,
    store_url: str | None = None,
    models_dir: str | None = None,
    train_max_seconds: float | None = None,
    promotion_margin: float | None = None,
    holdout_days: float | None = None,
) -> dict:
    """Train a challenger on recent history of every series, judge it against the champion
    and both baselines on the most recent held-out period, register it, and promote it only
    if it wins (the first model: if it beats the baselines)."""
    t0 = time.monotonic()
    settings = get_settings(
        history_days=history_days,
        store_url=store_url,
        models_dir=models_dir,
        train_max_seconds=train_max_seconds,
        promotion_margin=promotion_margin,
        holdout_days=holdout_days,
    )
    history = read_history(settings)
    panel, prep, split = prepare_panel(history, settings)
    champion, champion_version = current_champion(settings)
    challenger = train_challenger(panel, split, settings)
    table, extras, decision = compare(panel, split, challenger, champion, settings)
    version = register(settings, challenger, table, decision, prep, champion_version)
    publish_retrain(settings, panel, extras, table, decision, version, challenger, champion_version)
    get_run_logger().info("version %s: %s", version, decision.reason)
    return {
        "version": version,
        "promoted": decision.promote,
        "reason": decision.reason,
        "champion": registry(settings).champion(),
        "comparison": comparison_dict(table),
        "series": panel.n_series,
        "seconds": round(time.monotonic() - t0, 2),
    }
