"""What shards need of ``SqlStore``: reading only one shard's metrics rows (its series ids
found in the window, hashed here, then only their rows fetched, in one snapshot), which
series each slot holds, and deleting one shard's rows of some slots (the other shards'
rows stay)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from storage.columns import SERIES_ID, TS, ColumnMap
from storage.shards import Shard
from storage.sqlschema import metrics_window

if TYPE_CHECKING:
    from storage.base import Range
    from storage.sqlcodec import TsCodec
    from storage.sqldialect import SqlDialect
    from storage.sqlschema import MetricsLayout

#: The most bytes of ids one ``IN`` list may hold, per dialect: MySQL/MariaDB interpolate
#: the list into the statement, which must fit ``max_allowed_packet`` (16 MiB by
#: default); PostgreSQL (one array) and SQLite (one JSON text) take any length.
IN_LIST_BYTES: dict[str, int] = {"mysql": 4 << 20}


class SqlShards:
    """Mixed into ``SqlStore`` (which provides these attributes)."""

    forecasts: sa.Table
    dialect: SqlDialect
    engine: sa.Engine
    _grid: TsCodec

    columns: ColumnMap

    if TYPE_CHECKING:

        def _metrics_layout(self) -> MetricsLayout: ...
        def _id_expr(self, layout: MetricsLayout) -> sa.ColumnElement: ...

    def _read_shard_metrics(self, ranges: list[Range], shard: Shard) -> pa.Table:
        """Only the shard's rows cross the wire: the window's distinct series ids first (one
        column), hashed here, then the rows of the ids the shard owns. Both statements
        read one snapshot (``_snapshot``), so the result is what one read of the whole
        window filtered by the shard would have been at that instant."""
        layout = self._metrics_layout()
        idx = self._id_expr(layout)
        stmt, window, fields = metrics_window(layout, self.columns, idx, ranges)
        exact = self._exact_text(idx)  # 'a', 'A' and 'a ' stay three ids in any table
        with self._snapshot() as conn:
            seen = conn.execute(sa.select(exact).where(window).distinct()).scalars().all()
            owned = shard.select(str(s) for s in seen if s is not None)
            parts = [
                self.dialect.fetch(conn, stmt.where(self.dialect.in_ids(exact, chunk)), fields)
                for chunk in id_chunks(owned, IN_LIST_BYTES.get(self.dialect.name))
            ]
        tab = metrics_rows(layout, parts, fields)
        # exactly the owned ids, whatever the database's comparison did
        return tab.filter(pc.is_in(tab[SERIES_ID], value_set=pa.array(owned, pa.string())))

    def _exact_text(self, col: sa.ColumnElement) -> sa.ColumnElement:
        """``col`` compared and grouped byte for byte: a user's metrics table may have a
        case- or pad-insensitive collation, where ``DISTINCT`` and ``IN`` would merge ids
        the hash tells apart (``C`` on PostgreSQL, ``BINARY`` on SQLite, MySQL/MariaDB:
        utf8mb4 with the no-pad binary collation the store's own tables use)."""
        name = self.dialect.name
        if name == "postgresql":
            return col.collate("C")
        if name == "sqlite":
            return col.collate("BINARY")
        if name == "mysql":
            collation = getattr(self.dialect, "collation", "utf8mb4_bin")
            return sa.cast(col, mysql.CHAR(charset="utf8mb4")).collate(collation)
        return col

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sa.Connection]:
        """A connection whose statements all read one snapshot of the database: a
        REPEATABLE READ transaction (PostgreSQL, MySQL/MariaDB InnoDB), a read
        transaction (SQLite in WAL mode). It ends with the connection (nothing written).
        (PostgreSQL's fetch ends the transaction: it must be the last statement.)"""
        with self.engine.connect() as conn:
            if self.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for a SELECT
            else:
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

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
        only, unless None; in ``IN`` lists the dialect accepts)."""
        f = self.forecasts
        issued = f.c.issued_at.in_([self._grid.param(us) for us in owned])
        if ids is None:
            conn.execute(sa.delete(f).where(issued))
            return
        for chunk in id_chunks(ids, IN_LIST_BYTES.get(self.dialect.name)):
            conn.execute(sa.delete(f).where(issued, self.dialect.in_ids(f.c.series_id, chunk)))


def id_chunks(ids: list[str], max_bytes: int | None) -> Iterator[list[str]]:
    """``ids`` in consecutive lists of at most ``max_bytes`` of UTF-8 text (with quoting
    room; an id longer than that alone); one list when unbounded; nothing for no ids."""
    if not ids:
        return
    if max_bytes is None:
        yield ids
        return
    chunk: list[str] = []
    size = 0
    for s in ids:
        n = 2 * len(s.encode("utf-8")) + 4  # every byte escaped, quotes and a comma
        if chunk and size + n > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(s)
        size += n
    yield chunk


def metrics_rows(
    layout: MetricsLayout, parts: list[pa.Table], fields: list[tuple[str, pa.DataType]]
) -> pa.Table:
    """Fetched metrics rows as one table with canonical timestamps."""
    tab = pa.concat_tables(parts) if parts else pa.schema(fields).empty_table()
    return tab.set_column(1, TS, layout.codec.decode(tab[TS]))
