"""Grid search over the seed's YAML shape: every `model_configs` entry x every
`training_configs` entry, each trained on the train part and scored on the validation part
of the backtest split (the test part stays untouched)."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from lstm.config import ForecastConfig
from lstm.evaluation import evaluate, mase_scales
from lstm.fit import fit_forecaster
from lstm.model import LSTMConfig
from lstm.panel import Panel
from lstm.training import TrainConfig
from lstm.windows import protocol_split, val_origins

log = logging.getLogger(__name__)

# seed key -> (section, field)
ALIASES = {
    "learning_rate": ("train", "lr"),
    "sequence_length": ("forecast", "window"),
    "window": ("forecast", "window"),
    "lags": ("forecast", "lags"),
    "use_level": ("forecast", "use_level"),
}


def load_tuning_config(path: str | Path) -> dict:
    """Read {'model_configs': [...], 'training_configs': [...]} from YAML, checked."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read tuning config {str(path)!r}: {exc}") from exc
    if not isinstance(cfg, Mapping):
        raise ValueError(
            f"{str(path)!r}: expected a mapping with model_configs and training_configs"
        )
    for key in ("model_configs", "training_configs"):
        entries = cfg.get(key)
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(e, Mapping) for e in entries)
        ):
            raise ValueError(f"{str(path)!r}: '{key}' must be a non-empty list of mappings")
    return dict(cfg)


def _apply(base: ForecastConfig, model_cfg: Mapping, train_cfg: Mapping) -> ForecastConfig:
    model_fields = {f.name for f in fields(LSTMConfig)}
    train_fields = {f.name for f in fields(TrainConfig)}
    forecast_fields = {f.name for f in fields(ForecastConfig)}
    m, t, f = asdict(base.model), asdict(base.train), {}
    for key, value in {**model_cfg, **train_cfg}.items():
        section, name = ALIASES.get(key, (None, key))
        if section == "train" or (
            section is None and name in train_fields and name not in model_fields
        ):
            t[name] = value
        elif section is None and name in model_fields:
            m[name] = value
        elif section == "forecast" or name in forecast_fields:
            f[name] = tuple(value) if isinstance(value, list) else value
        else:
            raise ValueError(f"unknown tuning key {key!r}")
    return replace(base, model=LSTMConfig(**m), train=TrainConfig(**t), **f)


def run_hyperparameter_tuning(
    panel: Panel,
    tuning_config: Mapping | str | Path,
    base_config: ForecastConfig | None = None,
    max_combinations: int | None = None,
) -> pd.DataFrame:
    """Train one model per grid point; rank by validation MASE (lower is better)."""
    cfg = tuning_config if isinstance(tuning_config, Mapping) else load_tuning_config(tuning_config)
    base = base_config or ForecastConfig()
    split = protocol_split(panel)
    scale = mase_scales(panel, split)
    grid = list(itertools.product(cfg["model_configs"], cfg["training_configs"]))
    if max_combinations is not None:
        grid = grid[:max_combinations]
    rows = []
    for i, (mc, tc) in enumerate(grid, 1):
        fc = _apply(base, mc, tc)
        t0 = time.monotonic()
        forecaster = fit_forecaster(panel, split, fc)
        fit_s = time.monotonic() - t0
        origins = val_origins(panel, split, fc.window, fc.horizon)
        origins = origins[:: max(1, fc.horizon)]
        res = evaluate(forecaster, panel, origins, scale)
        row = {
            "combination": i,
            **{f"model.{k}": v for k, v in mc.items()},
            **{f"train.{k}": v for k, v in tc.items()},
            "val_MASE": res["metrics"]["MASE"],
            "val_MASE_step1": res["step1"]["MASE"],
            "val_WAPE": res["metrics"]["WAPE"],
            "best_val_loss": forecaster.metadata["training"]["best_val_loss"],
            "epochs": forecaster.metadata["training"]["epochs_run"],
            "fit_s": round(fit_s, 2),
        }
        rows.append(row)
        log.info("tuning %d/%d: %s -> val MASE %.4f", i, len(grid), {**mc, **tc}, row["val_MASE"])
    results = pd.DataFrame(rows)
    if len(results):
        results = results.sort_values("val_MASE", kind="stable").reset_index(drop=True)
        results.insert(0, "rank", np.arange(1, len(results) + 1))
    return results


def save_tuning_results(results: pd.DataFrame, path: str | Path) -> Path:
    """Write the results table as CSV (or JSON when the path ends in .json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(results.to_json(orient="records", indent=2))
    else:
        results.to_csv(path, index=False)
    return path
