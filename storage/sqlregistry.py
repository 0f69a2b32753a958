"""A model registry's bytes in SQL tables (SQLite, PostgreSQL, MariaDB/MySQL): the backend
that `lstm.registry.Registry` runs over when the registry is a database URL, so that
several machines share it with nothing on a shared filesystem.

Bytes and JSON only: what a version's files mean (weights, scalers, metadata, the
SHA-256 sums) and the verification of every load are `lstm`'s; this module never imports
it. Four tables, created when absent (``<prefix>`` is ``model_`` by default):

    <prefix>versions    version PK, created_at, n_files, size_bytes
    <prefix>files       (version, name) PK, sha256, size_bytes, data (BLOB / BYTEA / LONGBLOB)
    <prefix>champion    one row (id = 1): version, promoted_at, revision
    <prefix>promotions  revision PK, version, at, reason: every promotion, never pruned

Saving a version is one transaction (its row and all its files; a failure anywhere
rolls back, so there is nothing to clean up and no temporary file). Moving the champion
is one transaction that starts by updating the champion row (``revision = revision + 1``),
which takes the row lock (PostgreSQL, InnoDB) or the database's write lock (SQLite):
a concurrent promotion waits, then increments the revision the first one committed, and
the revision is the promotions table's primary key, so no promotion overwrites another.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from storage.columns import check_identifier
from storage.errors import ConfigError, SchemaError, StorageError, is_driver_error, is_transient
from storage.redact import encode_userinfo, redact_url
from storage.sqldialect import SqlDialect, dialect_for

DEFAULT_PREFIX = "model_"
#: Promotions returned with the pointer (the history `lstm` falls back through).
HISTORY_LIMIT = 50
_ID = 1

#: Version ids and file names: short ASCII keys (a binary collation on MySQL/MariaDB).
KEY = sa.String(128).with_variant(
    mysql.VARCHAR(128, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
#: File contents: BYTEA (PostgreSQL), BLOB (SQLite), LONGBLOB (MySQL/MariaDB: BLOB is 64 KiB).
BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
#: ISO-8601 UTC instants as text: exact on every database, sortable.
INSTANT = sa.String(40)


class RegistryError(StorageError):
    """A registry read or write failed in the database (transient errors pass through as
    the driver raised them, so the caller's retry policy sees them)."""


def _fault_point(label: str) -> None:
    """No-op hook between the steps of a save or promotion; tests replace it."""


def registry_tables(md: sa.MetaData, prefix: str, dialect: SqlDialect) -> dict[str, sa.Table]:
    kw = dialect.table_kwargs if dialect.name == "mysql" else {}
    p = prefix
    versions = sa.Table(
        f"{p}versions",
        md,
        sa.Column("version", KEY, primary_key=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("n_files", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        **kw,
    )
    files = sa.Table(
        f"{p}files",
        md,
        sa.Column(
            "version",
            KEY,
            sa.ForeignKey(versions.c.version, name=f"fk_{p}files_version"),
            primary_key=True,
        ),
        sa.Column("name", KEY, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("data", BLOB, nullable=False),
        **kw,
    )
    champion = sa.Table(
        f"{p}champion",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", KEY, nullable=True),
        sa.Column("promoted_at", INSTANT, nullable=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        **kw,
    )
    promotions = sa.Table(
        f"{p}promotions",
        md,
        sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", KEY, nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        **kw,
    )
    return {"versions": versions, "files": files, "champion": champion, "promotions": promotions}


class SqlRegistryBackend:
    """A model registry's versions and champion pointer in four SQL tables (see the
    module docstring). Satisfies `lstm.registry.RegistryBackend` structurally."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"registry URL must be a non-empty string, got {url!r}")
        raw = encode_userinfo(url.strip())
        self.shown = redact_url(raw)
        check_identifier(f"{prefix}promotions", "registry table prefix + 'promotions'")
        self.prefix = prefix
        try:
            sa_url = sa.engine.make_url(raw)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise ConfigError(f"not a database URL: {exc}") from None
        self.dialect: SqlDialect = dialect_for(sa_url, self.shown)
        self.kind = self.dialect.backend
        self.engine = self.dialect.create_engine(engine_kwargs or {})
        self.t = registry_tables(sa.MetaData(), prefix, self.dialect)
        try:
            self._ensure_tables()
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def where(self) -> str:
        return f"{self.shown} (tables {self.prefix}*)"

    def key(self) -> str:
        return f"sql:{self.shown}#{self.prefix}"

    def location(self, version: str) -> str:
        return f"model version {version} in {self.where}"

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema
    def _ensure_tables(self) -> None:
        """Create the tables and the champion row when absent (the DDL under the
        dialect's lock; a table another process created meanwhile is taken as it is)."""
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    self.dialect.lock_ddl(conn)
                    self._create_tables(conn)
                break
            except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
                if attempt == 1 and "already exists" in str(exc.orig):
                    continue  # SQLite has no DDL lock: another process was first
                if isinstance(exc, sa.exc.OperationalError):
                    raise self.dialect.connection_error(exc) from None
                raise RegistryError(
                    f"cannot create the registry tables in {self.where}: {self.dialect.detail(exc)}"
                ) from None
        champion = self.t["champion"]
        with self._errors("create the champion row"):
            with self.engine.connect() as conn:
                exists = conn.execute(sa.select(champion.c.id).where(champion.c.id == _ID)).first()
            if exists is None:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(sa.insert(champion).values(id=_ID, revision=0))
                except sa.exc.IntegrityError:
                    pass  # another process created it meanwhile

    def _create_tables(self, conn: sa.Connection) -> None:
        insp = sa.inspect(conn)
        for table in self.t.values():
            if not insp.has_table(table.name):
                table.create(conn)
                continue
            have = {c["name"] for c in insp.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                raise SchemaError(
                    f"existing table {table.name!r} lacks column(s) {missing}; it has "
                    f"{sorted(have)} (choose another FORECAST_MODELS_TABLE_PREFIX)"
                )

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """A database that cannot be reached is a StorageConnectionError (host, port,
        database, never a password); other transient errors (locks, a lost connection)
        pass through for the caller's retry policy; the rest is a RegistryError naming the
        tables."""
        try:
            yield
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            if isinstance(exc, sa.exc.OperationalError) and _connect_failure(exc):
                raise self.dialect.connection_error(exc) from None
            if is_transient(exc):
                raise
            raise RegistryError(
                f"cannot {action} in {self.where}: {self.dialect.detail(exc)}"
            ) from None

    # ------------------------------------------------------------------ versions
    def write_version(self, version: str, files: Mapping[str, bytes]) -> None:
        """The version's row and every file in one transaction (all or nothing)."""
        v, f = self.t["versions"], self.t["files"]
        now = datetime.now(UTC).isoformat()
        with self._errors(f"save model version {version}"), self.engine.begin() as conn:
            conn.execute(
                sa.insert(v).values(
                    version=version,
                    created_at=now,
                    n_files=len(files),
                    size_bytes=sum(len(b) for b in files.values()),
                )
            )
            for name, data in files.items():
                conn.execute(
                    sa.insert(f).values(
                        version=version,
                        name=name,
                        sha256=hashlib.sha256(data).hexdigest(),
                        size_bytes=len(data),
                        data=bytes(data),
                    )
                )
                _fault_point(f"after file {name}")
            _fault_point("before commit")

    def read_version(self, version: str) -> dict[str, bytes] | None:
        f = self.t["files"]
        with self._errors(f"read model version {version}"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(f.c.name, f.c.data).where(f.c.version == version)).all()
            if not rows and not self._exists(conn, version):
                return None
        return {name: bytes(data) for name, data in rows}

    def read_file(self, version: str, name: str) -> bytes | None:
        f = self.t["files"]
        with self._errors(f"read {name} of model version {version}"), self.engine.connect() as conn:
            data = conn.execute(
                sa.select(f.c.data).where(f.c.version == version, f.c.name == name)
            ).scalar()
        return None if data is None else bytes(data)

    def _exists(self, conn: sa.Connection, version: str) -> bool:
        v = self.t["versions"]
        return (
            conn.execute(sa.select(v.c.version).where(v.c.version == version)).first() is not None
        )

    def list_versions(self) -> list[str]:
        v = self.t["versions"]
        with self._errors("list model versions"), self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(v.c.version).order_by(v.c.version))]

    # ------------------------------------------------------------------ champion
    def read_pointer(self) -> dict | None:
        """{"version", "promoted_at", "revision", "history": the last HISTORY_LIMIT
        promotions, oldest first}; None when nothing was ever promoted."""
        c, p = self.t["champion"], self.t["promotions"]
        with self._errors("read the champion pointer"), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(c.c.version, c.c.promoted_at, c.c.revision).where(c.c.id == _ID)
            ).first()
            hist = conn.execute(
                sa.select(p.c.version, p.c.at, p.c.reason)
                .order_by(p.c.revision.desc())
                .limit(HISTORY_LIMIT)
            ).all()
        if (row is None or row.version is None) and not hist:
            return None
        return {
            "version": None if row is None else row.version,
            "promoted_at": None if row is None else row.promoted_at,
            "revision": 0 if row is None else int(row.revision),
            "history": [{"version": h.version, "at": h.at, "reason": h.reason} for h in hist[::-1]],
        }

    def move_pointer(self, version: str, at: str, reason: str) -> None:
        """One transaction: lock and move the champion row, then record the promotion
        under the revision it produced (see the module docstring)."""
        c, p = self.t["champion"], self.t["promotions"]
        with self._errors(f"promote model version {version}"), self.engine.begin() as conn:
            moved = conn.execute(
                sa.update(c)
                .where(c.c.id == _ID)
                .values(version=version, promoted_at=at, revision=c.c.revision + 1)
            )
            if moved.rowcount != 1:  # the row was deleted by hand: start the count again
                conn.execute(
                    sa.insert(c).values(id=_ID, version=version, promoted_at=at, revision=1)
                )
            revision = conn.execute(sa.select(c.c.revision).where(c.c.id == _ID)).scalar_one()
            _fault_point("after champion update")
            conn.execute(
                sa.insert(p).values(revision=revision, version=version, at=at, reason=reason)
            )

    def cleanup(self, now: float | None = None) -> int:
        """Nothing to clean: an interrupted save is a rolled-back transaction."""
        return 0

    def drop_all(self) -> None:
        """Drop the four tables (tests and clean-ups)."""
        with self.engine.begin() as conn:
            for name in ("promotions", "champion", "files", "versions"):
                conn.exec_driver_sql(
                    f"DROP TABLE IF EXISTS {self.dialect.quote(self.t[name].name)}"
                )


def _connect_failure(exc: BaseException) -> bool:
    """Whether an OperationalError means the database could not be reached at all."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(
        t in text
        for t in (
            "connection refused",
            "could not connect",
            "can't connect",
            "unable to open database",
            "does not exist",
            "authentication failed",
            "access denied",
            "could not translate host name",
            "name or service not known",
            "timeout expired",
        )
    )
