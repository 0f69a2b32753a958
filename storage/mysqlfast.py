"""The fast paths of the MySQL/MariaDB store (``storage.dialect_mysql``), both vectorised in
Arrow so that no Python code runs per row or per value:

* reads: ConnectorX (Rust; MySQL protocol straight into Arrow) runs the ``SELECT`` on its
  own connection. It takes no bound parameters, so the statement's parameters become
  literals here (``literal_sql``) that mean the same under any ``sql_mode``: strings as
  ``_utf8mb4 X'<hex>'``, naive datetimes as quoted digits, finite numbers; any other value
  keeps the statement on PyMySQL.
* writes: ``LOAD DATA LOCAL INFILE`` of tab-separated text (``tsv_chunks``), in the escaping
  of ``FIELDS ESCAPED BY '\\\\'`` (``\\N`` is NULL).

PyMySQL remains the driver of the engine: URLs, sessions, transactions, locks, errors.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import socket
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from storage.sqlcodec import TsCodec

#: URL query options the ConnectorX connection can honour (anything else, e.g. TLS or a
#: unix socket, keeps reads on PyMySQL, which gets them).
ARROW_URL_OPTIONS = frozenset({"charset", "connect_timeout", "local_infile"})
#: ``connect_args`` that do not change what a DATETIME read returns.
ARROW_CONNECT_ARGS = frozenset({"connect_timeout", "init_command", "local_infile"})
#: Characters the TSV text escapes, in order (the backslash first).
_TSV_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\x00", "\\0"))
#: Errors of a ``LOAD DATA LOCAL`` that the server or client does not allow: MySQL 1148,
#: MySQL 8 3948, MariaDB 4166 (then the store writes with ``executemany``).
LOAD_REFUSED = (1148, 3948, 4166)
_PARAM = re.compile(r"%\(([^)]+)\)s")


def arrow_url(url: sa.engine.URL, connect_args: Mapping[str, Any]) -> str | None:
    """The ConnectorX URL of a ``mysql+pymysql://`` URL, or None where reads must stay on
    PyMySQL (a query option or connect argument ConnectorX would not apply; no host)."""
    if set(url.query) - ARROW_URL_OPTIONS or set(connect_args) - ARROW_CONNECT_ARGS:
        return None
    if url.query.get("charset", "utf8mb4") != "utf8mb4" or not url.host:
        return None
    user = urllib.parse.quote(url.username or "", safe="")
    password = url.password
    auth = user + (":" + urllib.parse.quote(str(password), safe="") if password else "")
    db = urllib.parse.quote(url.database or "", safe="")
    host = f"[{url.host}]" if ":" in url.host else url.host  # an IPv6 address
    return f"mysql://{auth}@{host}:{url.port or 3306}/{db}"


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to the server opens (and is closed again) within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def has_timestamp(stmt: sa.Select) -> bool:
    """Whether a statement touches a ``TIMESTAMP`` column, whose values depend on the
    session time zone (ConnectorX's session keeps the server's; PyMySQL's is UTC)."""
    return any(
        isinstance(getattr(el, "type", None), sa.TIMESTAMP) for el in sa.sql.visitors.iterate(stmt)
    )


def _literal(value: Any) -> str | None:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return f"_utf8mb4 X'{value.encode('utf-8').hex()}'"
        except UnicodeEncodeError:  # a lone surrogate: PyMySQL says what is wrong
            return None
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return f"'{value.isoformat(sep=' ')}'"
    return None


def literal_sql(sql: str, params: Mapping[str, Any]) -> str | None:
    """``sql`` (pyformat placeholders, as SQLAlchemy compiles for PyMySQL) with every
    parameter as a literal; None when a value has no literal listed in the module doc."""
    lits: dict[str, str] = {}
    for name in set(_PARAM.findall(sql)):
        if name not in params:
            return None
        lit = _literal(params[name])
        if lit is None:
            return None
        lits[name] = lit
    return sql % lits


def read_arrow(url: str, sql: str, fields: list[tuple[str, pa.DataType]]) -> pa.Table:
    """Run ``sql`` through ConnectorX; the columns, by position, cast to ``fields``."""
    import connectorx

    tab = connectorx.read_sql(url, sql, return_type="arrow")
    if tab.num_columns != len(fields):
        raise ValueError(f"{tab.num_columns} columns returned, {len(fields)} expected")
    cols = [tab.column(i).cast(t) for i, (_, t) in enumerate(fields)]
    return pa.Table.from_arrays(cols, names=[n for n, _ in fields])


def _text(arr: pa.ChunkedArray, codec: TsCodec | None) -> pa.ChunkedArray:
    """One column as TSV field text (nulls stay null)."""
    if codec is not None:
        return codec.text_array(arr)  # type: ignore[attr-defined]  # MysqlCodec
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        for old, new in _TSV_ESCAPES:
            arr = pc.replace_substring(arr, old, new)
        return arr.cast(pa.string())
    if pa.types.is_floating(t):  # NaN has no SQL value: NULL, as the executemany path
        arr = pc.if_else(pc.is_nan(arr), None, arr)
    elif pa.types.is_boolean(t):
        arr = arr.cast(pa.int8())
    # Arrow prints floats as the shortest text that reads back to the same double
    return arr.cast(pa.string())


def tsv_chunks(
    tab: pa.Table, codecs: Mapping[str, TsCodec], chunk_rows: int
) -> Iterator[tuple[int, pa.Buffer]]:
    """``tab`` as ``LOAD DATA`` text, ``chunk_rows`` rows per buffer."""
    for start in range(0, max(tab.num_rows, 1), chunk_rows):
        part = tab.slice(start, chunk_rows)
        if part.num_rows == 0:
            return
        cols = [pc.fill_null(_text(part[c], codecs.get(c)), "\\N") for c in part.column_names]
        lines = pc.binary_join_element_wise(*cols, "\t")
        lines = pc.binary_join_element_wise(lines, pa.scalar("", pa.string()), "\n")
        arr = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)
        lo, hi = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
        yield part.num_rows, arr.buffers()[2].slice(lo, hi - lo)


def load_data(
    raw: Any,
    sql: str,
    table: str,
    tab: pa.Table,
    codecs: Mapping[str, TsCodec],
    chunk_rows: int,
    fault: Callable[[str], None],
) -> tuple[int, int | None]:
    """Run ``sql`` (a ``LOAD DATA LOCAL INFILE %s ...``) once per ``chunk_rows`` rows of
    ``tab`` on the PyMySQL connection ``raw``, inside its open transaction. Returns (rows
    written, None), or (0, error code) when the server refused the first statement
    (``LOAD_REFUSED``: nothing was written).

    PyMySQL serves a file only while ``raw._local_infile`` is set: here, for each
    statement, from a private temporary folder. With ``LOCAL`` the server turns a row it
    cannot store as given (a value truncated, a duplicate key) into a warning and goes on:
    any warning is raised as a ``DataError``, and the caller's transaction rolls back."""
    import pymysql

    n = 0
    with tempfile.TemporaryDirectory(prefix="lstmf-load-") as tmp, raw.cursor() as cur:
        path = os.path.join(tmp, "rows.tsv")
        for rows, buf in tsv_chunks(tab, codecs, chunk_rows):
            with open(path, "wb") as fh:
                fh.write(buf)
            raw._local_infile = True
            try:
                cur.execute(sql, (path,))
            except pymysql.err.MySQLError as exc:
                code = exc.args[0] if exc.args else None
                if n == 0 and code in LOAD_REFUSED:
                    return 0, code
                raise
            finally:
                raw._local_infile = False
            cur.execute("SHOW WARNINGS LIMIT 3")
            warnings = cur.fetchall()
            if warnings:
                level, code, message = warnings[0][:3]
                raise pymysql.err.DataError(
                    code, f"LOAD DATA into {table!r}: {level} {code}: {message}"
                )
            n += rows
            fault("chunk")
    return n, None
