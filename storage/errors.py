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
    """The database cannot be reached (the message names host, port and database only)."""


class SchemaError(StorageError):
    """A table or column is missing or has the wrong type."""


class DataValidationError(StorageError, ValueError):
    """A frame given to a write breaks the data contract (NaN, duplicates, off-grid, ...)."""


class WriteError(StorageError):
    """A write failed in the database or file system; nothing of it was kept."""


class NonNumericValueWarning(UserWarning):
    """A numeric column held values that are not numbers (possible in SQLite); they were
    read as missing (NaN) so the reader can count and repair or skip them per series."""


class NaiveTimestampWarning(UserWarning):
    """A timezone-naive timestamp was given; it is taken to be UTC."""
