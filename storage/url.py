"""``open_store``: pick the backend from a URL."""

from __future__ import annotations

import os
import re
from typing import Any

import pandas as pd

from storage.base import DEFAULT_MAX_HORIZON, Store
from storage.columns import ColumnMap, TableNames
from storage.errors import ConfigError

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.S)


def open_store(
    url: str | os.PathLike[str],
    columns: ColumnMap | None = None,
    tables: TableNames | None = None,
    freq: str | pd.Timedelta = "5min",
    *,
    max_horizon: int = DEFAULT_MAX_HORIZON,
    **options: Any,
) -> Store:
    """Open the store a URL names.

    * ``sqlite:///path.db`` (the embedded default) and ``postgresql+psycopg://user@host/db``:
      a SQL database (tables, indexes and the latest-forecast view are created if absent);
    * ``parquet:///path`` or a plain folder path: a Parquet dataset folder.

    ``max_horizon`` bounds forecast steps (slots); ``options`` go to the backend
    (``engine_kwargs`` for SQL, ``fsync`` for Parquet). Raises ConfigError for an unknown
    URL and StorageConnectionError when the database cannot be reached.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"store URL must be a non-empty string, got {url!r}")
    url = url.strip()
    m = _SCHEME.match(url)
    if m is None or (len(m["scheme"]) == 1 and os.name == "nt"):
        from storage.parquet import ParquetStore

        return ParquetStore(url, columns, tables, freq, max_horizon, **options)
    scheme = m["scheme"].lower()
    if scheme in ("parquet", "file"):
        rest = m["rest"]
        if not rest:
            raise ConfigError(f"Parquet URL {url!r} has no folder path")
        from storage.parquet import ParquetStore

        return ParquetStore(rest, columns, tables, freq, max_horizon, **options)
    from storage.sql import SqlStore

    return SqlStore(url, columns, tables, freq, max_horizon, **options)
