"""The recent scored forecasts of one model version, for live recalibration (issue 14).

``Store.read_scores`` returns, in one query, what the predict run's recalibration reads
each run: the accuracy rows of one model version whose target lies in a bounded window,
only the columns it needs (no series ids: the calibration is pooled over the fleet).
Rows of tables written before ``interval_scale`` existed read as 1.0.
"""

from __future__ import annotations

from typing import Any

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

    def read_scores(self, model_version: str, start: object, end: object) -> pd.DataFrame:
        """Scored rows of ``model_version`` with start <= target_ts <= end (both required:
        the read is bounded), columns :data:`SCORE_SCHEMA`, sorted by target_ts."""
        if not isinstance(model_version, str) or not model_version:
            raise ConfigError(f"model_version must be a non-empty string, got {model_version!r}")
        if start is None or end is None:
            raise ConfigError("read_scores needs both start and end (a bounded window)")
        lo, hi = self._bounds(start, end)  # type: ignore[attr-defined]
        tab = self._read_scores(model_version, lo, hi)
        if tab.num_rows > 1:
            tab = tab.sort_by([("target_ts", "ascending")])
        return tab.to_pandas()

    def _read_scores(self, model_version: str, lo: int, hi: int) -> pa.Table:
        rows: pa.Table = self._read_accuracy_rows(lo, hi, None)  # type: ignore[attr-defined]
        rows = rows.filter(pc.equal(rows["model_version"], model_version))
        return rows.select(SCORE_SCHEMA.names).cast(SCORE_SCHEMA)


class SqlScoresMixin(ScoresMixin):
    """The SQL stores' read: one SELECT of the needed columns, filtered in the database."""

    def _read_scores(self, model_version: str, lo: int, hi: int) -> pa.Table:
        a: Any = self.accuracy  # type: ignore[attr-defined]
        where = self._where(a, None, lo, hi)  # type: ignore[attr-defined]
        where.append(a.c.model_version == sa.literal(model_version, a.c.model_version.type))
        return self._read_table(a, SCORE_SCHEMA, where)  # type: ignore[attr-defined]
