"""Is the training budget a budget? (issue 18) `fit_forecaster` on the NAB dev data with
`max_seconds` of 10, 30, 60 and 120 s: the wall time of the whole fit (feature ranking,
early stopping, calibration, refit) against the budget, and how the refit was sized.

    python -m bench.bench_budget
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from bench.common import ROOT

NAB = ROOT.parent / "shared" / "data" / "nab-tweets"


def run(budgets: tuple[float, ...] = (10, 30, 60, 120)) -> list[dict]:
    from lstm import ColumnNames, ForecastConfig, fit_forecaster, load_dataset, regularize

    df, cols = load_dataset(Path(NAB), ColumnNames())
    panel, _ = regularize(df, "5min", cols, strict=True)
    out = []
    for budget in budgets:
        cfg = ForecastConfig()
        cfg = replace(cfg, train=replace(cfg.train, max_seconds=budget))
        t0 = time.monotonic()
        f = fit_forecaster(panel, config=cfg)
        wall = time.monotonic() - t0
        tr = f.metadata["training"]
        out.append(
            {
                "budget_s": budget,
                "fit_wall_s": round(wall, 1),
                "overshoot_pct": round(100 * (wall - budget) / budget, 1),
                "early_stop_epochs": tr["epochs_run"],
                "stop_reason": tr["stop_reason"],
                "refit": {k: tr["refit"][k] for k in ("epochs", "skipped")},
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(run()))
