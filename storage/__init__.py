"""Metrics in, forecasts out: one small interface over a Parquet folder or a SQL database;
and ``SqlRegistryBackend``, the bytes of a model registry in SQL tables.

>>> from storage import open_store, ColumnMap
>>> store = open_store("sqlite:///data/metrics.db", columns=ColumnMap.nixtla())  # doctest: +SKIP

``storage`` never imports torch or ``lstm``. See ``storage.base.Store`` for the methods.
"""

from storage.base import Store
from storage.columns import ColumnMap, TableNames
from storage.errors import (
    ConfigError,
    DataValidationError,
    NaiveTimestampWarning,
    NonNumericValueWarning,
    SchemaError,
    StorageConnectionError,
    StorageError,
    TimestampRangeWarning,
    WriteError,
)
from storage.redact import redact_text, redact_url
from storage.shards import Shard, stable_hash
from storage.sqlregistry import RegistryError, SqlRegistryBackend
from storage.url import missing_store, open_store
from storage.validate import MAX_SERIES_ID_LENGTH, invalid_series_ids

__all__ = [
    "MAX_SERIES_ID_LENGTH",
    "ColumnMap",
    "ConfigError",
    "DataValidationError",
    "NaiveTimestampWarning",
    "NonNumericValueWarning",
    "RegistryError",
    "SchemaError",
    "Shard",
    "SqlRegistryBackend",
    "StorageConnectionError",
    "StorageError",
    "Store",
    "TableNames",
    "TimestampRangeWarning",
    "WriteError",
    "invalid_series_ids",
    "missing_store",
    "open_store",
    "redact_text",
    "redact_url",
    "stable_hash",
]
