"""Accuracy in SQL: scoring forecasts against actuals, and the summary as one aggregate (MAE, WAPE, interval coverage per group).

Kept apart from ``storage.sql`` so the statement and the typing of its result can be read,
and tested, without a store: ``summary_select`` builds the SELECT, ``summary_frame`` gives
its rows the same dtypes on every database (PostgreSQL returns ``Decimal`` for ``avg``).
``score_select`` is the join of forecasts to their actuals that scoring upserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from storage.columns import ACCURACY_SUMMARY, ColumnMap


def interval_score_sql(a: sa.Table) -> sa.ColumnElement:
    """The interval (Winkler) score of a row, as in the M4 competition: width + 2 / alpha x
    how far the actual falls outside, alpha = 1 - level (``storage.accuracy``)."""
    below = sa.case((a.c.y < a.c.yhat_lower, a.c.yhat_lower - a.c.y), else_=0.0)
    above = sa.case((a.c.y > a.c.yhat_upper, a.c.y - a.c.yhat_upper), else_=0.0)
    return (a.c.yhat_upper - a.c.yhat_lower) + 2.0 / (1.0 - a.c.level) * (below + above)


def summary_select(a: sa.Table, by: Sequence[str], where: list) -> sa.Select:
    """``SELECT by..., n, mae, wape_pct, coverage_pct, interval_score, sis_pct FROM accuracy
    WHERE ... GROUP BY by``."""
    groups = [a.c[b] for b in by]
    covered = sa.case((a.c.covered, 1.0), else_=0.0)
    score = interval_score_sql(a)
    abs_y = sa.func.nullif(sa.func.sum(sa.func.abs(a.c.y)), 0)
    stmt = sa.select(
        *groups,
        sa.func.count().label("n"),
        sa.func.avg(a.c.abs_error).label("mae"),
        (
            100.0 * sa.func.sum(a.c.abs_error) / sa.func.nullif(sa.func.sum(sa.func.abs(a.c.y)), 0)
        ).label("wape_pct"),
        (100.0 * sa.func.avg(covered)).label("coverage_pct"),
        sa.func.avg(score).label("interval_score"),
        (100.0 * sa.func.sum(score) / abs_y).label("sis_pct"),
    ).where(*where)
    if groups:
        return stmt.group_by(*groups)
    return stmt.having(sa.func.count() > 0)  # no rows at all: an empty frame, not one NULL row


def summary_frame(rows: Sequence[Sequence], by: Sequence[str]) -> pd.DataFrame:
    """The summary rows as a frame with fixed dtypes, whichever database returned them."""
    out = pd.DataFrame([tuple(r) for r in rows], columns=[*by, *ACCURACY_SUMMARY])
    out["n"] = out["n"].astype("int64")
    floats = ("mae", "wape_pct", "coverage_pct", "interval_score", "sis_pct")
    for c in (*floats, *(["level"] if "level" in by else [])):
        out[c] = out[c].astype("float64")
    if "step" in by:
        out["step"] = out["step"].astype("int64")
    for c in ("series_id", "model_version"):
        if c in by:
            out[c] = out[c].astype("str")
    return out


def score_select(
    f: sa.Table,
    m: sa.Table,
    metrics_id: sa.ColumnElement,
    cm: ColumnMap,
    bounds: tuple[Any, Any],
    scored_at: sa.ColumnElement,
) -> sa.Select:
    """The accuracy rows of forecasts ``f`` with ``lo < target_ts <= hi`` (``bounds`` as
    bound-parameter values) joined to their actuals in metrics table ``m``, in the accuracy
    table's column order."""
    y = m.c[cm.target_col]
    lo, hi = bounds
    return (
        sa.select(
            f.c.series_id,
            f.c.issued_at,
            f.c.step,
            f.c.target_ts,
            f.c.model_version,
            y,
            f.c.yhat,
            f.c.yhat_lower,
            f.c.yhat_upper,
            f.c.level,
            sa.func.abs(y - f.c.yhat),
            sa.and_(y >= f.c.yhat_lower, y <= f.c.yhat_upper),
            scored_at,
            f.c.interval_scale,
        )
        .select_from(
            f.join(m, sa.and_(metrics_id == f.c.series_id, m.c[cm.time_col] == f.c.target_ts))
        )
        .where(
            f.c.target_ts > sa.literal(lo, f.c.target_ts.type),
            f.c.target_ts <= sa.literal(hi, f.c.target_ts.type),
            y.is_not(None),
        )
    )
