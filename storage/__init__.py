"""Metrics in, forecasts out: one small interface over a Parquet folder or a SQL database.

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
    WriteError,
)
from storage.redact import redact_text, redact_url
from storage.url import open_store

__all__ = [
    "ColumnMap",
    "ConfigError",
    "DataValidationError",
    "NaiveTimestampWarning",
    "NonNumericValueWarning",
    "SchemaError",
    "StorageConnectionError",
    "StorageError",
    "Store",
    "TableNames",
    "WriteError",
    "open_store",
    "redact_text",
    "redact_url",
]
