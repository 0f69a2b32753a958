"""The recent scored forecasts of one model version, for live recalibration (issue 14).

``Store.read_scores`` returns, in one query, what the predict run's recalibration reads:
the accuracy rows of one model version whose target lies in a bounded window, only the
columns it needs. With ``per_step=N`` only the N most recent rows of every (step, level)
come back, "most recent" in one order every store shares: target_ts, then series_id by
its bytes (SQL: ``ROW_NUMBER()`` in the database, PostgreSQL with ``COLLATE "C"``, the
MySQL family's key columns are binary already), so the rows every store returns are the
same and the database, not the driver, drops the rest (at 10,000 series one target slot
holds 10,000 scores per step; the window needs 2,000). ``read_newest_scores`` reads that
cut for one target slot the cheap way: a step's forecasts of one target share one
issued_at, so each (step, level) is one primary-key walk in series_id order that stops
after N rows (a UNION ALL of them, one round trip): the steady-state read.
Rows of tables written before ``interval_scale`` existed read as 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from storage.columns import TS_TYPE
from storage.errors import ConfigError

#: The columns ``read_scores`` returns.
SCORE_SCHEMA = pa.schema(
    [
        ("target_ts", TS_TYPE),
        ("series_id", pa.string()),
        ("step", pa.int64()),
        ("level", pa.float64()),
        ("y", pa.float64()),
        ("yhat", pa.float64()),
        ("yhat_lower", pa.float64()),
        ("yhat_upper", pa.float64()),
        ("interval_scale", pa.float64()),
    ]
)


class ScoresMixin:
    """``read_scores`` for every store; backends may override ``_read_scores``."""

    def read_scores(
        self,
        model_version: str,
        start: object,
        end: object,
        *,
        per_step: int | None = None,
    ) -> pd.DataFrame:
        """Scored rows of ``model_version`` with start <= target_ts <= end (both required:
        the read is bounded); with ``per_step``, only the most recent that many of each (step, level). Columns
        :data:`SCORE_SCHEMA`, sorted by target_ts, series_id (bytes), step."""
        if not isinstance(model_version, str) or not model_version:
            raise ConfigError(f"model_version must be a non-empty string, got {model_version!r}")
        if start is None or end is None:
            raise ConfigError("read_scores needs both start and end (a bounded window)")
        if per_step is not None and (
            isinstance(per_step, bool) or not isinstance(per_step, int) or per_step < 1
        ):
            raise ConfigError(f"per_step must be a positive integer or None, got {per_step!r}")
        lo, hi = self._bounds(start, end)  # type: ignore[attr-defined]
        tab = self._read_scores(model_version, lo, hi, per_step)
        return sort_scores(tab).to_pandas()

    def read_newest_scores(
        self,
        model_version: str,
        target: object,
        steps: Sequence[int],
        levels: Sequence[float],
        n: int,
    ) -> pd.DataFrame:
        """The newest `n` scores of each (step, level) among those of one target slot:
        ``read_scores(version, target, target, per_step=n)`` restricted to `steps` and
        `levels`, read the cheap way (per step its forecasts share one issued_at, so the
        databases walk their primary key in series_id order and stop after `n`). Where a
        step and level has `n` there, they are also its newest `n` over any longer window."""
        if not isinstance(model_version, str) or not model_version:
            raise ConfigError(f"model_version must be a non-empty string, got {model_version!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        hi = self._ts_arg(target, "target")  # type: ignore[attr-defined]
        if hi is None:
            raise ConfigError("read_newest_scores needs a target slot")
        if not steps or not levels:
            return SCORE_SCHEMA.empty_table().to_pandas()
        tab = self._read_newest(
            model_version, hi, [int(h) for h in steps], [float(v) for v in levels], n
        )
        return sort_scores(tab).to_pandas()

    def _read_newest(
        self, model_version: str, hi: int, steps: list[int], levels: list[float], n: int
    ) -> pa.Table:
        tab = self._read_scores(model_version, hi, hi, n)
        keep = pc.and_(
            pc.is_in(tab["step"], pa.array(steps, pa.int64())),
            pc.is_in(tab["level"], pa.array(levels, pa.float64())),
        )
        return tab.filter(keep)

    def _read_scores(self, model_version: str, lo: int, hi: int, per_step: int | None) -> pa.Table:
        rows: pa.Table = self._read_accuracy_rows(lo, hi, None)  # type: ignore[attr-defined]
        rows = (
            rows.filter(pc.equal(rows["model_version"], model_version))
            .select(SCORE_SCHEMA.names)
            .cast(SCORE_SCHEMA)
        )
        return rows if per_step is None else newest(rows, per_step)


class SqlScoresMixin(ScoresMixin):
    """The SQL stores' read: one SELECT of the needed columns, filtered (and with
    ``per_step`` cut to the most recent rows of each step and level) in the database."""

    def _read_scores(self, model_version: str, lo: int, hi: int, per_step: int | None) -> pa.Table:
        a: Any = self.accuracy  # type: ignore[attr-defined]
        where = self._where(a, None, lo, hi)  # type: ignore[attr-defined]
        where.append(a.c.model_version == sa.literal(model_version, a.c.model_version.type))
        if per_step is None:
            return self._read_table(a, SCORE_SCHEMA, where)  # type: ignore[attr-defined]
        dialect: Any = self.dialect  # type: ignore[attr-defined]
        rank = (
            sa.func.row_number()
            .over(
                partition_by=[a.c.step, a.c.level],
                order_by=[a.c.target_ts.desc(), dialect.byte_order(a.c.series_id).desc()],
            )
            .label("rank_")
        )
        ranked = sa.select(*[a.c[n] for n in SCORE_SCHEMA.names], rank).where(*where).subquery()
        return self._read_table(ranked, SCORE_SCHEMA, [ranked.c.rank_ <= per_step])  # type: ignore[attr-defined]

    def _read_newest(
        self, model_version: str, hi: int, steps: list[int], levels: list[float], n: int
    ) -> pa.Table:
        a: Any = self.accuracy  # type: ignore[attr-defined]
        grid: Any = self._grid  # type: ignore[attr-defined]
        dialect: Any = self.dialect  # type: ignore[attr-defined]
        freq: int = self._freq_us  # type: ignore[attr-defined]
        version = sa.literal(model_version, a.c.model_version.type)
        parts = []
        for h in steps:
            issued = sa.literal(grid.param(hi - h * freq), a.c.issued_at.type)
            for lv in levels:
                q = (
                    sa.select(*[a.c[c] for c in SCORE_SCHEMA.names])
                    .where(
                        a.c.issued_at == issued,
                        a.c.step == h,
                        a.c.level == lv,
                        a.c.model_version == version,
                    )
                    .order_by(dialect.byte_order(a.c.series_id).desc())
                    .limit(n)
                )
                parts.append(q.subquery().select())
        union = sa.union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
        return self._read_table(union, SCORE_SCHEMA, [])  # type: ignore[attr-defined]


def sort_scores(tab: pa.Table) -> pa.Table:
    """Scored rows in the order every store and the predict run share: target_ts, then
    series_id by its bytes (Arrow compares strings by their UTF-8 bytes, Python's str
    order), then step."""
    if tab.num_rows <= 1:
        return tab
    keys = [("target_ts", "ascending"), ("series_id", "ascending"), ("step", "ascending")]
    return tab.sort_by(keys)


def newest(tab: pa.Table, n: int) -> pa.Table:
    """The newest `n` rows of each (step, level): by target_ts, then series_id bytes."""
    if tab.num_rows == 0:
        return tab
    tab = tab.sort_by(
        [
            ("step", "ascending"),
            ("level", "ascending"),
            ("target_ts", "descending"),
            ("series_id", "descending"),
        ]
    )
    step = tab["step"].to_numpy()
    level = tab["level"].to_numpy()
    start = np.flatnonzero(np.r_[True, (step[1:] != step[:-1]) | (level[1:] != level[:-1])])
    rank = np.arange(len(step)) - np.repeat(start, np.diff(np.r_[start, len(step)]))
    return tab.filter(pa.array(rank < n))
