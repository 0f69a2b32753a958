"""SQLite through the standard library's ``sqlite3``: ``executemany`` writes, tuples
fetched straight into Arrow (see ``storage.sqldialect`` for the interface)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from storage.errors import NonNumericValueWarning, StorageConnectionError
from storage.sqlcodec import SQLITE_FINE, SQLITE_GRID, TsCodec, detect_sqlite_codec
from storage.sqldialect import Fault, Fields, SqlDialect

if TYPE_CHECKING:
    from storage.sqlschema import MetricsLayout


#: Rows per executemany batch (SQLite) between fault-injection points.
CHUNK_ROWS = 50_000
#: Rows fetched per call when reading from SQLite.
FETCH_ROWS = 100_000


class SqliteDialect(SqlDialect):
    """SQLite through the standard library's ``sqlite3`` (WAL journal)."""

    name = "sqlite"
    backend = "sqlite"
    drivers = (None, "pysqlite")
    url_form = "sqlite:///path.db (relative) or sqlite:////absolute/path.db"
    needs = "the sqlite3 module"
    grid = SQLITE_GRID
    fine = SQLITE_FINE
    table_kwargs = {"sqlite_with_rowid": False}
    bool_fetch_type = pa.int64()  # SQLite stores booleans as 0/1

    def _file(self) -> str | None:
        db = self.url.database
        if not db or db == ":memory:" or db.startswith("file:"):
            return None
        return os.path.abspath(db)

    def open_url(self) -> sa.engine.URL:
        path = self._file()
        if path is None:
            return self.url
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise StorageConnectionError(
                f"cannot open SQLite database {self.url.database!r}: cannot create folder "
                f"{parent!r}: {exc.strerror}"
            ) from None
        return self.url

    def connect_args(self) -> dict[str, Any]:
        return {"timeout": 30}

    def on_connect(self, dbapi_conn: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    def connection_error(self, exc: BaseException) -> StorageConnectionError:
        return StorageConnectionError(
            f"cannot open SQLite database {self.url.database!r}: {self.detail(exc)}"
        )

    def ts_type(self) -> sa.types.TypeEngine:
        return sa.Text()

    def time_codec(self, conn: sa.Connection, table: sa.Table, column: str) -> TsCodec:
        q = self.quote
        # the raw driver value: no SQLAlchemy type processing of what is stored
        sample = conn.exec_driver_sql(
            f"SELECT {q(column)} FROM {q(table.name)} WHERE {q(column)} IS NOT NULL LIMIT 1"
        ).scalar()
        return detect_sqlite_codec(sample, table.name, column)

    def create_view_sql(self, quoted_name: str, select_sql: str) -> str:
        return f"CREATE VIEW IF NOT EXISTS {quoted_name} AS {select_sql}"

    def day_of(self, col: sa.ColumnElement) -> sa.ColumnElement:
        # tables this package creates hold '2024-01-01 00:05:00+00:00'
        return sa.func.substr(col, 1, 10).op("||")(sa.literal_column("' 00:00:00+00:00'"))

    def can_score_in_sql(self, layout: MetricsLayout) -> bool:
        return layout.codec.canonical and layout.id_is_text

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def in_ids(self, col: sa.ColumnElement, ids: Sequence[str]) -> sa.ColumnElement:
        each = sa.select(sa.column("value")).select_from(
            sa.func.json_each(sa.bindparam("ids_json", json.dumps(list(ids)), type_=sa.Text))
        )
        return col.in_(each.scalar_subquery())

    def bulk_upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        key: list[str],
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        ins = self.insert(table).values({c: sa.bindparam(c) for c in tab.column_names})
        return self._executemany(
            conn, self.upsert(ins, table, key, tab.column_names), tab, codecs, fault
        )

    def bulk_insert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        ins = self.insert(table).values({c: sa.bindparam(c) for c in tab.column_names})
        return self._executemany(conn, ins, tab, codecs, fault)

    def _executemany(
        self,
        conn: sa.Connection,
        stmt: Any,
        tab: pa.Table,
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        cols = tab.column_names
        compiled = stmt.compile(dialect=self.sa_dialect)
        order = list(compiled.positiontup or [])
        if sorted(order) != sorted(cols):  # pragma: no cover - guards a SQLAlchemy change
            raise RuntimeError(f"unexpected parameter order {order} for columns {cols}")
        values: dict[str, list] = {}
        for c in cols:
            arr = tab[c]
            if c in codecs:
                values[c] = codecs[c].encode(arr.cast(pa.int64()).to_numpy())
            elif pa.types.is_boolean(arr.type):
                values[c] = arr.cast(pa.int8()).to_pylist()
            else:
                values[c] = arr.to_pylist()
        rows = list(zip(*(values[c] for c in order), strict=True))
        cur = conn.connection.driver_connection.cursor()
        try:
            sql = str(compiled)
            for i in range(0, len(rows), CHUNK_ROWS):
                cur.executemany(sql, rows[i : i + CHUNK_ROWS])
                fault("chunk")
        finally:
            cur.close()
        return len(rows)

    def fetch(self, conn: sa.Connection, stmt: sa.Select, fields: Fields) -> pa.Table:
        compiled = stmt.compile(dialect=self.sa_dialect)
        params = compiled.construct_params()
        args = [params[k] for k in (compiled.positiontup or [])]
        struct = pa.struct(fields)
        chunks = []
        cur = conn.connection.driver_connection.cursor()
        try:
            cur.execute(str(compiled), args)
            while rows := cur.fetchmany(FETCH_ROWS):
                try:
                    chunks.append(pa.array(rows, type=struct))
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    chunks.append(_tolerant_struct(rows, fields, struct))
        finally:
            cur.close()
        if not chunks:
            return pa.schema(fields).empty_table()
        return pa.Table.from_struct_array(pa.chunked_array(chunks, type=struct))


def _tolerant_struct(rows: list, fields: Fields, struct: pa.StructType) -> pa.StructArray:
    """SQLite lets any value into a REAL column: read non-numbers in float columns as NULL
    (warned, with a count and an example) instead of failing the whole read."""
    arrays = []
    for j, (name, typ) in enumerate(fields):
        col = [r[j] for r in rows]
        if pa.types.is_floating(typ):
            bad = [v for v in col if v is not None and not isinstance(v, int | float)]
            if bad:
                col = [_as_float(v) for v in col]
                n_bad = sum(
                    1
                    for v, o in zip(col, (r[j] for r in rows), strict=True)
                    if v is None and o is not None
                )
                if n_bad:
                    warnings.warn(
                        f"column {name!r}: {n_bad} non-numeric value(s) read as missing, "
                        f"e.g. {bad[0]!r}",
                        NonNumericValueWarning,
                        stacklevel=6,
                    )
        arrays.append(pa.array(col, type=typ))
    return pa.StructArray.from_arrays(arrays, fields=list(struct))


def _as_float(v: Any) -> float | None:
    if v is None or isinstance(v, int | float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
