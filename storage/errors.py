"""Exceptions raised by ``storage``.

Every error is a :class:`StorageError`, so callers can catch one type; the subclasses say
which kind of problem it is. Messages name the table, column, series and offending values.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by the storage package."""


class ConfigError(StorageError, ValueError):
    """A bad URL, table or column name, frequency or argument."""


class StorageConnectionError(StorageError, ConnectionError):
    """The database cannot be reached (the message names host, port and database only).

    ``permanent`` is True when a second try would fail the same way (the database or role
    does not exist, the password is refused, the host name does not resolve): not retried."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SchemaError(StorageError):
    """A table or column is missing or has the wrong type."""


class DataValidationError(StorageError, ValueError):
    """A frame given to a write breaks the data contract (NaN, duplicates, off-grid, ...)."""


class WriteError(StorageError):
    """A write failed in the database or file system; nothing of it was kept."""


class NonNumericValueWarning(UserWarning):
    """A numeric column held values that are not numbers (possible in SQLite); they were
    read as missing (NaN) so the reader can count and repair or skip them per series."""


class TimestampRangeWarning(UserWarning):
    """Metrics rows with a timestamp outside the supported range (or unreadable), e.g.
    written into a user's table with plain SQL, were skipped by a read (and counted in
    ``Store.skipped_rows``)."""


class NaiveTimestampWarning(UserWarning):
    """A timezone-naive timestamp was given; it is taken to be UTC."""


_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o", "unable to open")
#: SQLSTATE classes that psycopg raises as OperationalError but that fail the same way every
#: time: 54, program limit exceeded (e.g. an index row over the btree limit).
_PG_PERMANENT_CLASSES = ("54",)


#: connection failures that repeat on every try: SQLSTATE 3D (no such database) and 28
#: (authorization: role or password refused), and these messages (no SQLSTATE: the client
#: never reached a server)
_PG_PERMANENT_CONNECT_STATES = ("3D", "28")
_PERMANENT_CONNECT_TEXT = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "could not translate host name",
    "failed to resolve host",
    "name or service not known",
    "nodename nor servname",
)


#: MySQL/MariaDB error codes (PyMySQL ``args[0]``). Permanent when connecting: 1044/1045/
#: 1698 access denied, 1049 unknown database, 2005 unknown host, 1142/1143/1227 a privilege
#: the account lacks (e.g. INDEX when creating the tables). Transient: 2003 cannot
#: connect (refused; an unresolvable host name says so and is permanent), 2006 server has
#: gone away, 2013 connection lost, 1205 lock wait timeout, 1213 deadlock.
_MYSQL_PERMANENT_CONNECT = (1044, 1045, 1049, 1142, 1143, 1227, 1698, 2005)
_MYSQL_TRANSIENT = (1205, 1213, 2003, 2006, 2013)


def _mysql_code(orig: BaseException) -> int | None:
    if not type(orig).__module__.startswith("pymysql"):
        return None
    code = orig.args[0] if orig.args else None
    return code if isinstance(code, int) else None


def is_permanent_connect_error(exc: BaseException) -> bool:
    """Whether a failure to connect will repeat on every try (see above)."""
    orig = getattr(exc, "orig", None) or exc
    if _mysql_code(orig) in _MYSQL_PERMANENT_CONNECT:
        return True
    state = str(getattr(orig, "sqlstate", "") or "")
    if state.startswith(_PG_PERMANENT_CONNECT_STATES):
        return True
    text = str(orig).lower()
    return any(t in text for t in _PERMANENT_CONNECT_TEXT)


def is_driver_error(exc: BaseException) -> bool:
    """An error raised by SQLAlchemy or a database driver (sqlite3, psycopg, pymysql)."""
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError | sqlite3.Error) or type(exc).__module__.startswith(
        ("psycopg", "pymysql")
    )


def is_transient(exc: BaseException) -> bool:
    """Whether a second try may succeed: a lost or refused connection, a locked or busy
    database, an I/O hiccup. A bad statement, a constraint violation or a missing table or
    key fails the same way every time (retrying it only delays the error)."""
    import sqlite3

    if isinstance(exc, StorageConnectionError):
        return not exc.permanent
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.OperationalError):
        return any(s in str(orig).lower() for s in _SQLITE_TRANSIENT)
    if type(orig).__module__.startswith("psycopg"):
        import psycopg

        if str(getattr(orig, "sqlstate", "") or "").startswith(_PG_PERMANENT_CLASSES):
            return False
        return isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError)
    if type(orig).__module__.startswith("pymysql"):
        import pymysql

        if isinstance(orig, pymysql.err.InterfaceError):  # the connection is closed
            return True
        if _mysql_code(orig) == 2003:
            return not is_permanent_connect_error(orig)
        return _mysql_code(orig) in _MYSQL_TRANSIENT
    return isinstance(orig, OSError) and not isinstance(
        orig, FileNotFoundError | PermissionError | IsADirectoryError
    )
