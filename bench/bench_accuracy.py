"""Accuracy of configuration variants under the backtest protocol (NAB by default),
seeds 0 and 1, one run at a time: the ablations quoted in BENCHMARKS.md.

    python -m bench.bench_accuracy '{}' '{"train": {"refit_on_validation": false}}'

Each argument is a JSON dict of ForecastConfig fields; "train", "model" and "scaler" hold
TrainConfig, LSTMConfig and TargetScaler fields. The early-stopping budget is 120 s.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from lstm.backtest import run_backtest
from lstm.config import ForecastConfig
from lstm.features import TargetScaler
from lstm.panel import load_dataset, regularize

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab-tweets"


def config(variant: dict, seed: int) -> ForecastConfig:
    kw = dict(variant)
    base = ForecastConfig()
    train = replace(base.train, **{"max_seconds": 120, **kw.pop("train", {}), "seed": seed})
    model = replace(base.model, **kw.pop("model", {}))
    scaler = TargetScaler(**kw.pop("scaler", {}))
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    return replace(base, **kw, train=train, model=model, target_scaler=scaler)


def main(variants: list[str], data: Path = NAB) -> None:
    df, cols = load_dataset(data)
    panel, prep = regularize(df, "5min", cols)
    for arg in variants or ["{}"]:
        for seed in (0, 1):
            rep = run_backtest(
                df, config=config(json.loads(arg), seed), dataset=data.name, panel=panel, prep=prep
            )
            m = rep["models"]["lstm"]
            print(
                f"{arg} seed={seed} MASE {m['avg']['MASE']:.4f} s1 {m['step1']['MASE']:.4f} "
                f"WAPE {m['avg']['WAPE']:.2f} cov {m['coverage']['80']:.1f}/{m['coverage']['95']:.1f} "
                f"fit {m['fit_s']:.0f}s epochs {m['training']['best_epoch']}/{m['training']['epochs_run']}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
