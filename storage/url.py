"""``open_store``: pick the backend from a URL."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import make_url

from storage.base import DEFAULT_MAX_HORIZON, Store
from storage.columns import ColumnMap, TableNames
from storage.errors import ConfigError
from storage.redact import redact_url

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.S)
#: Anything that starts like a URL: a scheme and ':' (a Windows drive letter is one letter).
_LOOKS_LIKE_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):", re.S)

#: The store URL forms, for messages.
URL_FORMS = (
    "sqlite:///relative/path.db or sqlite:////absolute/path.db, "
    "postgresql+psycopg://user@host:port/db, mysql+pymysql://user@host:port/db (MySQL or "
    "MariaDB; mariadb+pymysql:// too), parquet:///absolute/folder or a plain folder path"
)


def _check_url_form(url: str) -> None:
    """A string that starts like ``scheme:`` must be ``scheme://...``: a mistyped URL
    (``sqlite:/data/f.db``) is an error, never a Parquet folder of that name."""
    m = _LOOKS_LIKE_URL.match(url)
    if m is None or len(m["scheme"]) == 1 or _SCHEME.match(url):
        return
    scheme = m["scheme"].lower()
    hint = ""
    if scheme.startswith("postgres") and not scheme.startswith("postgresql+psycopg"):
        hint = " (PostgreSQL URLs start with postgresql+psycopg://)"
    raise ConfigError(
        f"store URL {redact_url(url)!r} is not valid: {m['scheme']}: must be followed by "
        f"'//'{hint}; accepted forms: {URL_FORMS} (a folder whose name holds ':' can be "
        "given as ./name)"
    )


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

    * ``sqlite:///path.db`` (the embedded default), ``postgresql+psycopg://user@host/db``
      and ``mysql+pymysql://user@host/db`` (MySQL 8, MariaDB 10.6+; ``mariadb+pymysql://``
      too): a SQL database (tables, indexes and the latest-forecast view are created if absent);
    * ``parquet:///path`` or a plain folder path: a Parquet dataset folder.

    Anything else that starts like ``scheme:`` (``sqlite:/data/f.db``, one slash) is a
    ConfigError naming the URL (password masked) and the accepted forms.

    ``max_horizon`` bounds forecast steps (slots); ``options`` go to the backend
    (``engine_kwargs`` for SQL, ``fsync`` for Parquet). Raises ConfigError for an unknown
    URL and StorageConnectionError when the database cannot be reached.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"store URL must be a non-empty string, got {url!r}")
    url = url.strip()
    _check_url_form(url)
    m = _SCHEME.match(url)
    if m is None or len(m["scheme"]) == 1:  # a path, or a Windows drive letter (C://data)
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


def missing_store(url: str) -> str | None:
    """Why the local database file or Parquet folder `url` names does not exist (None when
    it does, or when it is a server database)."""
    m = _SCHEME.match(url)
    scheme = m["scheme"].lower() if m else None
    if scheme is not None and scheme.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not path.startswith("file:"):
            p = Path(path).expanduser()
            if not p.is_file():
                where = "its folder does not exist either" if not p.parent.is_dir() else ""
                return f"SQLite database file {str(p)!r} does not exist" + (
                    f" ({where})" if where else ""
                )
        return None
    if scheme is None or scheme in ("parquet", "file"):
        folder = Path(m["rest"] if m else url).expanduser()
        if not folder.is_dir():
            return f"Parquet folder {str(folder)!r} does not exist"
    return None
