"""SQL schema: the tables and view this package creates, and checks of existing tables.

Keys and indexes (the same on every dialect):

* metrics: primary key (ts, series_id) - range reads by time walk the key; upserts
  conflict on it. SQLite tables are ``WITHOUT ROWID`` (clustered on the key).
* forecasts: primary key (issued_at, series_id, step); index (target_ts, series_id,
  issued_at) serving the latest-forecast view and target-time reads.
* forecast_accuracy: primary key (issued_at, series_id, step); index (target_ts).
* forecast_accuracy_daily: primary key (day, model_version, step, level): what retention
  keeps of deleted accuracy rows.
* ``<forecasts>_alerts``: primary key (series_id, direction, started_at); indexes (status,
  series_id) for the open alerts and (resolved_at) for retention (``storage.alerts``).
* ``<forecasts>_latest`` view: a forecast row for which no row of the same series and
  target time has a later issued_at (a NOT EXISTS anti-join on the target index).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import sqlalchemy as sa

from storage.columns import SERIES_ID, TS, VALUE, ColumnMap, TableNames
from storage.errors import SchemaError
from storage.sqlcodec import TsCodec

if TYPE_CHECKING:
    from storage.sqldialect import SqlDialect


def interval_scale_column() -> sa.Column:
    """The recalibration factor of a forecast row (``storage.columns.ADDED_COLUMNS``)."""
    return sa.Column("interval_scale", sa.Double, nullable=False, server_default=sa.text("1.0"))


def forecasts_table(md: sa.MetaData, names: TableNames, dialect: SqlDialect) -> sa.Table:
    """The forecasts table definition."""
    t = names.forecasts
    return sa.Table(
        t,
        md,
        sa.Column("series_id", dialect.key_text_type(), nullable=False),
        sa.Column("issued_at", dialect.ts_type(), nullable=False),
        sa.Column("target_ts", dialect.ts_type(), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("yhat", sa.Double, nullable=False),
        sa.Column("yhat_lower", sa.Double, nullable=False),
        sa.Column("yhat_upper", sa.Double, nullable=False),
        sa.Column("level", sa.Double, nullable=False),
        sa.Column("model_version", dialect.key_text_type(), nullable=False),
        sa.Column("created_at", dialect.ts_type(), nullable=False),
        interval_scale_column(),
        sa.PrimaryKeyConstraint("issued_at", "series_id", "step", name=f"pk_{t}"),
        sa.Index(f"ix_{t}_target", "target_ts", "series_id", "issued_at"),
        **dialect.table_kwargs,
    )


def accuracy_table(md: sa.MetaData, names: TableNames, dialect: SqlDialect) -> sa.Table:
    """The forecast accuracy table definition."""
    t = names.accuracy
    return sa.Table(
        t,
        md,
        sa.Column("series_id", dialect.key_text_type(), nullable=False),
        sa.Column("issued_at", dialect.ts_type(), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("target_ts", dialect.ts_type(), nullable=False),
        sa.Column("model_version", dialect.key_text_type(), nullable=False),
        sa.Column("y", sa.Double, nullable=False),
        sa.Column("yhat", sa.Double, nullable=False),
        sa.Column("yhat_lower", sa.Double, nullable=False),
        sa.Column("yhat_upper", sa.Double, nullable=False),
        sa.Column("level", sa.Double, nullable=False),
        sa.Column("abs_error", sa.Double, nullable=False),
        sa.Column("covered", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("scored_at", dialect.ts_type(), nullable=False),
        interval_scale_column(),
        sa.PrimaryKeyConstraint("issued_at", "series_id", "step", name=f"pk_{t}"),
        sa.Index(f"ix_{t}_target", "target_ts"),
        **dialect.table_kwargs,
    )


def accuracy_daily_table(md: sa.MetaData, names: TableNames, dialect: SqlDialect) -> sa.Table:
    """The daily accuracy roll-up retention keeps (``storage.retention``)."""
    t = names.accuracy_daily
    return sa.Table(
        t,
        md,
        sa.Column("day", dialect.ts_type(), nullable=False),
        sa.Column("model_version", dialect.key_text_type(), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("level", sa.Double, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("sum_abs_error", sa.Double, nullable=False),
        sa.Column("sum_abs_y", sa.Double, nullable=False),
        sa.Column("n_covered", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("day", "model_version", "step", "level", name=f"pk_{t}"),
        **dialect.table_kwargs,
    )


def alerts_table(md: sa.MetaData, names: TableNames, dialect: SqlDialect) -> sa.Table:
    """The breach alerts (``storage.alerts``; columns ``storage.columns.ALERT_SCHEMA``)."""
    t = names.alerts
    ts, text = dialect.ts_type, dialect.key_text_type
    return sa.Table(
        t,
        md,
        sa.Column("series_id", text(), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("started_at", ts(), nullable=False),
        sa.Column("opened_at", ts(), nullable=False),
        sa.Column("last_breach_at", ts(), nullable=False),
        sa.Column("checked_at", ts(), nullable=False),
        sa.Column("slots_breached", sa.Integer, nullable=False),
        sa.Column("clear_slots", sa.Integer, nullable=False),
        sa.Column("max_excess", sa.Double, nullable=False),
        sa.Column("level", sa.Double, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("model_version", text(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("resolved_at", ts(), nullable=True),
        sa.PrimaryKeyConstraint("series_id", "direction", "started_at", name=f"pk_{t}"),
        sa.Index(f"ix_{t}_status", "status", "series_id"),
        sa.Index(f"ix_{t}_resolved", "resolved_at"),
        **dialect.table_kwargs,
    )


def new_metrics_table(
    md: sa.MetaData, names: TableNames, cm: ColumnMap, features: list[str], dialect: SqlDialect
) -> sa.Table:
    """A metrics table for data written through the store (user's column names)."""
    t = names.metrics
    return sa.Table(
        t,
        md,
        sa.Column(cm.id_col, dialect.key_text_type(), nullable=False),
        sa.Column(cm.time_col, dialect.ts_type(), nullable=False),
        sa.Column(cm.target_col, sa.Double, nullable=True),
        *[sa.Column(f, sa.Double, nullable=True) for f in features],
        sa.PrimaryKeyConstraint(cm.time_col, cm.id_col, name=f"pk_{t}"),
        **dialect.table_kwargs,
    )


def latest_view_sql(forecasts: sa.Table, view: str, dialect: SqlDialect) -> str:
    """CREATE VIEW statement for the latest forecast per (series_id, target_ts)."""
    f = forecasts
    newer = f.alias("newer")
    sel = sa.select(*f.c).where(
        ~sa.exists().where(
            newer.c.series_id == f.c.series_id,
            newer.c.target_ts == f.c.target_ts,
            newer.c.issued_at > f.c.issued_at,
        )
    )
    body = str(sel.compile(dialect=dialect.sa_dialect, compile_kwargs={"literal_binds": True}))
    return dialect.create_view_sql(dialect.quote(view), body)


def is_numeric(col_type: sa.types.TypeEngine) -> bool:
    """True for integer, float and numeric SQL types."""
    return isinstance(col_type, sa.Integer | sa.Float | sa.Numeric)


def is_text(col_type: sa.types.TypeEngine) -> bool:
    return isinstance(col_type, sa.String)


@dataclass
class MetricsLayout:
    """What was found in an existing metrics table."""

    table: sa.Table
    features: list[str]
    codec: TsCodec
    id_is_text: bool
    extra: dict[str, str] = field(default_factory=dict)


def metrics_window(
    layout: MetricsLayout,
    cm: ColumnMap,
    id_expr: sa.ColumnElement,
    ranges: list[tuple[int | None, int | None]],
) -> tuple[sa.Select, sa.ColumnElement, list[tuple[str, pa.DataType]]]:
    """The SELECT of the metrics rows whose time lies in any of the closed ``ranges`` of
    epoch microseconds (canonical column order; ``id_expr`` is the series id as text),
    its window condition alone, and the Arrow fields a fetch of it returns."""
    t, codec = layout.table, layout.codec
    tcol = t.c[cm.time_col]
    fields = [
        (SERIES_ID, pa.string()),
        (TS, codec.fetch_type),
        (VALUE, pa.float64()),
        *[(f, pa.float64()) for f in layout.features],
    ]
    cols = [id_expr, tcol, t.c[cm.target_col], *[t.c[f] for f in layout.features]]
    conds = []
    for lo, hi in ranges:
        parts = []
        if lo is not None:
            parts.append(tcol >= sa.literal(codec.param(lo), type_=tcol.type))
        if hi is not None:
            parts.append(tcol <= sa.literal(codec.param(hi), type_=tcol.type))
        conds.append(sa.and_(*parts) if parts else sa.true())
    window = sa.or_(*conds)
    return sa.select(*cols).where(window), window, fields


def check_metrics_table(
    table: sa.Table, cm: ColumnMap, codec_of: Callable[[], TsCodec]
) -> MetricsLayout:
    """Check a reflected metrics table against the ColumnMap; raise SchemaError naming the
    table, column and what exists. ``codec_of()`` tells how its time column stores
    instants (the dialect's check, run once the columns are known to exist)."""
    cols = {c.name: c for c in table.columns}
    have = list(cols)
    needed = [cm.id_col, cm.time_col, cm.target_col, *(cm.feature_cols or ())]
    missing = [c for c in needed if c not in cols]
    if missing:
        raise SchemaError(
            f"table {table.name!r} has no column(s) {missing}; its columns are {have}"
        )
    target_type = cols[cm.target_col].type
    if not is_numeric(target_type) and not isinstance(target_type, sa.types.NullType):
        raise SchemaError(
            f"target column {cm.target_col!r} of table {table.name!r} has type "
            f"{target_type}; it must be numeric"
        )
    if cm.feature_cols is not None:
        features = list(cm.feature_cols)
        for f in features:
            if not is_numeric(cols[f].type):
                raise SchemaError(
                    f"feature column {f!r} of table {table.name!r} has type {cols[f].type}; "
                    "it must be numeric"
                )
    else:
        features = [c for c in have if c not in cm.keys and is_numeric(cols[c].type)]
    cm.check_feature_names(features)
    return MetricsLayout(table, features, codec_of(), is_text(cols[cm.id_col].type))
