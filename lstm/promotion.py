"""Champion/challenger: score candidate models and baselines on the same held-out period
and decide whether the challenger replaces the champion. Pure functions, no Prefect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from lstm.evaluation import BASELINES, baseline_forecasts, mase_scales, scores, seasonal_period
from lstm.forecaster import Forecaster
from lstm.intervals import level_key
from lstm.metrics import interval_coverage
from lstm.panel import Panel
from lstm.windows import Split, expand_ranges, gather


def holdout_split(
    panel: Panel, holdout_slots: int, val_frac: float = 0.1, min_val: int = 48
) -> Split:
    """Train | validation | the most recent `holdout_slots` of every series (the period
    challenger, champion and baselines are judged on)."""
    lengths = panel.lengths
    n_test = np.minimum(holdout_slots, lengths // 4)
    rest = lengths - n_test
    n_val = np.maximum(np.floor(rest * val_frac).astype(np.int64), np.minimum(min_val, rest // 3))
    return Split(rest - n_val, n_val, lengths)


def holdout_origins(
    panel: Panel, split: Split, window: int, horizon: int, stride: int
) -> np.ndarray:
    lo = np.maximum(split.test_start - 1, window - 1)
    return expand_ranges(panel.offsets, lo, split.lengths - 1 - horizon, stride)


def compare_models(
    panel: Panel,
    split: Split,
    models: Mapping[str, Forecaster | None],
    horizon: int = 12,
    stride: int = 12,
) -> tuple[pd.DataFrame, dict]:
    """MASE/WAPE/MAE (avg over steps and step 1) and interval coverage of every model and of
    Naive and SeasonalNaive on the held-out origins. Returns (table indexed by model, extras
    with the arrays of a few series for plotting)."""
    window = max([m.spec.window for m in models.values() if m is not None] + [1])
    origins = holdout_origins(panel, split, window, horizon, stride)
    if len(origins) == 0:
        raise ValueError("no held-out forecast origins: series are too short for the holdout")
    raw = gather(panel, origins, window, horizon, lags=(seasonal_period(panel.freq_ns),))
    target = raw.target
    ids = panel.ids[raw.series]
    scale = mase_scales(panel, split)
    preds: dict[str, np.ndarray] = baseline_forecasts(raw)
    bands: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for name, model in models.items():
        if model is None:
            continue
        try:
            arrays, _ = model.predict_panel(panel, origins)
        except Exception as exc:  # a champion that no longer fits the data is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        preds[name] = arrays.yhat
        lv = model.levels[0] if model.levels else None
        if lv is not None:
            bands[name] = (arrays.lower[lv], arrays.upper[lv])
            cov, _ = interval_coverage(target, *bands[name])
            rows.setdefault(name, {})[f"coverage_{level_key(lv)}"] = cov
    for name, pred in preds.items():
        s = scores(target, pred, ids, scale)
        rows.setdefault(name, {}).update(
            MASE=s["avg"]["MASE"],
            MASE_step1=s["step1"]["MASE"],
            WAPE=s["avg"]["WAPE"],
            MAE=s["avg"]["MAE"],
            sMAPE=s["avg"]["sMAPE"],
        )
    table = pd.DataFrame.from_dict(rows, orient="index")
    order = [n for n in (*models, *BASELINES) if n in table.index]
    table = table.loc[order]
    table.index.name = "model"
    extras = {
        "origins": origins,
        "target": target,
        "ids": ids,
        "preds": preds,
        "bands": bands,
        "errors": errors,
    }
    return table, extras


@dataclass
class Decision:
    promote: bool
    reason: str
    challenger_mase: float
    champion_mase: float | None
    best_baseline_mase: float
    margin: float

    def as_dict(self) -> dict:
        return asdict(self)


def decide_promotion(
    table: pd.DataFrame,
    margin: float = 0.01,
    champion: str = "champion",
    challenger: str = "challenger",
) -> Decision:
    """Promote the challenger iff it beats both baselines on MASE and, when a champion
    exists, beats the champion's MASE by at least `margin` (relative)."""
    ch = float(table.loc[challenger, "MASE"])
    base = float(min(table.loc["naive", "MASE"], table.loc["seasonal_naive", "MASE"]))
    champ = float(table.loc[champion, "MASE"]) if champion in table.index else None
    if not np.isfinite(ch):
        return Decision(False, "challenger MASE is not finite", ch, champ, base, margin)
    if ch >= base:
        return Decision(
            False,
            f"challenger MASE {ch:.4f} does not beat the best baseline {base:.4f}",
            ch,
            champ,
            base,
            margin,
        )
    if champ is None or not np.isfinite(champ):
        return Decision(
            True,
            f"no comparable champion; challenger MASE {ch:.4f} beats the baselines ({base:.4f})",
            ch,
            champ,
            base,
            margin,
        )
    needed = champ * (1 - margin)
    if ch <= needed:
        return Decision(
            True,
            f"challenger MASE {ch:.4f} beats champion {champ:.4f} by at least "
            f"{margin:.1%} and the baselines ({base:.4f})",
            ch,
            champ,
            base,
            margin,
        )
    return Decision(
        False,
        f"challenger MASE {ch:.4f} does not beat champion {champ:.4f} by "
        f"{margin:.1%} (needs <= {needed:.4f})",
        ch,
        champ,
        base,
        margin,
    )
