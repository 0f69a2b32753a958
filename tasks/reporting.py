"""Prefect artifacts: what a run decided and wrote, readable in the UI."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from lstm import InferenceReport
from lstm.promotion import Decision
from tasks.common import COMPUTE_TASK

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


@task(name="publish-retrain-report", **COMPUTE_TASK)
def publish_retrain(
    table: pd.DataFrame, decision: Decision, version: str, extra: dict, image: Path | None
) -> str:
    md = comparison_markdown(table, decision, version, extra)
    if image is not None and image.exists():
        data = base64.b64encode(image.read_bytes()).decode()
        url = f"data:image/png;base64,{data}"
        md += f"\n\n![forecasts vs actuals]({url})\n"
        create_image_artifact(
            image_url=url,
            key="retrain-forecasts-vs-actuals",
            description=f"Held-out forecasts vs actuals, version {version}",
        )
    create_markdown_artifact(markdown=md, key="retrain-report", description=f"Retrain of {version}")
    return md


@task(name="publish-predict-report", **COMPUTE_TASK)
def publish_predict(
    slots: list[pd.Timestamp],
    version: str,
    written: int,
    scored: int,
    report: InferenceReport,
    seconds: float,
    series_forecast: int,
) -> list[dict]:
    skipped_series = list(report.skipped)
    shown = skipped_series[:MAX_NAMED]
    more = len(skipped_series) - len(shown)
    rows = [
        {"item": "issued_at", "value": ", ".join(str(s) for s in slots)},
        {"item": "model_version", "value": version},
        {"item": "series forecast", "value": series_forecast},
        {"item": "forecasts (series x slots)", "value": report.n_forecast},
        {"item": "forecast rows written", "value": written},
        {"item": "series skipped", "value": len(skipped_series)},
        {"item": "skipped (series x slot)", "value": report.n_skipped},
        {"item": "series with interpolated values", "value": len(report.repaired)},
        {"item": "matured forecasts scored", "value": scored},
        {"item": "duration s", "value": round(seconds, 3)},
    ]
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
