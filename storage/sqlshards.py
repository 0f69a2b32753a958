"""What a sharded write needs of ``SqlStore``: which series each slot holds, and deleting
one shard's rows of some slots (the other shards' rows stay)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import sqlalchemy as sa

from storage.shards import Shard

if TYPE_CHECKING:
    from storage.sqlcodec import TsCodec
    from storage.sqldialect import SqlDialect


class SqlShards:
    """Mixed into ``SqlStore`` (which provides these attributes)."""

    forecasts: sa.Table
    dialect: SqlDialect
    engine: sa.Engine
    _grid: TsCodec

    def _issued_in(self, owned: list[int]) -> sa.ColumnElement:
        col = self.forecasts.c.issued_at
        return sa.or_(*[col == sa.literal(self._grid.param(us), col.type) for us in owned])

    def _slot_series(self, owned: list[int]) -> pa.Table:
        f = self.forecasts
        stmt = sa.select(f.c.issued_at, f.c.series_id).where(self._issued_in(owned)).distinct()
        fields = [("issued_at", self._grid.fetch_type), ("series_id", pa.string())]
        with self.engine.connect() as conn:
            tab = self.dialect.fetch(conn, stmt, fields)
        return tab.set_column(0, "issued_at", self._grid.decode(tab["issued_at"]).cast(pa.int64()))

    def _shard_ids(self, owned: list[int], shard: Shard, tab: pa.Table) -> list[str]:
        """The series whose rows of ``owned`` a write of ``shard`` replaces: those stored
        there that the shard owns (read before the write's transaction: only the shard
        itself writes them), and those ``tab`` writes."""
        stored = shard.filter(self._slot_series(owned))["series_id"]
        return sorted(set(stored.to_pylist()) | set(tab["series_id"].to_pylist()))

    def _delete_shard(self, conn: sa.Connection, owned: list[int], ids: list[str] | None) -> None:
        """Inside the caller's transaction: delete the rows issued at ``owned`` (of ``ids``
        only, unless None)."""
        f = self.forecasts
        issued = f.c.issued_at.in_([self._grid.param(us) for us in owned])
        if ids is None:
            conn.execute(sa.delete(f).where(issued))
        elif ids:
            conn.execute(sa.delete(f).where(issued, self.dialect.in_ids(f.c.series_id, ids)))
