"""What differs between SQL databases, one small class per dialect.

``SqlStore`` (``storage.sql``) builds the schema, reads and scoring with SQLAlchemy Core and
asks its dialect object, chosen once from the URL, for everything else (``SqlDialect``
here; ``SqliteDialect`` in ``storage.dialect_sqlite``, ``PostgresDialect`` in
``storage.dialect_postgres``):

* the engine: connect arguments, per-connection session setup, the URL to open (SQLite:
  create the folder), connection errors;
* statements: insert and upsert, the ``series_id IN (...)`` filter for any number of ids,
  the latest-forecast view's ``CREATE``, the DDL lock;
* timestamps: the column type and codecs (``storage.sqlcodec``);
* bulk paths: upsert (PostgreSQL ``COPY`` into a staging table + ``INSERT ... ON CONFLICT``;
  SQLite ``executemany``), insert of rows whose keys are free (PostgreSQL ``COPY`` into the
  table itself) and fetching a ``SELECT`` into Arrow (PostgreSQL
  ``COPY ... TO STDOUT`` as CSV; SQLite tuples).

MySQL/MariaDB (``storage.dialect_mysql``) is the third: ``upsert`` with ``ON DUPLICATE KEY
UPDATE``, an expanding ``IN`` for ids, ``DATETIME(6)`` timestamps, ``VARCHAR`` key text
(``key_text_type``) and bulk paths of ``LOAD DATA LOCAL INFILE`` and ConnectorX reads
(``storage.mysqlfast``), with PyMySQL ``executemany`` and tuples where those cannot be used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa

from storage.errors import ConfigError, StorageConnectionError
from storage.redact import redact_text
from storage.sqlcodec import TsCodec

if TYPE_CHECKING:
    from storage.sqlschema import MetricsLayout

#: A write's fault-injection hook (``storage.sql._fault_point``), called between its steps.
Fault = Callable[[str], None]
#: Names and Arrow types of the columns a fetch returns.
Fields = list[tuple[str, pa.DataType]]


class SqlDialect(ABC):
    """The dialect-specific half of ``SqlStore``; see the module docstring."""

    #: SQLAlchemy's backend name (``url.get_backend_name()``).
    name: ClassVar[str]
    #: ``Store.backend``.
    backend: ClassVar[str]
    #: Drivers the bulk paths work with (``None``: the URL names no driver).
    drivers: ClassVar[tuple[str | None, ...]]
    #: How a URL for this database looks, and the driver it needs, for messages.
    url_form: ClassVar[str]
    needs: ClassVar[str]
    #: Other SQLAlchemy backend names of this database (``mariadb`` for MySQL).
    aliases: ClassVar[tuple[str, ...]] = ()
    #: Codecs of grid timestamps (ts, issued_at, target_ts) and of created_at/scored_at.
    grid: ClassVar[TsCodec]
    fine: ClassVar[TsCodec]
    #: Extra ``sa.Table`` keyword arguments for the tables this package creates.
    table_kwargs: ClassVar[dict[str, Any]] = {}
    #: Arrow type a boolean column is fetched as.
    bool_fetch_type: ClassVar[pa.DataType] = pa.bool_()

    def __init__(self, url: sa.engine.URL, shown: str) -> None:
        self.url = url
        self.shown = shown  # the URL as messages show it (passwords masked)
        self._raw = url.render_as_string(hide_password=False)  # only to scrub messages
        self.sa_dialect: sa.engine.Dialect = url.get_dialect()()

    def quote(self, name: str) -> str:
        """A quoted identifier."""
        return self.sa_dialect.identifier_preparer.quote(name)

    # ------------------------------------------------------------------ engine
    def create_engine(self, extra: dict[str, Any]) -> sa.Engine:
        """The engine for this URL; ``extra`` are ``create_engine`` keyword arguments."""
        extra = dict(extra)
        connect_args = {**self.connect_args(), **extra.pop("connect_args", {})}
        url = self.open_url()
        try:
            engine = sa.create_engine(url, connect_args=connect_args, **extra)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, TypeError) as exc:
            raise ConfigError(
                f"cannot use database URL {self.shown}: {redact_text(str(exc), self._raw)}"
            ) from None
        self.sa_dialect = engine.dialect
        # first of the connect hooks: SQLAlchemy's own first-connect setup (e.g. MySQL's
        # sql_mode detection) then sees the session this dialect pins
        sa.event.listen(
            engine, "connect", lambda dbapi_conn, _rec: self.on_connect(dbapi_conn), insert=True
        )
        return engine

    def open_url(self) -> sa.engine.URL:
        """The URL the engine opens."""
        return self.url

    def connect_args(self) -> dict[str, Any]:
        """Driver connect arguments."""
        return {}

    @abstractmethod
    def on_connect(self, dbapi_conn: Any) -> None:
        """Session setup run on every new driver connection."""

    @abstractmethod
    def connection_error(self, exc: BaseException) -> StorageConnectionError:
        """The error to raise when connecting failed (names the target, never a password)."""

    def detail(self, exc: BaseException) -> str:
        """A driver error's message on one line, with every secret masked."""
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return redact_text(" ".join(line.strip() for line in lines), self._raw)

    # ------------------------------------------------------------------ schema
    @abstractmethod
    def ts_type(self) -> sa.types.TypeEngine:
        """The column type of a UTC instant."""

    def key_text_type(self) -> sa.types.TypeEngine:
        """The column type of text in keys and indexes (series_id, model_version)."""
        return sa.Text()

    def byte_order(self, col: sa.ColumnElement) -> sa.ColumnElement:
        """`col` for ORDER BY in the order of its bytes (Python's str order): SQLite's
        default BINARY collation and the MySQL family's binary key collations already are."""
        return col

    @abstractmethod
    def time_codec(self, conn: sa.Connection, table: sa.Table, column: str) -> TsCodec:
        """How an existing table's time column stores instants (SchemaError if it cannot)."""

    @abstractmethod
    def create_view_sql(self, quoted_name: str, select_sql: str) -> str:
        """A CREATE VIEW statement that keeps an existing view."""

    def lock_ddl(self, conn: sa.Connection) -> None:  # noqa: B027 - most need no lock
        """Serialise table creation between processes (inside the caller's transaction)."""

    def lock_retention(self, conn: sa.Connection) -> None:  # noqa: B027 - SQLite needs none
        """Serialise retention batches between processes (inside the caller's transaction),
        so two runs never roll up the same rows."""

    @abstractmethod
    def day_of(self, col: sa.ColumnElement) -> sa.ColumnElement:
        """The UTC midnight starting the day of a grid timestamp, in the column's format."""

    def can_score_in_sql(self, layout: MetricsLayout) -> bool:
        """Whether forecasts can be joined to this metrics table in SQL."""
        return True

    # -------------------------------------------------------------- statements
    @abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct for ``table``."""

    def upsert(self, ins: Any, table: sa.Table, key: Sequence[str], cols: Sequence[str]) -> Any:
        """``ins`` turned into an upsert on ``key`` that replaces the other ``cols``."""
        return ins.on_conflict_do_update(
            index_elements=[table.c[k] for k in key],
            set_={c: ins.excluded[c] for c in cols if c not in key},
        )

    def upsert_add(self, ins: Any, table: sa.Table, key: Sequence[str], sums: Sequence[str]) -> Any:
        """``ins`` turned into an upsert on ``key`` that adds to the ``sums`` columns."""
        return ins.on_conflict_do_update(
            index_elements=[table.c[k] for k in key],
            set_={s: table.c[s] + ins.excluded[s] for s in sums},
        )

    def is_missing_key_error(self, detail: str) -> bool:
        """Whether a failed upsert means the table lacks the key it conflicts on."""
        return "ON CONFLICT" in detail.upper()

    @abstractmethod
    def in_ids(self, col: sa.ColumnElement, ids: Sequence[str]) -> sa.ColumnElement:
        """``col IN ids`` for any number of ids (one bound parameter)."""

    # -------------------------------------------------------------- bulk paths
    @abstractmethod
    def bulk_upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        key: list[str],
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        """Upsert ``tab`` (column names = the table's) inside the caller's transaction."""

    @abstractmethod
    def bulk_insert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        codecs: dict[str, TsCodec],
        fault: Fault,
    ) -> int:
        """Insert ``tab`` (rows whose keys are not stored) inside the caller's transaction."""

    @abstractmethod
    def fetch(self, conn: sa.Connection, stmt: sa.Select, fields: Fields) -> pa.Table:
        """Run a SELECT and return its rows as an Arrow table with ``fields``."""


def dialect_for(url: sa.engine.URL, shown: str) -> SqlDialect:
    """The dialect object for a parsed URL; ConfigError for anything unsupported."""
    from storage.dialect_mysql import MysqlDialect
    from storage.dialect_postgres import PostgresDialect
    from storage.dialect_sqlite import SqliteDialect

    # the supported dialects by SQLAlchemy backend name (mariadb:// is MySQL's dialect too)
    dialects: dict[str, type[SqlDialect]] = {
        d.name: d for d in (SqliteDialect, PostgresDialect, MysqlDialect)
    }
    dialects["mariadb"] = MysqlDialect
    backend = url.get_backend_name()
    cls = dialects.get(backend)
    if cls is None:
        if backend == "postgres":  # a common misspelling: say what to write instead
            cls = PostgresDialect
        else:
            raise ConfigError(
                f"database dialect {backend!r} ({shown}) is not supported; supported: "
                f"{list(dialects)} and Parquet folders"
            )
    driver = url.drivername.partition("+")[2] or None
    if backend not in (cls.name, *cls.aliases) or driver not in cls.drivers:
        raise ConfigError(
            f"{url.drivername}:// in {shown} is not supported: use {cls.url_form} (the bulk "
            f"paths need {cls.needs})"
        )
    return cls(url, shown)
