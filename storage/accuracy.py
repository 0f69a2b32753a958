"""Scoring and the accuracy summary in Arrow/pandas (backends without SQL aggregation)."""

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
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out["wape_pct"] = np.where(
            out["_sum_y"] > 0, 100.0 * out["_sum_err"] / out["_sum_y"], np.nan
        )
    out = out.reset_index(drop=not by)
    return out[cols]
