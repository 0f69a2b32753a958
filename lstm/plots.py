"""Plots written as PNG files (matplotlib, imported only when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lstm.panel import Panel


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics_comparison(
    results: Mapping[str, Mapping[str, float]],
    path: str | Path,
    metrics: Sequence[str] = ("MASE", "WAPE", "sMAPE"),
    title: str = "Model comparison",
) -> Path:
    """Bar charts of `results` ({model: {metric: value}}) side by side, written as a PNG."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    models = list(results)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = [results[m].get(metric, np.nan) for m in models]
        bars = ax.bar(
            models, values, color=["#4C72B0", "#DD8452", "#55A868", "#C44E52"][: len(models)]
        )
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_title(metric)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_holdout(panel: Panel, extras: dict, path, model: str = "challenger", n_series: int = 4):
    """PNG of actuals and 12-step forecast paths over the held-out period for a few series:
    the judged model with its interval band, and the champion (dashed) when there is one."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = extras["ids"]
    chosen = list(dict.fromkeys(ids))[:n_series]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(10, 2.4 * max(len(chosen), 1)), squeeze=False)
    pred = extras["preds"].get(model, extras["preds"]["naive"])
    h = pred.shape[1]
    for ax, sid in zip(axes[:, 0], chosen, strict=False):
        rows = np.flatnonzero(ids == sid)
        origins = extras["origins"][rows]
        i = int(np.flatnonzero(panel.ids == sid)[0])
        lo, hi = origins.min() - 24, min(origins.max() + h + 1, panel.offsets[i + 1])
        lo = max(lo, panel.offsets[i])
        t = panel.timestamps(np.arange(lo, hi))
        ax.plot(t, panel.y[lo:hi], color="black", lw=0.8, label="actual")
        band = extras.get("bands", {}).get(model)
        champion = extras["preds"].get("champion") if model != "champion" else None
        for k, o in zip(rows, origins, strict=True):
            tt = panel.timestamps(o + np.arange(1, h + 1))
            first = k == rows[0]
            if band is not None:  # the stored interval of the model judged
                ax.fill_between(
                    tt,
                    band[0][k],
                    band[1][k],
                    color="tab:blue",
                    alpha=0.15,
                    lw=0,
                    label="interval" if first else None,
                )
            ax.plot(tt, pred[k], color="tab:blue", lw=1.0, label=model if first else None)
            if champion is not None:
                ax.plot(
                    tt,
                    champion[k],
                    color="tab:orange",
                    lw=0.9,
                    ls="--",
                    label="champion" if first else None,
                )
        ax.set_title(str(sid), fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
