"""Scoring and the accuracy summary in Arrow/pandas (backends without SQL aggregation).

Besides n, MAE, WAPE and coverage: ``interval_score``, the mean interval (Winkler) score of
the intervals as written (M4: width + 2 / alpha x how far the actual falls outside, alpha
= 1 - level; lower is better), and ``sis_pct``, its sum over the sum of |y| in % (scaled
like WAPE: the in-sample naive MAE that M4's MSIS divides by is not in the accuracy rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage.columns import ACCURACY_SUMMARY, FORECAST_SCHEMA, SERIES_ID, TS, VALUE
from storage.validate import score_table


def score_joined(fc: pa.Table, actual: pa.Table, scored_at: int) -> pa.Table | None:
    """Accuracy rows of forecasts ``fc`` joined to their ``actual`` metrics (series_id, ts,
    value); None when no forecast has a finite actual."""
    joined = fc.join(
        actual, keys=["series_id", "target_ts"], right_keys=[SERIES_ID, TS], join_type="inner"
    )
    joined = joined.filter(pc.is_finite(joined[VALUE]))
    if joined.num_rows == 0:
        return None
    return score_table(joined.select(FORECAST_SCHEMA.names), joined[VALUE].to_numpy(), scored_at)


def interval_scores(rows: pd.DataFrame) -> np.ndarray:
    """The interval score of each accuracy row (see the module docstring)."""
    y, lo, hi = (rows[c].to_numpy(dtype="float64") for c in ("y", "yhat_lower", "yhat_upper"))
    alpha = 1.0 - rows["level"].to_numpy(dtype="float64")
    outside = np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0)
    return (hi - lo) + 2.0 / alpha * outside


def summarize_accuracy(rows: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """n, MAE, WAPE % and coverage % of accuracy rows, grouped by ``by``."""
    cols = [*by, *ACCURACY_SUMMARY]
    if rows.empty:
        empty = pd.DataFrame({c: pd.Series([], dtype="float64") for c in cols})
        for b in by:
            empty[b] = pd.Series([], dtype=rows[b].dtype if b in rows else "object")
        empty["n"] = empty["n"].astype("int64")
        return empty[cols]
    work = pd.DataFrame(
        {
            **{b: rows[b] for b in by},
            "_err": rows["abs_error"].astype("float64"),
            "_absy": rows["y"].abs().astype("float64"),
            "_cov": rows["covered"].astype("float64"),
            "_is": interval_scores(rows),
        }
    )
    if not by:
        work["_all"] = 0
    g = work.groupby(list(by) or ["_all"], sort=True)
    out = pd.DataFrame(
        {
            "n": g["_err"].size().astype("int64"),
            "mae": g["_err"].mean(),
            "_sum_err": g["_err"].sum(),
            "_sum_y": g["_absy"].sum(),
            "coverage_pct": 100.0 * g["_cov"].mean(),
            "interval_score": g["_is"].mean(),
            "_sum_is": g["_is"].sum(),
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = out["_sum_y"] > 0
        out["wape_pct"] = np.where(positive, 100.0 * out["_sum_err"] / out["_sum_y"], np.nan)
        out["sis_pct"] = np.where(positive, 100.0 * out["_sum_is"] / out["_sum_y"], np.nan)
    out = out.reset_index(drop=not by)
    return out[cols]
