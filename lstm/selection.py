"""Feature selection by Random-Forest importance over the candidate features.

Candidates are the calendar features, the exogenous columns and the seasonal lags. The
forest predicts the next slot's scaled target from each candidate's value for that slot
(calendar of the target slot, lag values, the last observed exogenous values); the top-k
by impurity importance are kept and the choice is recorded in the model metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lstm.features import FeatureScaler, FeatureSpec, TargetScaler, encode, lag_name
from lstm.panel import ColumnNames, Panel, regularize
from lstm.windows import gather, protocol_split, train_origins


@dataclass
class FeatureSelection:
    importances: pd.Series  # candidate -> importance, sorted descending
    selected: list[str]
    top_k: int | None

    def apply(self, spec: FeatureSpec) -> FeatureSpec:
        """The spec restricted to the selected candidates."""
        keep = set(self.selected)
        return replace(
            spec,
            calendar=tuple(c for c in spec.calendar if c in keep),
            exog=tuple(c for c in spec.exog if c in keep),
            lags=tuple(lag for lag in spec.lags if lag_name(lag) in keep),
        )

    def to_dict(self) -> dict:
        return {
            "method": "random_forest_importance",
            "top_k": self.top_k,
            "selected": list(self.selected),
            "importances": {k: round(float(v), 6) for k, v in self.importances.items()},
        }


def select_features_lstm(
    df: pd.DataFrame | Panel,
    n_estimators: int = 50,
    max_depth: int = 5,
    *,
    origins: np.ndarray | None = None,
    spec: FeatureSpec | None = None,
    top_k: int | None = None,
    sample: int = 20_000,
    seed: int = 42,
    freq: str = "5min",
) -> FeatureSelection:
    """Rank candidate features with a Random Forest and keep the `top_k` best (all if None).

    `df` is a long metrics frame (regularised here) or a Panel; `origins` restricts the
    sample to training windows (default: the protocol's train part).
    """
    from sklearn.ensemble import RandomForestRegressor

    panel = df if isinstance(df, Panel) else regularize(df, freq, ColumnNames())[0]
    spec = spec or FeatureSpec(freq_ns=panel.freq_ns, exog=tuple(panel.exog_names))
    spec = replace(spec, use_level=False)
    if origins is None:
        origins = train_origins(panel, protocol_split(panel), spec.window, spec.horizon)
    rng = np.random.default_rng(seed)
    if len(origins) > sample:
        origins = np.sort(rng.choice(origins, size=sample, replace=False))
    exog_idx = [panel.exog_names.index(c) for c in spec.exog]
    raw = gather(panel, origins, spec.window, spec.horizon, spec.lags)
    fs = FeatureScaler().fit(
        spec.exog, raw.exog[:, -1, :].reshape(-1, len(spec.exog)) if spec.exog else np.zeros((1, 0))
    )
    enc = encode(raw, spec, TargetScaler(), fs, exog_idx)
    n_lags, n_cal = len(spec.lags), len(spec.calendar)
    columns, names = [], []
    for j, lag in enumerate(spec.lags):
        columns.append(enc.fut[:, 0, j])
        names.append(lag_name(lag))
    for j, cal in enumerate(spec.calendar):
        columns.append(enc.fut[:, 0, n_lags + j])
        names.append(cal)
    for j, ex in enumerate(spec.exog):
        columns.append(enc.x[:, -1, 1 + n_cal + j])
        names.append(ex)
    if not names:
        return FeatureSelection(pd.Series(dtype=float), [], top_k)
    X = np.stack(columns, axis=1)
    y = enc.z_target[:, 0]
    rf = RandomForestRegressor(
        n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=1
    )
    rf.fit(X, y)
    importances = pd.Series(rf.feature_importances_, index=names).sort_values(ascending=False)
    k = len(names) if top_k is None else max(0, min(top_k, len(names)))
    return FeatureSelection(importances, list(importances.index[:k]), top_k)
