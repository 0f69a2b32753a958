"""Bringing tables created by an older version of this package up to date on open.

A column added after the first release (``storage.columns.ADDED_COLUMNS``) is added to an
existing forecasts or accuracy table with ``ALTER TABLE ... ADD COLUMN ... NOT NULL
DEFAULT <value>`` (the rows already there read as that value: ``interval_scale`` 1.0, the
model's own calibration), and the latest-forecast view, whose column list was fixed when
it was created, is created again. Runs under the dialect's DDL lock, in the transaction
that checks the tables (PostgreSQL and SQLite: all of it or nothing; MariaDB commits each
DDL statement on its own, which is harmless here: each step can be repeated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from storage.columns import ADDED_COLUMNS
from storage.sqlschema import latest_view_sql

if TYPE_CHECKING:
    from storage.sqldialect import SqlDialect


def add_missing_columns(
    conn: sa.Connection, table: sa.Table, have: set[str], dialect: SqlDialect
) -> list[str]:
    """Add the columns of ``table`` that ``have`` lacks and that are ``ADDED_COLUMNS``;
    returns their names (the others missing are the caller's SchemaError)."""
    added = []
    for col in table.columns:
        if col.name in have or col.name not in ADDED_COLUMNS:
            continue
        typ = col.type.compile(dialect=dialect.sa_dialect)
        default = repr(float(ADDED_COLUMNS[col.name]))
        conn.exec_driver_sql(
            f"ALTER TABLE {dialect.quote(table.name)} ADD COLUMN {dialect.quote(col.name)} "
            f"{typ} NOT NULL DEFAULT {default}"
        )
        added.append(col.name)
    return added


def ensure_latest_view(
    conn: sa.Connection, view: str, forecasts: sa.Table, dialect: SqlDialect
) -> None:
    """Create the latest-forecast view when it is absent or lacks a column of the
    forecasts table (a view of an older version: dropped and created again)."""
    insp = sa.inspect(conn)
    if view in insp.get_view_names():
        have = {c["name"] for c in insp.get_columns(view)}
        if all(c.name in have for c in forecasts.columns):
            return
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {dialect.quote(view)}")
    conn.exec_driver_sql(latest_view_sql(forecasts, view, dialect))
