"""Prefect artifacts: what a run decided and wrote, readable in the UI."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from lstm import Forecaster
from lstm.plots import plot_holdout
from lstm.promotion import Decision
from tasks.alert_tasks import AlertReport
from tasks.common import COMPUTE_TASK, run_logger
from tasks.predict_tasks import PredictSummary
from tasks.retrain_tasks import Comparison, TrainingData, evaluation_dict
from tasks.settings import Settings

MAX_NAMED = 1000  # skipped series named in the predict artifact (the rest are counted)


def comparison_markdown(table: pd.DataFrame, decision: Decision, version: str, extra: dict) -> str:
    cols = [c for c in ("MASE", "MASE_step1", "WAPE", "MAE", "coverage_80") if c in table.columns]
    lines = [
        f"# Retrain: model version `{version}`",
        "",
        f"**Decision: {'PROMOTED to champion' if decision.promote else 'not promoted'}**: {decision.reason}.",
        "",
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, row in table.iterrows():
        vals = " | ".join("" if pd.isna(row[c]) else f"{row[c]:.4f}" for c in cols)
        lines.append(f"| {name} | {vals} |")
    lines += [
        "",
        "Held-out period: the most recent slots of every series; MASE averaged over the",
        "horizon (and at step 1); lower is better. Promotion needs the challenger to beat both",
        f"baselines and the champion by {decision.margin:.1%}.",
        "",
    ]
    for k, v in extra.items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines)


def feature_ranking(forecaster: Forecaster) -> str:
    """'a 0.41, b 0.22, ...' from the model's recorded feature selection ('not ranked')."""
    sel = forecaster.metadata.get("feature_selection") or {}
    imp = sel.get("importances") or {}
    if not imp:
        return "not ranked"
    kept = f" (kept top {sel['top_k']})" if sel.get("top_k") is not None else ""
    return ", ".join(f"{k} {v:.3f}" for k, v in imp.items()) + kept


@task(name="publish-retrain-report", **COMPUTE_TASK)
def publish_retrain(
    settings: Settings,
    data: TrainingData,
    comparison: Comparison,
    version: str,
    challenger: Forecaster,
    champion_version: str | None,
) -> str:
    """The retrain's markdown report (comparison tables, decision, samples, training) and a
    PNG of held-out forecasts vs actuals, as artifacts of the run."""
    training = challenger.metadata.get("training", {})
    ev = evaluation_dict(comparison, data)
    unseen_mase = ev["unseen_series"]["mase"]
    extra = {
        "judged on": f"{comparison.judged_on} (the held-out most recent period)",
        "series sample": f"{len(data.sample.train)} trained on, {len(data.sample.holdout)} "
        f"held out, of {data.sample.n_series}",
        "trained-series MASE": f"{ev['trained_series']['mase']:.4f}",
        "unseen-series MASE": "n/a (every series is in the training sample)"
        if unseen_mase is None
        else f"{unseen_mase:.4f}",
        "champion before": champion_version or "none",
        "training": f"{training.get('epochs_run')} epochs, best {training.get('best_epoch')}, "
        f"{training.get('seconds')}s of a {training.get('budget_s')}s budget "
        f"({training.get('stop_reason')})",
        "intervals calibrated on": str(training.get("calibration")),
        "rows dated after the history's end (ignored)": data.report.future_rows,
        "features": ", ".join(challenger.spec.input_names + challenger.spec.future_names),
        "feature importance (Random Forest)": feature_ranking(challenger),
    }
    md = comparison_markdown(comparison.table, comparison.decision, version, extra)
    panel = data.unseen if data.unseen is not None else data.train
    data_url = None
    # a folder registry keeps the PNG beside it (reports/); with a database registry the
    # worker's disk keeps nothing: the PNG lives in the run's artifacts only
    with tempfile.TemporaryDirectory(prefix="retrain-report-") as tmp:
        folder = settings.models_dir / "reports" if settings.models_url is None else Path(tmp)
        try:
            image = plot_holdout(panel, comparison.extras, folder / f"{version}.png")
            if image is not None and image.exists():
                data_url = f"data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()}"
        except Exception as exc:  # a plot must never fail the retrain
            run_logger().warning("could not draw the forecast plot: %s", exc)
    if data_url is not None:
        md += f"\n\n![forecasts vs actuals]({data_url})\n"
        create_image_artifact(
            image_url=data_url,
            key="retrain-forecasts-vs-actuals",
            description=f"Held-out forecasts vs actuals, version {version}",
        )
    create_markdown_artifact(markdown=md, key="retrain-report", description=f"Retrain of {version}")
    return md


def calibration_rows(cal: dict) -> list[dict]:
    """Artifact rows of the live recalibration: per level the factor per step, the rolling
    coverage of the intervals as written, and any sustained breach."""
    if not cal.get("enabled"):
        return [{"item": "live recalibration", "value": "off (FORECAST_ONLINE_CALIBRATION)"}]
    rows = []
    for key, lv in cal.get("levels", {}).items():
        factors = ", ".join(f"{f:.2f}" for f in lv["factor_by_step"])
        cov = "-" if lv["coverage_pct"] is None else f"{lv['coverage_pct']:.1f}%"
        steps = ", ".join("-" if c is None else f"{c:.0f}" for c in lv["coverage_by_step"])
        rows.append({"item": f"recalibration {key}%: factor by step", "value": factors})
        rows.append(
            {
                "item": f"rolling coverage {key}% ({cal['model_version']})",
                "value": f"{cov} of {lv['n']} scored in the last {cal['window_slots']} "
                f"slots; by step: {steps}",
            }
        )
    for b in cal.get("breaches", []):
        rows.append(
            {
                "item": f"coverage breach {b['level']:.0%} step {b['step']}",
                "value": f"{b['coverage_pct']:.1f}% of {b['n']}",
            }
        )
    return rows


def alert_rows(alerts: AlertReport | None, named: int = 50) -> list[dict]:
    """The breach alerts of a predict run as artifact rows: counts, then each alert opened,
    resolved and still open (at most `named` of each)."""
    if alerts is None:
        return []
    rule = alerts.rule
    rows = [
        {
            "item": "breach alerts: opened / resolved / open",
            "value": f"{len(alerts.opened)} / {len(alerts.resolved)} / {alerts.n_open} "
            f"(k={rule.get('k')} consecutive step-{rule.get('step')} slots more than "
            f"{rule.get('min_excess')} widths outside the {rule.get('level', 0):.0%} band, "
            f"resolved after m={rule.get('m')} back; "
            f"{alerts.events} events"
            + (f", {alerts.events_dropped} over the limit" if alerts.events_dropped else "")
            + ")",
        }
    ]
    for label, group in (("opened", alerts.opened), ("resolved", alerts.resolved)):
        rows += [
            {"item": f"alert {label}: {a['series_id']}", "value": _alert(a)} for a in group[:named]
        ]
    rows += [
        {"item": f"alert open: {a['series_id']}", "value": _alert(a)} for a in alerts.open[:named]
    ]
    return rows


def _alert(a: dict) -> str:
    end = f", resolved {a['resolved_at']}" if a.get("resolved_at") else ""
    return (
        f"{a['direction']} since {a['started_at']}, {a['slots_breached']} slots, last "
        f"{a['last_breach_at']}, up to {a['max_excess']:.2f} widths out, model "
        f"{a['model_version']}{end}"
    )


@task(name="publish-predict-report", **COMPUTE_TASK)
def publish_predict(summary: PredictSummary) -> list[dict]:
    """A table artifact: slots, model version, series forecast and skipped (named), rows
    written and scored, breach alerts opened, resolved and open (named), duration."""
    report = summary.report
    slots = summary.plan.slots
    skipped_series = list(report.skipped)
    shown = skipped_series[:MAX_NAMED]
    more = len(skipped_series) - len(shown)
    rows = [
        {"item": "issued_at", "value": ", ".join(str(s) for s in slots)},
        {"item": "model_version", "value": summary.model_version},
        {"item": "series forecast", "value": summary.series_forecast},
        {"item": "forecasts (series x slots)", "value": report.n_forecast},
        {"item": "forecast rows written", "value": summary.written},
        {"item": "series skipped", "value": len(skipped_series)},
        {"item": "skipped (series x slot)", "value": report.n_skipped},
        {"item": "series with interpolated values", "value": len(report.repaired)},
        {"item": "matured forecasts scored", "value": summary.scored},
        {"item": "duration s", "value": round(summary.seconds, 3)},
    ]
    for g in summary.live:  # accuracy of the forecasts this run scored, per model and level
        rows.append(
            {
                "item": f"scored now: {g['model_version']} at {g['level']:.0%}",
                "value": f"n {g['n']}, MAE {g['mae']:.3f}, WAPE {g['wape_pct']:.1f}%, "
                f"coverage {g['coverage_pct']:.1f}%, interval score {g['interval_score']:.3f} "
                f"({g['sis_pct']:.1f}% of |y|)",
            }
        )
    rows += calibration_rows(summary.calibration)
    rows += alert_rows(summary.alerts)
    if skipped_series:
        rows.append(
            {
                "item": "skipped series",
                "value": ", ".join(map(str, shown)) + (f" and {more} more" if more else ""),
            }
        )
    rows += [{"item": f"skipped: {sid}", "value": report.skipped[sid]} for sid in shown[:50]]
    create_table_artifact(
        table=rows,
        key="predict-summary",
        description=f"Predict run at {slots[-1] if slots else '-'}",
    )
    return rows
