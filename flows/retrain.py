"""The periodic retrain flow: sample the fleet, train a challenger, judge it on series it
never saw, register it, promote it only if it wins."""

# No `from __future__ import annotations` in flow modules: `flow.serve()` ships the flow
# to its run process by value (cloudpickle), where string annotations such as
# 'datetime | None' no longer resolve and every run fails parameter validation.

from datetime import datetime

from prefect import flow

from tasks.common import flow_run_namer, rename_flow_run
from tasks.model_tasks import current_champion
from tasks.reporting import publish_retrain
from tasks.retrain_tasks import (
    choose_sample,
    compare,
    prepare_panels,
    register,
    retrain_result,
    train_challenger,
)
from tasks.settings import get_settings
from tasks.storage_tasks import apply_retention, history_end_slot, read_history, read_profile


@flow(name="retrain", flow_run_name=flow_run_namer("retrain"), timeout_seconds=6 * 3600)
def retrain(
    history_days: float | None = None,
    store_url: str | None = None,
    models_dir: str | None = None,
    train_max_seconds: float | None = None,
    promotion_margin: float | None = None,
    holdout_days: float | None = None,
    history_end: datetime | None = None,
) -> dict:
    """Train a challenger on a stratified sample of series over the last `history_days`
    (up to the last complete slot before the run's scheduled time, or `history_end`),
    judge it against the champion and both baselines on the most recent held-out day of a
    disjoint sample of series, register it, and promote it only if it wins (the first
    model: if it beats the baselines). Last, old forecasts and accuracy rows are deleted
    (retention, relative to the history's end)."""
    settings = get_settings(
        history_days=history_days,
        store_url=store_url,
        models_dir=models_dir,
        train_max_seconds=train_max_seconds,
        promotion_margin=promotion_margin,
        holdout_days=holdout_days,
    )
    end = history_end_slot(settings, history_end)
    sample = choose_sample(read_profile(settings, end), settings, end)
    panel, report = read_history(settings, sample.train + sample.holdout, end)
    data = prepare_panels(panel, report, sample, settings)
    champion, champion_version = current_champion(settings)
    challenger = train_challenger(data, settings)
    comparison = compare(data, challenger, champion, settings)
    version = register(settings, challenger, comparison, data, champion_version)
    rename_flow_run(f"retrain-{version}")
    publish_retrain(settings, data, comparison, version, challenger, champion_version)
    retention = apply_retention(settings, end)
    return retrain_result(settings, version, comparison, data, retention)
