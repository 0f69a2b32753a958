"""The retrain report's plot (issue 13.7): the judged model with its interval band and the
champion next to it."""

from __future__ import annotations

import numpy as np


def test_holdout_plot_draws_the_band_and_the_champion(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from lstm import generate_metrics, regularize
    from lstm.plots import plot_holdout

    panel, _ = regularize(generate_metrics(n_series=2, days=2, seed=1))
    h = 12
    origins, ids = [], []
    for i in range(panel.n_series):
        end = panel.offsets[i + 1] - h - 1
        origins += [end - 24, end - 12]
        ids += [panel.ids[i]] * 2
    origins, ids = np.array(origins), np.array(ids, dtype=object)
    y = np.stack([panel.y[o + 1 : o + 1 + h] for o in origins])
    extras = {
        "ids": ids,
        "origins": origins,
        "preds": {"challenger": y * 1.1, "champion": y * 0.9, "naive": y},
        "bands": {"challenger": (y * 0.8, y * 1.3)},
    }
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    out = plot_holdout(panel, extras, tmp_path / "holdout.png")
    monkeypatch.setattr(plt, "close", real_close)
    assert out.is_file() and out.stat().st_size > 1000
    (fig,) = figures
    for ax in fig.axes:
        labels = ax.get_legend_handles_labels()[1]
        assert {"actual", "challenger", "interval", "champion"} <= set(labels), labels
    real_close(fig)
