"""Breach alerts in SQL (``storage.alerts``): the four primitives of ``SqlStore``.

The alerts table is small (one row per alert, not per slot), so writes are a plain
``executemany`` of the dialect's upsert on ``(series_id, direction, started_at)`` in one
transaction; reads go through the store's Arrow fetch. The scored rows the detector reads
are one step's: a range of the accuracy table's primary key (``issued_at = target_ts -
step``), not of its ``target_ts`` index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from storage.alerts import BREACH_COLUMNS
from storage.breaches import OPEN, RESOLVED
from storage.columns import ACCURACY_SCHEMA, ALERT_KEY, ALERT_SCHEMA, TS_TYPE

if TYPE_CHECKING:
    from storage.sqlcodec import TsCodec
    from storage.sqldialect import SqlDialect

BREACH_SCHEMA = pa.schema([ACCURACY_SCHEMA.field(c) for c in BREACH_COLUMNS])


class SqlAlerts:
    """The alert primitives of ``SqlStore`` (see the module docstring)."""

    engine: sa.Engine
    accuracy: sa.Table
    alerts: sa.Table
    dialect: SqlDialect
    _grid: TsCodec
    _freq_us: int

    def _read_breach_rows(self, lo: int, hi: int, step: int) -> pa.Table:
        a = self.accuracy
        # the step's forecasts were issued `step` slots before their targets: a range of
        # the primary key (issued_at leads it) instead of the target index plus a lookup
        # per row (SQLite: 1.1 s instead of 7 s at 100,000 series)
        back = step * self._freq_us
        where = self._where(a, None, lo, hi) + [  # type: ignore[attr-defined]
            a.c.issued_at >= sa.literal(self._grid.param(lo - back), a.c.issued_at.type),
            a.c.issued_at <= sa.literal(self._grid.param(hi - back), a.c.issued_at.type),
            a.c.step == step,
        ]
        return self._read_table(a, BREACH_SCHEMA, where)  # type: ignore[attr-defined]

    def _read_alert_rows(
        self, open_only: bool, ids: list[str] | None, since: int | None
    ) -> pa.Table:
        t = self.alerts
        where: list[Any] = []
        if open_only:
            where.append(t.c.status == OPEN)
        if ids is not None:
            where.append(self.dialect.in_ids(t.c.series_id, ids) if ids else sa.false())
        if since is not None:
            at = sa.literal(self._grid.param(since), t.c.resolved_at.type)
            where.append(sa.or_(t.c.status == OPEN, t.c.resolved_at >= at))
        return self._read_table(t, ALERT_SCHEMA, where)  # type: ignore[attr-defined]

    def _write_alerts(self, tab: pa.Table) -> int:
        t = self.alerts
        times = [f.name for f in ALERT_SCHEMA if f.type == TS_TYPE]
        for c in times:
            tab = tab.set_column(tab.schema.get_field_index(c), c, tab[c].cast(pa.int64()))
        rows = tab.to_pylist()
        for row in rows:
            for c in times:
                row[c] = None if row[c] is None else self._grid.param(row[c])
        cols = list(ALERT_SCHEMA.names)
        stmt = self.dialect.upsert(self.dialect.insert(t), t, ALERT_KEY, cols)
        with self.engine.begin() as conn, self._write_errors(t, len(rows), ALERT_KEY):  # type: ignore[attr-defined]
            conn.execute(stmt, rows)
        return len(rows)

    def _retain_alerts(self, cutoff: int) -> int:
        t = self.alerts
        at = sa.literal(self._grid.param(cutoff), t.c.resolved_at.type)
        with self.engine.begin() as conn:
            res = conn.execute(sa.delete(t).where(t.c.status == RESOLVED, t.c.resolved_at < at))
        return int(res.rowcount)
