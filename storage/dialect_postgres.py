"""PostgreSQL through psycopg 3: ``COPY`` in and out, Arrow writing and parsing the CSV
(see ``storage.sqldialect`` for the interface)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from storage.errors import SchemaError, StorageConnectionError, is_permanent_connect_error
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
        ship = tab
        for c in codecs:
            aware = getattr(table.c[c].type, "timezone", True)
            text = pc.strftime(ship[c], format="%Y-%m-%d %H:%M:%S", locale="C")
            if aware:
                text = pc.binary_join_element_wise(text, "+00", "")
            ship = ship.set_column(ship.schema.get_field_index(c), c, text)
        if tab.num_rows:
            self._copy_in(conn, table.name, ship)
        fault("copied")
        return tab.num_rows

    def _copy_in(self, conn: sa.Connection, table_name: str, tab: pa.Table) -> None:
        buf = io.BytesIO()
        pacsv.write_csv(tab, buf, pacsv.WriteOptions(include_header=False))
        data = buf.getbuffer()
        q = self.quote
        cols = ", ".join(q(c) for c in tab.column_names)
        copy_sql = f"COPY {q(table_name)} ({cols}) FROM STDIN (FORMAT csv)"
        with conn.connection.driver_connection.cursor() as cur, cur.copy(copy_sql) as copy:
            step = 8 << 20
            for i in range(0, len(data), step):
                copy.write(data[i : i + step])

    def fetch(self, conn: sa.Connection, stmt: sa.Select, fields: Fields) -> pa.Table:
        compiled = stmt.compile(dialect=self.sa_dialect)
        params = compiled.construct_params()
        raw = conn.connection.driver_connection
        buf = io.BytesIO()
        with raw.cursor() as cur:
            with cur.copy(f"COPY ({compiled}) TO STDOUT (FORMAT csv)", params) as copy:
                for block in copy:
                    buf.write(block)
            raw.rollback()
        if buf.tell() == 0:
            return pa.schema(fields).empty_table()
        try:
            return _read_csv(buf, fields)
        except pa.ArrowInvalid:  # e.g. a user's row dated 'infinity' or '0044-03-15 BC'
            loose = [(n, pa.string() if pa.types.is_timestamp(t) else t) for n, t in fields]
            tab = _read_csv(buf, loose)
            for i, (name, typ) in enumerate(fields):
                if pa.types.is_timestamp(typ):
                    tab = tab.set_column(i, name, tolerant_cast(tab[name], typ))
            return tab


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
