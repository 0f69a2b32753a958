"""The recent scored forecasts of one model version, for live recalibration (issue 14).

``Store.read_scores`` returns, in one query, what the predict run's recalibration reads:
the accuracy rows of one model version whose target lies in a bounded window, only the
columns it needs. With ``per_step=N`` only the N most recent rows of every (step, level)
come back, "most recent" in one order every store shares: target_ts, then series_id by
its bytes (SQL: ``ROW_NUMBER()`` in the database, PostgreSQL with ``COLLATE "C"``, the
MySQL family's key columns are binary already), so the rows every store returns are the
same and the database, not the driver, drops the rest (at 10,000 series one target slot
holds 10,000 scores per step; the window needs 2,000).
Rows of tables written before ``interval_scale`` existed read as 1.0.
"""

from __future__ import annotations

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
        return sort_scores(tab.to_pandas())

    def _read_scores(self, model_version: str, lo: int, hi: int, per_step: int | None) -> pa.Table:
        rows: pa.Table = self._read_accuracy_rows(lo, hi, None)  # type: ignore[attr-defined]
        rows = (
            rows.filter(pc.equal(rows["model_version"], model_version))
            .select(SCORE_SCHEMA.names)
            .cast(SCORE_SCHEMA)
        )
        if per_step is None or rows.num_rows == 0:
            return rows
        frame = sort_scores(rows.to_pandas())
        frame = frame.groupby(["step", "level"], sort=False).tail(per_step)
        return pa.Table.from_pandas(frame, schema=SCORE_SCHEMA, preserve_index=False)


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


def sort_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Scored rows in the order every store and the predict run share: target_ts, then
    series_id by its bytes (Python's str order is code-point order, the same as UTF-8
    byte order), then step."""
    if len(frame) <= 1:
        return frame.reset_index(drop=True)
    ids = frame["series_id"].to_numpy(dtype=object)
    order = np.lexsort(
        (
            frame["step"].to_numpy(),
            pd.factorize(ids, sort=True)[0],
            frame["target_ts"].to_numpy(),
        )
    )
    return frame.iloc[order].reset_index(drop=True)
