"""Retention in SQL (``storage.retention``): old slots deleted in bounded transactions, each
accuracy batch rolled up into the daily table in the transaction that deletes it.

Mixed into ``SqlStore``: it uses the store's engine, tables, dialect and grid codec. A batch
is a run of consecutive slots (``issued_at`` for forecasts, ``target_ts`` for accuracy, both
leading an index) holding at most about ``batch_rows`` rows, counted per slot first; the
delete is a range over that index. The roll-up is one ``INSERT ... SELECT ... GROUP BY``
that adds to existing daily rows (``ON CONFLICT DO UPDATE SET n = n + excluded.n``), so a
day deleted over several runs sums them, and a rolled-back batch adds nothing.
PostgreSQL batches take an advisory lock so two runs never roll up the same rows; in
SQLite the roll-up's INSERT takes the write lock before it reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from storage.retention import (
    DAILY_KEY,
    DAILY_SCHEMA,
    DAILY_SUMS,
    DAY_US,
    plan_batches,
    retention_fault,
)

if TYPE_CHECKING:
    from storage.sqlcodec import TsCodec
    from storage.sqldialect import SqlDialect


class SqlRetention:
    """The retention primitives of ``SqlStore`` (see the module docstring)."""

    engine: sa.Engine
    forecasts: sa.Table
    accuracy: sa.Table
    daily: sa.Table
    dialect: SqlDialect
    _grid: TsCodec

    def _at(self, col: sa.ColumnElement, us: int) -> Any:
        return sa.literal(self._grid.param(us), col.type)

    def _slot_counts(self, col: sa.ColumnElement, cutoff: int) -> list[tuple[int, int]]:
        """(slot, rows) of every slot of ``col`` before ``cutoff``, ascending."""
        stmt = sa.select(col, sa.func.count()).where(col < self._at(col, cutoff)).group_by(col)
        tab = self._fetch(stmt, [("slot", self._grid.fetch_type), ("n", pa.int64())])  # type: ignore[attr-defined]
        slots = self._grid.decode(tab["slot"]).cast(pa.int64()).to_pylist()
        return sorted(zip(slots, tab["n"].to_pylist(), strict=True))

    def _between(self, col: sa.ColumnElement, lo: int, hi: int) -> list:
        return [col >= self._at(col, lo), col <= self._at(col, hi)]

    def _retain_forecasts(self, cutoff: int, batch_rows: int) -> tuple[int, int, int]:
        f = self.forecasts
        rows = batches = 0
        for lo, hi, _ in plan_batches(self._slot_counts(f.c.issued_at, cutoff), batch_rows):
            with self.engine.begin() as conn:
                res = conn.execute(sa.delete(f).where(*self._between(f.c.issued_at, lo, hi)))
                retention_fault("forecasts_deleted")
            rows += int(res.rowcount)
            batches += 1
        return rows, 0, batches

    def _retain_accuracy(self, cutoff: int, batch_rows: int) -> tuple[int, set[int], int, int]:
        a = self.accuracy
        counts = self._slot_counts(a.c.target_ts, cutoff)
        rows = batches = 0
        days: set[int] = set()
        for lo, hi, _ in plan_batches(counts, batch_rows):
            where = self._between(a.c.target_ts, lo, hi)
            with self.engine.begin() as conn:
                self.dialect.lock_retention(conn)
                conn.execute(self._rollup(where))
                retention_fault("aggregated")
                res = conn.execute(sa.delete(a).where(*where))
                retention_fault("accuracy_deleted")
            rows += int(res.rowcount)
            batches += 1
            days |= {s - s % DAY_US for s, _ in counts if lo <= s <= hi}
        return rows, days, 0, batches

    def _rollup(self, where: list) -> Any:
        """Add the accuracy rows matching ``where`` to the daily table."""
        a, d = self.accuracy, self.daily
        day = self.dialect.day_of(a.c.target_ts)
        groups = [day, a.c.model_version, a.c.step, a.c.level]
        sel = (
            sa.select(
                *groups,
                sa.func.count(),
                sa.func.sum(a.c.abs_error),
                sa.func.sum(sa.func.abs(a.c.y)),
                sa.func.sum(sa.case((a.c.covered, 1), else_=0)),
            )
            .where(*where)
            .group_by(*groups)
        )
        ins = self.dialect.insert(d).from_select([c.name for c in d.columns], sel)
        return self.dialect.upsert_add(ins, d, DAILY_KEY, DAILY_SUMS)

    def _read_daily(self, lo: int | None, hi: int | None) -> pa.Table:
        d = self.daily
        where = []
        if lo is not None:
            where.append(d.c.day >= self._at(d.c.day, lo))
        if hi is not None:
            where.append(d.c.day <= self._at(d.c.day, hi))
        return self._read_table(d, DAILY_SCHEMA, where)  # type: ignore[attr-defined]
