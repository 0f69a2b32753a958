"""MySQL and MariaDB through PyMySQL, with two fast bulk paths (``storage.mysqlfast``):
writes by ``LOAD DATA LOCAL INFILE`` (``REPLACE`` where it equals the upsert), reads by
ConnectorX into Arrow. Where those cannot be used: ``executemany`` of multi-row
``INSERT ... ON DUPLICATE KEY UPDATE`` and PyMySQL tuples into Arrow.

Tables are InnoDB, ``utf8mb4``. Timestamps are ``DATETIME(6)`` holding UTC wall time, which
no time zone setting changes; every connection still pins ``time_zone = '+00:00'`` (so an
existing ``TIMESTAMP`` column of a user's metrics table reads as UTC and ``NOW()`` is UTC)
and an ``sql_mode`` without ``NO_BACKSLASH_ESCAPES`` (PyMySQL escapes strings with
backslashes) and with strict inserts. Text key columns (``series_id``, ``model_version``)
are ``VARCHAR(512)`` with a binary collation that does not pad (``'a'`` and ``'a '`` are two
series): ``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on MySQL 8, picked from the
server's version on the first connection. 512 x 4 bytes stays inside InnoDB's 3072-byte
index limit together with the timestamps and integers of each key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from storage.errors import SchemaError, StorageConnectionError, is_permanent_connect_error
from storage.mysqlfast import (
    arrow_url,
    has_timestamp,
    literal_sql,
    load_data,
    reachable,
    read_arrow,
)
from storage.redact import redact_text
from storage.sqlcodec import TsCodec
from storage.sqldialect import Fault, Fields, SqlDialect
from storage.timeutil import us_to_datetime
from storage.validate import MAX_SERIES_ID_LENGTH

#: Rows per executemany call (PyMySQL sends them as multi-row INSERTs of <= 1 MB each).
CHUNK_ROWS = 10_000
#: Rows fetched per call when reading through PyMySQL.
FETCH_ROWS = 50_000
#: Rows per ``LOAD DATA LOCAL INFILE`` statement (about 13 MB of text for forecasts).
LOAD_ROWS = 100_000
#: After ConnectorX failed to connect where PyMySQL can, reads use PyMySQL this long.
ARROW_PAUSE_S = 600.0
#: Named locks (``GET_LOCK``) serialising table creation and retention batches.
DDL_LOCK = "lstm_forecast_ddl"
RETENTION_LOCK = "lstm_forecast_retention"
LOCK_WAIT_S = 120
#: Session settings of every connection (see the module docstring).
MYSQL_SESSION = (
    "SET SESSION time_zone = '+00:00', "
    "sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
)


class MysqlCodec(TsCodec):
    """``DATETIME(6)`` (or a session-UTC ``TIMESTAMP``) holding UTC wall time."""

    canonical = True
    naive = False
    fetch_type = pa.timestamp("us")

    def param(self, us: int) -> Any:
        return us_to_datetime(us, aware=False)

    def text(self, arr: pa.Array | pa.ChunkedArray) -> list[str]:
        """int64 epoch microseconds as ``YYYY-MM-DD HH:MM:SS.ffffff`` strings."""
        return self.text_array(arr).to_pylist()

    def text_array(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """``text`` as an Arrow string array (Arrow's cast prints ``YYYY-MM-DD
        HH:MM:SS.ffffff``, 20x faster than ``strftime``)."""
        return arr.cast(pa.int64()).cast(pa.timestamp("us")).cast(pa.string())

    def decode(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        return arr.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))


MYSQL_TS = MysqlCodec()
log = logging.getLogger(__name__)


class MysqlDialect(SqlDialect):
    """MySQL 8 / MariaDB 10.6+ through PyMySQL (pure Python, no client library needed), with
    two fast paths (``storage.mysqlfast``): reads through ConnectorX into Arrow, writes
    with ``LOAD DATA LOCAL INFILE``; each falls back to PyMySQL where it cannot be used."""

    name = "mysql"
    backend = "mysql"
    drivers = ("pymysql",)
    url_form = "mysql+pymysql://user@host:port/db (or mariadb+pymysql://)"
    needs = "PyMySQL"
    aliases = ("mariadb",)
    grid = MYSQL_TS
    fine = MYSQL_TS
    table_kwargs = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
    bool_fetch_type = pa.int64()  # BOOL is TINYINT(1)

    def __init__(self, url: sa.engine.URL, shown: str) -> None:
        super().__init__(url, shown)
        self.collation = "utf8mb4_nopad_bin"
        self._key_types: list[mysql.VARCHAR] = []
        #: ConnectorX URL for reads (None: reads use PyMySQL).
        self.arrow_url: str | None = None
        self._arrow_paused_until = 0.0
        #: Whether the server allows ``LOAD DATA LOCAL`` (None: not asked yet).
        self.local_infile: bool | None = None
        #: Per table name: whether ``LOAD DATA ... REPLACE`` equals the upsert there.
        self._replaceable: dict[str, bool] = {}

    def create_engine(self, extra: dict[str, Any]) -> sa.Engine:
        args = {**self.connect_args(), **extra.get("connect_args", {})}
        self.arrow_url = arrow_url(self.url, args)
        engine = super().create_engine(extra)
        sa.event.listen(engine, "handle_error", self._on_connect_error)
        return engine

    def _on_connect_error(self, ctx: sa.engine.ExceptionContext) -> BaseException | None:
        """A failure to open a connection, wherever it happens (a read, a write, a retry),
        raised as the StorageConnectionError naming host and port (PyMySQL's own message
        names only the host), transient or permanent as classified."""
        if ctx.connection is not None or ctx.execution_context is not None:
            return None
        if not type(ctx.original_exception).__module__.startswith("pymysql"):
            return None
        return self.connection_error(ctx.sqlalchemy_exception or ctx.original_exception)

    def connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if "connect_timeout" not in self.url.query:
            args["connect_timeout"] = 10
        if "local_infile" not in self.url.query:
            # the capability is announced at connect; on_connect then refuses every file
            # request except during this store's own LOAD DATA (see _load)
            args["local_infile"] = True
        return args

    def on_connect(self, dbapi_conn: Any) -> None:
        info = str(dbapi_conn.get_server_info())
        mariadb = "mariadb" in info.lower()
        major = int(info.split(".", 1)[0]) if info[:1].isdigit() else 0
        self.collation = (
            "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin" if major >= 8 else "utf8mb4_bin"
        )
        for t in self._key_types:
            t.collation = self.collation
        with dbapi_conn.cursor() as cur:
            cur.execute(MYSQL_SESSION)
        dbapi_conn.commit()
        if hasattr(dbapi_conn, "_local_infile"):
            dbapi_conn._local_infile = False  # a server asking for a file gets an error

    def connection_error(self, exc: BaseException) -> StorageConnectionError:
        u = self.url
        permanent = is_permanent_connect_error(exc)
        orig = getattr(exc, "orig", None) or exc
        code = orig.args[0] if getattr(orig, "args", None) else None
        # PyMySQL raises a refused privilege (1142 INDEX/CREATE command denied) as an
        # OperationalError too: connected, but the account cannot create the tables
        verb = "cannot use" if code in (1142, 1143, 1227) else "cannot connect to"
        return StorageConnectionError(
            f"{verb} {self.url.get_backend_name()} database {u.database!r} at "
            f"{u.host or 'localhost'}:{u.port or 3306} as user {u.username!r}: "
            f"{self.detail(exc)}"
            + (" (this will not succeed on a retry: check the URL)" if permanent else ""),
            permanent=permanent,
        )

    # ------------------------------------------------------------------ schema
    def ts_type(self) -> sa.types.TypeEngine:
        return mysql.DATETIME(fsp=6)

    def key_text_type(self) -> sa.types.TypeEngine:
        t = mysql.VARCHAR(MAX_SERIES_ID_LENGTH, charset="utf8mb4", collation=self.collation)
        self._key_types.append(t)
        return t

    def time_codec(self, conn: sa.Connection, table: sa.Table, column: str) -> TsCodec:
        col_type = table.c[column].type
        if not isinstance(col_type, sa.DateTime):
            raise SchemaError(
                f"time column {column!r} of table {table.name!r} has type {col_type}; "
                "it must be DATETIME or TIMESTAMP"
            )
        return MYSQL_TS

    def create_view_sql(self, quoted_name: str, select_sql: str) -> str:
        # created only when absent, under the DDL lock; OR REPLACE would need DROP, and
        # MySQL has no CREATE VIEW IF NOT EXISTS
        return f"CREATE VIEW {quoted_name} AS {select_sql}"

    def _named_lock(self, conn: sa.Connection, name: str) -> None:
        """A named lock held until the caller's transaction ends (MySQL has no
        transaction-scoped advisory locks: it is released on commit or rollback)."""
        got = conn.execute(sa.select(sa.func.get_lock(name, LOCK_WAIT_S))).scalar()
        if got != 1:
            raise TimeoutError(f"could not take lock {name!r} within {LOCK_WAIT_S} s")
        raw, held = conn.connection.driver_connection, [True]

        def release(*_: Any) -> None:
            if held.pop() if held else False:
                with raw.cursor() as cur:
                    cur.execute("DO RELEASE_LOCK(%s)", (name,))

        sa.event.listen(conn, "commit", release)
        sa.event.listen(conn, "rollback", release)

    def lock_ddl(self, conn: sa.Connection) -> None:
        self._named_lock(conn, DDL_LOCK)

    def lock_retention(self, conn: sa.Connection) -> None:
        self._named_lock(conn, RETENTION_LOCK)

    def day_of(self, col: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.timestamp(sa.func.date(col), type_=col.type)

    def can_score_in_sql(self, layout: Any) -> bool:
        # ON DUPLICATE KEY UPDATE counts an updated row twice: score in Python, whose
        # count is exact (the accuracy rows are then upserted in one transaction)
        return False

    # -------------------------------------------------------------- statements
    def insert(self, table: sa.Table) -> Any:
        return mysql.insert(table)

    def upsert(self, ins: Any, table: sa.Table, key: Sequence[str], cols: Sequence[str]) -> Any:
        return ins.on_duplicate_key_update({c: ins.inserted[c] for c in cols if c not in key})

    def upsert_add(self, ins: Any, table: sa.Table, key: Sequence[str], sums: Sequence[str]) -> Any:
        return ins.on_duplicate_key_update({s: table.c[s] + ins.inserted[s] for s in sums})

    def is_missing_key_error(self, detail: str) -> bool:
        return False  # without a key ON DUPLICATE KEY UPDATE inserts: nothing to explain

    def in_ids(self, col: sa.ColumnElement, ids: Sequence[str]) -> sa.ColumnElement:
        # one expanding parameter: PyMySQL interpolates on the client, so any number of ids
        # fits (the server turns a long IN list into a semi-join on its own)
        return col.in_(sa.bindparam("ids", list(ids), expanding=True))

    # -------------------------------------------------------------- bulk paths
    def bulk_upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        key: list[str],
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        if self._can_load(conn) and self._replace_is_upsert(conn, table, tab, key):
            n = self._load(conn, table, tab, codecs, fault, "REPLACE")
            if n is not None:
                return n
        q = self.quote
        update = ", ".join(f"{q(c)} = VALUES({q(c)})" for c in tab.column_names if c not in key)
        tail = f" ON DUPLICATE KEY UPDATE {update}" if update else ""
        return self._executemany(conn, table, tab, codecs, fault, tail)

    def bulk_insert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        if self._can_load(conn):
            n = self._load(conn, table, tab, codecs, fault, "")
            if n is not None:
                return n
        return self._executemany(conn, table, tab, codecs, fault, "")

    def _can_load(self, conn: sa.Connection) -> bool:
        """Whether this connection and the server allow ``LOAD DATA LOCAL INFILE``."""
        from pymysql.constants import CLIENT

        raw = conn.connection.driver_connection
        if not hasattr(raw, "_local_infile") or not raw.client_flag & CLIENT.LOCAL_FILES:
            return False
        if self.local_infile is None:
            with raw.cursor() as cur:
                cur.execute("SHOW VARIABLES LIKE 'local_infile'")
                row = cur.fetchone()
            self.local_infile = bool(row) and str(row[1]).upper() in ("ON", "1")
            if not self.local_infile:
                log.info("%s: local_infile is OFF on the server; writing with INSERT", self.shown)
        return self.local_infile

    def _replace_is_upsert(
        self, conn: sa.Connection, table: sa.Table, tab: pa.Table, key: list[str]
    ) -> bool:
        """Whether ``REPLACE`` (delete, then insert) writes what the upsert would: every
        column is written, the key is the table's only unique key, and no foreign key
        or trigger sees the delete."""
        if set(tab.column_names) != {c.name for c in table.columns}:
            return False
        if {c.name for c in table.primary_key.columns} != set(key):
            return False
        if any(i.unique for i in table.indexes) or any(
            isinstance(c, sa.UniqueConstraint) for c in table.constraints
        ):
            return False
        if table.name not in self._replaceable:
            with conn.connection.driver_connection.cursor() as cur:
                cur.execute(
                    "SELECT (SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "
                    "WHERE UNIQUE_CONSTRAINT_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = %s)"
                    " + (SELECT COUNT(*) FROM information_schema.TRIGGERS "
                    "WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = %s)",
                    (table.name, table.name),
                )
                self._replaceable[table.name] = int(cur.fetchone()[0]) == 0
        return self._replaceable[table.name]

    def _load(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        codecs: dict[str, TsCodec],
        fault: Fault,
        mode: str,
    ) -> int | None:
        """``tab`` through ``LOAD DATA LOCAL INFILE`` (``storage.mysqlfast.load_data``);
        None, and INSERT from now on, when the server refused the first statement."""
        q = self.quote
        sql = (
            f"LOAD DATA LOCAL INFILE %s {mode} INTO TABLE {q(table.name)} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
            f"({', '.join(q(c) for c in tab.column_names)})"
        )
        raw = conn.connection.driver_connection
        n, refused = load_data(raw, sql, table.name, tab, codecs, LOAD_ROWS, fault)
        if refused is not None:
            self.local_infile = False
            log.info("%s: LOAD DATA LOCAL refused (%s); writing with INSERT", self.shown, refused)
            return None
        return n

    def _executemany(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        codecs: dict[str, TsCodec],
        fault: Fault,
        tail: str,
    ) -> int:
        q, cols = self.quote, tab.column_names
        sql = (
            f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}){tail}"
        )
        values = []
        for c in cols:
            arr = tab[c]
            if c in codecs:
                values.append(MYSQL_TS.text(arr))
            elif pa.types.is_boolean(arr.type):
                values.append(arr.cast(pa.int8()).to_pylist())
            elif pa.types.is_floating(arr.type):  # NaN has no SQL literal: store NULL
                values.append(pc.if_else(pc.is_nan(arr), None, arr).to_pylist())
            else:
                values.append(arr.to_pylist())
        rows = list(zip(*values, strict=True))
        with conn.connection.driver_connection.cursor() as cur:
            for i in range(0, len(rows), CHUNK_ROWS):
                cur.executemany(sql, rows[i : i + CHUNK_ROWS])
                fault("chunk")
        return len(rows)

    def fetch(self, conn: sa.Connection, stmt: sa.Select, fields: Fields) -> pa.Table:
        """Through ConnectorX where it can be used (see ``storage.mysqlfast``), otherwise,
        or when it fails, through ``conn`` (PyMySQL: its errors are the ones raised).
        A ``conn`` with a transaction open always reads itself: ConnectorX's own
        connection would see neither that transaction's snapshot nor its writes."""
        compiled = stmt.compile(
            dialect=self.sa_dialect, compile_kwargs={"render_postcompile": True}
        )
        sql, params = str(compiled), compiled.construct_params()
        if not conn.in_transaction() and self._arrow_usable() and not has_timestamp(stmt):
            literal = literal_sql(sql, params)
            if literal is not None:
                try:
                    return read_arrow(self.arrow_url, literal, fields)
                except Exception as exc:  # noqa: BLE001 - PyMySQL runs it and says what failed
                    self._arrow_failed(exc)
        return self._fetch_rows(conn, sql, params, fields)

    def _arrow_usable(self) -> bool:
        """Whether to read through ConnectorX now. It waits ~30 s for a server it cannot
        reach (its pool's timeout): a refused TCP connect sends the read to PyMySQL, whose
        error is prompt and classified (transient: the caller retries)."""
        if self.arrow_url is None or time.monotonic() < self._arrow_paused_until:
            return False
        return reachable(self.url.host or "localhost", self.url.port or 3306)

    def _arrow_failed(self, exc: BaseException) -> None:
        detail = redact_text(str(exc), self._raw)
        if self.arrow_url is not None:  # its password, percent-encoded or not
            detail = redact_text(detail, self.arrow_url)
        if isinstance(exc, ImportError):
            self.arrow_url = None
            log.warning("%s: reads fall back to PyMySQL: %s", self.shown, detail)
        elif "connect" in detail.lower():
            # ConnectorX cannot log in where PyMySQL can (e.g. TLS the server requires):
            # read through PyMySQL for a while rather than wait on every read
            self._arrow_paused_until = time.monotonic() + ARROW_PAUSE_S
            log.warning(
                "%s: reads fall back to PyMySQL for %d s: %s", self.shown, ARROW_PAUSE_S, detail
            )
        else:
            log.info("%s: ConnectorX read failed, read through PyMySQL: %s", self.shown, detail)

    def _fetch_rows(
        self, conn: sa.Connection, sql: str, params: dict[str, Any], fields: Fields
    ) -> pa.Table:
        import pymysql.cursors

        struct = pa.struct(fields)
        chunks = []
        with conn.connection.driver_connection.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(sql, params)
            while rows := cur.fetchmany(FETCH_ROWS):
                chunks.append(pa.array(rows, type=struct))
        if not chunks:
            return pa.schema(fields).empty_table()
        return pa.Table.from_struct_array(pa.chunked_array(chunks, type=struct))
