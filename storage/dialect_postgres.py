"""PostgreSQL through psycopg 3: ``COPY`` in and out; writes in the binary format where the
table's column types take it (``storage.pgbinary``), else as CSV Arrow writes; reads as CSV
Arrow parses (see ``storage.sqldialect`` for the interface).

Both directions stream in bounded pieces, so memory does not grow with the text: a write
formats and sends ``COPY_IN_ROWS`` rows at a time, a read parses each ``COPY_OUT_BYTES``
of received rows into Arrow columns as they arrive (never the whole text at once). At
1,000,000 series a predict run moves 60 million rows out and 12 million in.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from storage.errors import SchemaError, StorageConnectionError, is_permanent_connect_error
from storage.pgbinary import SIGNATURE, TRAILER, binary_kinds, encode_rows
from storage.sqlcodec import PgCodec, TsCodec, tolerant_cast
from storage.sqldialect import Fault, Fields, SqlDialect

#: Advisory lock key taken while creating tables (PostgreSQL); any fixed 64-bit number.
DDL_LOCK_KEY = 0x5707A6E
#: Advisory lock key taken by each retention batch (``storage.sqlretention``).
RETENTION_LOCK_KEY = DDL_LOCK_KEY + 1

#: Session settings set on every connection, whatever the database or role defaults say
#: (``ALTER DATABASE ... SET``): timestamps in UTC and ISO text (``COPY ... TO`` output is
#: parsed as ISO), floats in their shortest exact text (``extra_float_digits`` below 1
#: rounds them); JIT only slows these short queries down.
PG_SESSION = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "extra_float_digits": "3", "jit": "off"}

#: Rows encoded and sent per piece of a ``COPY ... FROM STDIN`` (~20-30 MB for forecast
#: rows); tests set it tiny to cross piece boundaries.
COPY_IN_ROWS = 200_000
#: Send rows in PostgreSQL's binary COPY format where every column's type takes it exactly
#: (``storage.pgbinary``); CSV otherwise. Tests switch it off to compare the two.
COPY_BINARY = True
#: Bytes of received ``COPY ... TO STDOUT`` rows parsed into Arrow at a time.
COPY_OUT_BYTES = 32 << 20


#: libc collations that order UTF-8 text by its bytes (code points)
BYTEWISE = {"C", "POSIX", "C.UTF-8", "C.utf8"}


class PostgresDialect(SqlDialect):
    """PostgreSQL through psycopg 3 (its own cursor runs ``COPY`` in and out)."""

    name = "postgresql"
    backend = "postgres"
    drivers = ("psycopg",)
    url_form = "postgresql+psycopg://user@host:port/db"
    needs = "psycopg 3"
    grid = PgCodec(True)
    fine = PgCodec(True)

    def connect_args(self) -> dict[str, Any]:
        return {} if "connect_timeout" in self.url.query else {"connect_timeout": 10}

    #: the database's default collation orders text by its bytes (series_id has no other)
    bytewise_default = False

    def on_connect(self, dbapi_conn: Any) -> None:
        calls = ", ".join("set_config(%s, %s, false)" for _ in PG_SESSION)
        args = [x for kv in PG_SESSION.items() for x in kv]
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SELECT {calls}", args)
            # the name, and a probe of what it does (an ICU default keeps a libc name)
            cur.execute(
                "SELECT datcollate, 'B' < 'a' AND 'a' < 'b' AND 'z' < 'é' AND '-' < '0'"
                " FROM pg_database WHERE datname = current_database()"
            )
            collate, probe = cur.fetchone()
        dbapi_conn.commit()
        self.bytewise_default = bool(probe) and collate in BYTEWISE

    def connection_error(self, exc: BaseException) -> StorageConnectionError:
        u = self.url
        permanent = is_permanent_connect_error(exc)
        return StorageConnectionError(
            f"cannot connect to postgresql database {u.database!r} at "
            f"{u.host or 'localhost'}:{u.port or 5432} as user {u.username!r}: "
            f"{self.detail(exc)}"
            + (" (this will not succeed on a retry: check the URL)" if permanent else ""),
            permanent=permanent,
        )

    def ts_type(self) -> sa.types.TypeEngine:
        return postgresql.TIMESTAMP(timezone=True)

    def byte_order(self, col: sa.ColumnElement) -> sa.ColumnElement:
        """Byte order: the column itself where the database's collation is bytewise
        already (then the primary key's order serves an ORDER BY ... LIMIT), else
        ``COLLATE "C"``."""
        return col if self.bytewise_default else col.collate("C")

    def time_codec(self, conn: sa.Connection, table: sa.Table, column: str) -> TsCodec:
        col_type = table.c[column].type
        if not isinstance(col_type, sa.DateTime):
            raise SchemaError(
                f"time column {column!r} of table {table.name!r} has type {col_type}; "
                "it must be a timestamp"
            )
        return PgCodec(bool(getattr(col_type, "timezone", False)))

    def create_view_sql(self, quoted_name: str, select_sql: str) -> str:
        return f"CREATE OR REPLACE VIEW {quoted_name} AS {select_sql}"

    def lock_ddl(self, conn: sa.Connection) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(DDL_LOCK_KEY)))

    def lock_retention(self, conn: sa.Connection) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(RETENTION_LOCK_KEY)))

    def day_of(self, col: sa.ColumnElement) -> sa.ColumnElement:
        # the session's TimeZone is pinned to UTC (PG_SESSION)
        return sa.func.date_trunc(sa.literal_column("'day'"), col, type_=col.type)

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def in_ids(self, col: sa.ColumnElement, ids: Sequence[str]) -> sa.ColumnElement:
        return col == sa.any_(sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.Text)))

    def bulk_upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        key: list[str],
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        cols = tab.column_names
        stage_name = f"_stage_{table.name}"
        stage = sa.Table(
            stage_name,
            sa.MetaData(),
            *[sa.Column(c, _stage_type(tab[c].type, c in codecs)) for c in cols],
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        stage.create(conn)
        ship = tab
        for c in codecs:  # timestamps travel as epoch microseconds: no text format involved
            ship = ship.set_column(ship.schema.get_field_index(c), c, ship[c].cast(pa.int64()))
        self._copy_in(conn, stage_name, ship)
        fault("staged")
        exprs = []
        for c in cols:
            if c in codecs:
                aware = getattr(table.c[c].type, "timezone", True)
                epoch = "TIMESTAMPTZ 'epoch'" if aware else "TIMESTAMP 'epoch'"
                exprs.append(
                    (
                        sa.literal_column(epoch)
                        + stage.c[c] * sa.literal_column("INTERVAL '1 microsecond'")
                    ).label(c)
                )
            else:
                exprs.append(sa.cast(stage.c[c], table.c[c].type).label(c))
        ins = self.insert(table).from_select(cols, sa.select(*exprs).select_from(stage))
        conn.execute(self.upsert(ins, table, key, cols))
        return tab.num_rows

    def bulk_insert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        """``COPY`` straight into the table: timestamps as ISO text in UTC (the session's
        DateStyle and TimeZone are pinned, ``PG_SESSION``)."""
        aware = {c: bool(getattr(table.c[c].type, "timezone", True)) for c in codecs}

        def iso_text(piece: pa.Table) -> pa.Table:
            for c, tz in aware.items():
                text = _iso_text(piece[c], tz)
                piece = piece.set_column(piece.schema.get_field_index(c), c, text)
            return piece

        if tab.num_rows:
            self._copy_in(conn, table.name, tab, iso_text)
        fault("copied")
        return tab.num_rows

    def _copy_in(
        self,
        conn: sa.Connection,
        table_name: str,
        tab: pa.Table,
        convert: Any = None,
    ) -> None:
        """``COPY`` ``tab`` into ``table_name``, ``COPY_IN_ROWS`` rows at a time: binary
        where every column's type takes it exactly, else CSV (``convert`` turns each CSV
        piece's columns into text the table takes). One COPY statement, so the rows land
        together or not at all."""
        q = self.quote
        cols = ", ".join(q(c) for c in tab.column_names)
        kinds = binary_kinds(conn, q(table_name), tab) if COPY_BINARY else None
        fmt = "csv" if kinds is None else "binary"
        copy_sql = f"COPY {q(table_name)} ({cols}) FROM STDIN (FORMAT {fmt})"
        opts = pacsv.WriteOptions(include_header=False)
        step = max(1, COPY_IN_ROWS)
        with conn.connection.driver_connection.cursor() as cur, cur.copy(copy_sql) as copy:
            if kinds is not None:  # the columns' exact types: no text for the server to parse
                copy.write(SIGNATURE)
                for start in range(0, tab.num_rows, step):
                    copy.write(encode_rows(tab.slice(start, step), kinds))
                copy.write(TRAILER)
                return
            for start in range(0, tab.num_rows, step):
                piece = tab.slice(start, step)
                if convert is not None:
                    piece = convert(piece)
                buf = io.BytesIO()
                pacsv.write_csv(piece, buf, opts)
                copy.write(buf.getbuffer())
                del buf

    def fetch(self, conn: sa.Connection, stmt: sa.Select, fields: Fields) -> pa.Table:
        """The rows of ``stmt`` through ``COPY ... TO STDOUT`` as CSV, parsed into Arrow
        ``COPY_OUT_BYTES`` at a time (the text of the whole result is never held)."""
        compiled = stmt.compile(dialect=self.sa_dialect)
        params = compiled.construct_params()
        raw = conn.connection.driver_connection
        parts = []
        with raw.cursor() as cur:
            with cur.copy(f"COPY ({compiled}) TO STDOUT (FORMAT csv)", params) as copy:
                for block in _copy_out_blocks(raw, copy, max(1, COPY_OUT_BYTES)):
                    parts.append(_parse_csv(block, fields))
            raw.rollback()
        if not parts:
            return pa.schema(fields).empty_table()
        return pa.concat_tables(parts)


def _copy_out_blocks(raw: psycopg.Connection, copy: psycopg.Copy, size: int) -> Iterator[bytes]:
    """The rows of a ``COPY ... TO STDOUT`` in blocks of at least ``size`` bytes (the last
    may be shorter), each ending at a row's end: the server sends one message per row.

    Rows already received are taken straight from libpq (``get_copy_data`` without
    waiting), about 3 times faster than iterating ``copy`` (a Python generator chain per
    row: 60 million rows at 1,000,000 series); when none is buffered, ``copy.read()`` waits
    for the socket as psycopg does. The end of the data is consumed either way: by
    ``copy.read()`` returning empty, or here, where the final result is fetched and its
    error, if any, raised as psycopg raises it."""
    pgconn = raw.pgconn
    get = pgconn.get_copy_data
    buf = bytearray()
    while True:
        nbytes, data = get(1)
        if nbytes == 0:  # nothing buffered: let psycopg wait for the socket
            data = copy.read()
            if not data:
                break
        elif nbytes < 0:  # the end of the data, taken from libpq here: its final result
            _finish_copy_out(raw)
            break
        buf += data
        if len(buf) >= size:
            yield bytes(buf)
            buf = bytearray()
    if buf:
        yield bytes(buf)


def _finish_copy_out(raw: psycopg.Connection) -> None:
    """Fetch the results that follow the end of ``COPY ... TO`` data and raise the error
    one carries (e.g. the server failed a row late in the query)."""
    pgconn = raw.pgconn
    error = None
    while (res := pgconn.get_result()) is not None:
        if res.status != psycopg.pq.ExecStatus.COMMAND_OK and error is None:
            error = psycopg.errors.error_from_result(res, encoding=raw.info.encoding)
    if error is not None:
        raise error


def _parse_csv(block: bytes, fields: Fields) -> pa.Table:
    """One block of ``COPY`` CSV rows as Arrow columns of ``fields``."""
    buf = io.BytesIO(block)
    try:
        return _read_csv(buf, fields)
    except pa.ArrowInvalid:  # e.g. a user's row dated 'infinity' or '0044-03-15 BC'
        loose = [(n, pa.string() if pa.types.is_timestamp(t) else t) for n, t in fields]
        tab = _read_csv(buf, loose)
        for i, (name, typ) in enumerate(fields):
            if pa.types.is_timestamp(typ):
                tab = tab.set_column(i, name, tolerant_cast(tab[name], typ))
        return tab


def _iso_text(arr: pa.ChunkedArray, aware: bool) -> pa.ChunkedArray:
    """Timestamps as ISO text in UTC for ``COPY``, formatted once per distinct value (a
    forecast write holds a few distinct instants in millions of rows; ``strftime`` on
    every row cost more than the COPY itself)."""
    uniq = pc.unique(arr)
    text = pc.strftime(uniq, format="%Y-%m-%d %H:%M:%S", locale="C")
    if aware:
        text = pc.binary_join_element_wise(text, "+00", "")
    return pc.take(text, pc.index_in(arr, uniq))


def _read_csv(buf: io.BytesIO, fields: Fields) -> pa.Table:
    buf.seek(0)
    return pacsv.read_csv(
        buf,
        read_options=pacsv.ReadOptions(column_names=[n for n, _ in fields], block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(fields),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def _stage_type(typ: pa.DataType, is_time: bool) -> sa.types.TypeEngine:
    if is_time or pa.types.is_integer(typ):
        return sa.BigInteger()
    if pa.types.is_boolean(typ):
        return sa.Boolean()
    if pa.types.is_floating(typ):
        return sa.Double()
    return sa.Text()
