"""The periodic retrain flow with champion/challenger promotion."""

# No `from __future__ import annotations` in flow modules: `flow.serve()` ships the flow
# to its run process by value (cloudpickle), where string annotations such as
# 'datetime | None' no longer resolve and every run fails parameter validation.

import time

from prefect import flow, get_run_logger, task

from flows.settings import get_settings
from lstm import ArtifactError, ModelRegistry
from lstm.promotion import plot_holdout
from tasks.common import COMPUTE_TASK, retrying
from tasks.model_tasks import compare, holdout, prepare_panel, train_challenger
from tasks.reporting import publish_retrain
from tasks.storage_tasks import read_history


@task(name="register-model", **COMPUTE_TASK)
def register(registry: ModelRegistry, challenger, table, decision, prep, champion_version) -> str:
    """Save the challenger as a new immutable version; promote it if the decision says so."""
    version = registry.save(
        challenger,
        metrics={k: float(v) for k, v in table.loc["challenger"].items()},
        comparison={m: {k: float(v) for k, v in row.items()} for m, row in table.iterrows()},
        decision=decision.as_dict(),
        champion_at_training=champion_version,
        data_report=prep.as_dict(),
    )
    if decision.promote:
        registry.promote(version, decision.reason)
    return version


def feature_ranking(forecaster) -> str:
    """'a 0.41, b 0.22, ...' from the model's recorded feature selection ('not ranked')."""
    sel = forecaster.metadata.get("feature_selection") or {}
    imp = sel.get("importances") or {}
    if not imp:
        return "not ranked"
    kept = f" (kept top {sel['top_k']})" if sel.get("top_k") is not None else ""
    return ", ".join(f"{k} {v:.3f}" for k, v in imp.items()) + kept


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
    log = get_run_logger()
    settings = get_settings(
        history_days=history_days,
        store_url=store_url,
        models_dir=models_dir,
        train_max_seconds=train_max_seconds,
        promotion_margin=promotion_margin,
        holdout_days=holdout_days,
    )
    history = retrying(read_history, settings)(settings)
    panel, prep = prepare_panel(history, settings)
    split = holdout(panel, settings)
    registry = ModelRegistry(settings.models_dir)
    champion_version = registry.champion()
    champion = None
    if champion_version is not None:
        try:
            champion = registry.load(champion_version)
        except ArtifactError as exc:
            log.error(
                "current champion %s cannot be loaded and is not compared: %s",
                champion_version,
                exc,
            )
    challenger = train_challenger(panel, split, settings)
    table, extras, decision = compare(panel, split, challenger, champion, settings)
    version = register(registry, challenger, table, decision, prep, champion_version)
    image = None
    try:
        image = plot_holdout(panel, extras, settings.models_dir / "reports" / f"{version}.png")
    except Exception as exc:  # a plot must never fail the retrain
        log.warning("could not draw the forecast plot: %s", exc)
    training = challenger.metadata.get("training", {})
    publish_retrain(
        table,
        decision,
        version,
        {
            "series": panel.n_series,
            "champion before": champion_version or "none",
            "training": f"{training.get('epochs_run')} epochs, best {training.get('best_epoch')}, "
            f"{training.get('seconds')}s ({training.get('stop_reason')})",
            "features": ", ".join(challenger.spec.input_names + challenger.spec.future_names),
            "feature importance (Random Forest)": feature_ranking(challenger),
        },
        image,
    )
    log.info("version %s: %s", version, decision.reason)
    return {
        "version": version,
        "promoted": decision.promote,
        "reason": decision.reason,
        "champion": registry.champion(),
        "comparison": {m: {k: float(v) for k, v in row.items()} for m, row in table.iterrows()},
        "series": panel.n_series,
        "seconds": round(time.monotonic() - t0, 2),
    }
