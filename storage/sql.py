"""SQL backend (SQLAlchemy 2 Core): SQLite embedded, PostgreSQL in production.

``SqlStore`` holds what is the same on every database: the schema (created when absent),
reads, scoring and the shape of each write (one transaction). What differs per database,
the bulk paths (PostgreSQL ``COPY``, SQLite ``executemany``), insert/upsert statements,
``series_id IN`` filters, session setup and locks, is its ``dialect`` object
(``storage.sqldialect``), chosen once from the URL. Identifiers are validated (see
``storage.columns``) and quoted by the dialect; values are always bound parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from storage.base import Range, Store
from storage.columns import (
    ACCURACY_KEY,
    ACCURACY_SCHEMA,
    FORECAST_KEY,
    FORECAST_SCHEMA,
    SERIES_ID,
    TS,
    TS_TYPE,
    VALUE,
    ColumnMap,
    TableNames,
)
from storage.errors import (
    ConfigError,
    SchemaError,
    WriteError,
    is_driver_error,
    is_transient,
)
from storage.redact import encode_userinfo, redact_url
from storage.scores import SqlScoresMixin
from storage.shards import Shard
from storage.sqlaccuracy import score_select, summary_frame, summary_select
from storage.sqlalerts import SqlAlerts
from storage.sqlcodec import TsCodec
from storage.sqldialect import SqlDialect, dialect_for
from storage.sqlmigrate import add_missing_columns, ensure_latest_view
from storage.sqlretention import SqlRetention
from storage.sqlschema import (
    MetricsLayout,
    accuracy_daily_table,
    accuracy_table,
    alerts_table,
    check_metrics_table,
    forecasts_table,
    metrics_window,
    new_metrics_table,
)
from storage.sqlshards import SqlShards, metrics_rows
from storage.timeutil import TS_END_US, TS_MIN_US, timestamp_us


def _fault_point(label: str) -> None:
    """No-op hook between the steps of a write; tests replace it to inject a failure."""


def _fault(label: str) -> None:
    _fault_point(label)  # looked up at call time, so a replaced hook is seen


class SqlStore(SqlShards, SqlScoresMixin, SqlRetention, SqlAlerts, Store):
    """Metrics and forecasts in a SQL database; see the module docstring."""

    def __init__(
        self,
        url: str | sa.engine.URL,
        columns: ColumnMap | None = None,
        tables: TableNames | None = None,
        freq: str | pd.Timedelta = "5min",
        max_horizon: int = 288,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        raw = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        raw = encode_userinfo(raw)  # user:p@ss@host: the host is what follows the last '@'
        shown = redact_url(raw)
        try:
            sa_url = sa.engine.make_url(raw)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise ConfigError(f"not a database URL: {exc}") from None
        super().__init__(shown, columns, tables, freq, max_horizon)
        #: Everything that differs between databases (``storage.sqldialect``).
        self.dialect: SqlDialect = dialect_for(sa_url, shown)
        self.backend = self.dialect.backend
        self.engine = self.dialect.create_engine(engine_kwargs or {})
        self._md = sa.MetaData()
        self.forecasts = forecasts_table(self._md, self.tables, self.dialect)
        self.accuracy = accuracy_table(self._md, self.tables, self.dialect)
        self.daily = accuracy_daily_table(self._md, self.tables, self.dialect)
        self.alerts = alerts_table(self._md, self.tables, self.dialect)
        self._grid, self._fine = self.dialect.grid, self.dialect.fine
        self._metrics: MetricsLayout | None = None
        try:
            with self.engine.begin() as conn:
                self._ensure_output_tables(conn)
                self._load_metrics_layout(conn)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise self.dialect.connection_error(exc) from None
        except sa.exc.ProgrammingError as exc:
            self.engine.dispose()
            detail = self.dialect.detail(exc)
            if "connection option" in detail or "invalid dsn" in detail.lower():
                raise ConfigError(f"cannot use database URL {shown}: {detail}") from None
            raise
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------- schema
    def _ensure_output_tables(self, conn: sa.Connection) -> None:
        """Create the output tables and the view when absent (under the dialect's DDL lock:
        e.g. the first predict and retrain runs opening the store at the same moment)."""
        self.dialect.lock_ddl(conn)
        insp = sa.inspect(conn)
        for table in (self.forecasts, self.accuracy, self.daily, self.alerts):
            if insp.has_table(table.name):
                have = {c["name"] for c in insp.get_columns(table.name)}
                have |= set(add_missing_columns(conn, table, have, self.dialect))
                missing = [c.name for c in table.columns if c.name not in have]
                if missing:
                    raise SchemaError(
                        f"existing table {table.name!r} lacks column(s) {missing}; it has "
                        f"{sorted(have)}"
                    )
            else:
                table.create(conn)
        ensure_latest_view(conn, self.tables.latest_view, self.forecasts, self.dialect)

    def _load_metrics_layout(self, conn: sa.Connection) -> None:
        name = self.tables.metrics
        if not sa.inspect(conn).has_table(name):
            self._metrics = None
            return
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        tcol = self.columns.time_col
        self._metrics = check_metrics_table(
            table, self.columns, lambda: self.dialect.time_codec(conn, table, tcol)
        )
        if self._metrics.codec.naive:
            self._warn(f"table {name!r} column {tcol!r}")

    def _metrics_layout(self) -> MetricsLayout:
        if self._metrics is None:
            with self.engine.connect() as conn:
                self._load_metrics_layout(conn)
        if self._metrics is None:
            with self.engine.connect() as conn:
                tables = sorted(sa.inspect(conn).get_table_names())
            raise SchemaError(
                f"metrics table {self.tables.metrics!r} does not exist in {self._url}; "
                f"tables present: {tables}"
            )
        return self._metrics

    def drop_all(self) -> None:
        """Drop the view and the five tables (tests and clean-ups)."""
        q, t = self.dialect.quote, self.tables
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {q(self.tables.latest_view)}")
            for name in (t.alerts, t.accuracy_daily, t.accuracy, t.forecasts, t.metrics):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q(name)}")
        self._metrics = None

    # ---------------------------------------------------------------- metrics
    def _write_metrics(self, tab: pa.Table) -> int:
        cm = self.columns
        features = [c for c in tab.column_names if c not in (SERIES_ID, TS, VALUE)]
        if self._metrics is None:
            with self.engine.begin() as conn:
                self._load_metrics_layout(conn)
                if self._metrics is None:
                    new_metrics_table(
                        sa.MetaData(), self.tables, cm, features, self.dialect
                    ).create(conn)
                    self._load_metrics_layout(conn)
        layout = self._metrics_layout()
        have = [c.name for c in layout.table.columns]
        extra = [f for f in features if f not in have]
        if extra:
            raise SchemaError(
                f"table {layout.table.name!r} has no column(s) {extra} for the frame's "
                f"features; its columns are {have}"
            )
        renamed = tab.rename_columns(
            [
                {SERIES_ID: cm.id_col, TS: cm.time_col, VALUE: cm.target_col}.get(c, c)
                for c in tab.column_names
            ]
        )
        codecs = {cm.time_col: layout.codec}
        key = [cm.id_col, cm.time_col]
        with self.engine.begin() as conn, self._write_errors(layout.table, tab.num_rows, key):
            n = self.dialect.bulk_upsert(conn, layout.table, renamed, key, codecs, _fault)
            _fault_point("before_commit")
        return n

    def _id_expr(self, layout: MetricsLayout) -> sa.ColumnElement:
        col = layout.table.c[self.columns.id_col]
        return col if layout.id_is_text else sa.cast(col, sa.Text)

    def _read_metrics(self, ranges: list[Range], ids: list[str] | None) -> pa.Table:
        layout = self._metrics_layout()
        stmt, _, fields = metrics_window(layout, self.columns, self._id_expr(layout), ranges)
        if ids:
            stmt = stmt.where(self.dialect.in_ids(self._id_expr(layout), ids))
        parts = [] if ids is not None and not ids else [self._fetch(stmt, fields)]
        return metrics_rows(layout, parts, fields)

    def _metrics_range(self) -> tuple[int, int, int, int] | None:
        layout = self._metrics_layout()
        t, cm, codec = layout.table, self.columns, layout.codec
        tcol = t.c[cm.time_col]
        inside = sa.and_(
            tcol >= sa.literal(codec.param(TS_MIN_US), tcol.type),
            tcol < sa.literal(codec.param(TS_END_US), tcol.type),
        )
        stmt = sa.select(  # one scan: the range of readable rows, and how many are not
            sa.func.min(sa.case((inside, tcol))),
            sa.func.max(sa.case((inside, tcol))),
            sa.func.count(sa.distinct(sa.case((inside, t.c[cm.id_col])))),
            sa.func.count() - sa.func.count(sa.case((inside, 1))),
        )
        with self.engine.connect() as conn:
            lo, hi, n, skipped = conn.execute(stmt).one()
        if lo is None or not n:
            return None if not skipped else (0, 0, 0, int(skipped))
        return _scalar_us(codec, lo), _scalar_us(codec, hi), int(n), int(skipped or 0)

    # -------------------------------------------------------------- forecasts
    def _ts_codecs(self, table: sa.Table) -> dict[str, TsCodec]:
        fine = {"created_at", "scored_at"}
        return {
            c.name: (self._fine if c.name in fine else self._grid)
            for c in table.columns
            if c.name in ("issued_at", "target_ts", "created_at", "scored_at")
        }

    @contextlib.contextmanager
    def _write_errors(self, table: sa.Table, n_rows: int, key: Sequence[str]) -> Iterator[None]:
        """Driver errors of a write become a WriteError naming the table (transient ones
        pass through: the caller's retry policy decides)."""
        try:
            yield
        except Exception as exc:
            # the bulk paths use the driver's own cursor: its errors arrive unwrapped
            if not is_driver_error(exc) or is_transient(exc):
                raise
            detail = str(getattr(exc, "orig", None) or exc).strip()
            hint = ""
            if self.dialect.is_missing_key_error(detail):
                hint = (
                    f" (table {table.name!r} needs a primary key or unique index on "
                    f"({', '.join(key)}); tables this store creates have one)"
                )
            raise WriteError(
                f"writing {n_rows} rows into table {table.name!r} failed; nothing was "
                f"written: {detail}{hint}"
            ) from exc

    def _write_forecasts(self, tab: pa.Table) -> int:
        f, key = self.forecasts, list(FORECAST_KEY)
        with self.engine.begin() as conn, self._write_errors(f, tab.num_rows, key):
            n = self.dialect.bulk_upsert(conn, f, tab, key, self._ts_codecs(f), _fault)
            _fault_point("before_commit")
        return n

    def _replace_forecasts(self, tab: pa.Table, owned: list[int], shard: Shard | None) -> int:
        f, key = self.forecasts, list(FORECAST_KEY)
        ids = None if shard is None else self._shard_ids(owned, shard, tab)
        with self.engine.begin() as conn, self._write_errors(f, tab.num_rows, key):
            # all rows of the slots; with a shard only its series' (the others' rows stay)
            self._delete_shard(conn, owned, ids)
            _fault_point("deleted")
            n = self.dialect.bulk_insert(conn, f, tab, self._ts_codecs(f), _fault)
            _fault_point("before_commit")
        return n

    def _read_table(self, source: sa.FromClause, schema: pa.Schema, where: list) -> pa.Table:
        codecs = {
            name: (self._fine if name in ("created_at", "scored_at") else self._grid)
            for name in schema.names
            if schema.field(name).type == TS_TYPE
        }
        fields = []
        for f in schema:
            if f.name in codecs:
                fields.append((f.name, codecs[f.name].fetch_type))
            elif pa.types.is_boolean(f.type):
                fields.append((f.name, self.dialect.bool_fetch_type))
            else:
                fields.append((f.name, f.type))
        stmt = sa.select(*[source.c[n] for n in schema.names]).where(*where)
        tab = self._fetch(stmt, fields)
        for name, codec in codecs.items():
            tab = tab.set_column(tab.schema.get_field_index(name), name, codec.decode(tab[name]))
        return tab.cast(schema)

    def _where(
        self,
        source: sa.FromClause,
        ids: list[str] | None,
        lo: int | None,
        hi: int | None,
        issued: int | None = None,
    ) -> list:
        c = source.c
        where: list = []
        if issued is not None:
            where.append(c.issued_at == sa.literal(self._grid.param(issued), c.issued_at.type))
        if lo is not None:
            where.append(c.target_ts >= sa.literal(self._grid.param(lo), c.target_ts.type))
        if hi is not None:
            where.append(c.target_ts <= sa.literal(self._grid.param(hi), c.target_ts.type))
        if ids is not None:
            where.append(self.dialect.in_ids(c.series_id, ids) if ids else sa.false())
        return where

    def _read_forecasts(
        self, issued: int | None, ids: list[str] | None, lo: int | None, hi: int | None
    ) -> pa.Table:
        f = self.forecasts
        return self._read_table(f, FORECAST_SCHEMA, self._where(f, ids, lo, hi, issued))

    def _issued_slots(self, lo: int | None, hi: int | None) -> list[int]:
        col = self.forecasts.c.issued_at
        where = []
        if lo is not None:
            where.append(col >= sa.literal(self._grid.param(lo), type_=col.type))
        if hi is not None:
            where.append(col <= sa.literal(self._grid.param(hi), type_=col.type))
        tab = self._fetch(
            sa.select(col).where(*where).distinct(), [("issued_at", self._grid.fetch_type)]
        )
        return [int(v) for v in self._grid.decode(tab["issued_at"]).cast(pa.int64()).to_pylist()]

    def _read_latest(self, ids: list[str] | None, lo: int | None, hi: int | None) -> pa.Table:
        v = sa.table(
            self.tables.latest_view, *[sa.column(c.name, c.type) for c in self.forecasts.c]
        )
        return self._read_table(v, FORECAST_SCHEMA, self._where(v, ids, lo, hi))

    # --------------------------------------------------------------- accuracy
    def _write_accuracy(self, tab: pa.Table) -> int:
        a, key = self.accuracy, list(ACCURACY_KEY)
        with self.engine.begin() as conn, self._write_errors(a, tab.num_rows, key):
            n = self.dialect.bulk_upsert(conn, a, tab, key, self._ts_codecs(a), _fault)
            _fault_point("before_commit")
        return n

    def _score(self, lo: int, hi: int, scored_at: int) -> int:
        layout = self._metrics_layout()
        if not self.dialect.can_score_in_sql(layout):
            return self._score_generic(lo, hi, scored_at)
        a = self.accuracy
        sel = score_select(
            self.forecasts,
            layout.table,
            self._id_expr(layout),
            self.columns,
            (self._grid.param(lo), self._grid.param(hi)),
            sa.literal(self._fine.param(scored_at), type_=a.c.scored_at.type),
        )
        cols = [c.name for c in a.columns]
        ins = self.dialect.upsert(
            self.dialect.insert(a).from_select(cols, sel), a, ACCURACY_KEY, cols
        )
        with self.engine.begin() as conn:
            n = conn.execution_options(preserve_rowcount=True).execute(ins).rowcount
            _fault_point("before_commit")
        return int(n)

    def _read_accuracy_rows(
        self, lo: int | None, hi: int | None, ids: list[str] | None
    ) -> pa.Table:
        a = self.accuracy
        return self._read_table(a, ACCURACY_SCHEMA, self._where(a, ids, lo, hi))

    def _accuracy_summary(
        self, lo: int | None, hi: int | None, by: tuple[str, ...]
    ) -> pd.DataFrame:
        stmt = summary_select(self.accuracy, by, self._where(self.accuracy, None, lo, hi))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return summary_frame(rows, by)

    # ------------------------------------------------------------------ admin
    def _row_counts(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        with self.engine.connect() as conn:
            insp = sa.inspect(conn)
            for key, name in (
                ("metrics", self.tables.metrics),
                ("forecasts", self.tables.forecasts),
                ("accuracy", self.tables.accuracy),
                ("accuracy_daily", self.tables.accuracy_daily),
                ("alerts", self.tables.alerts),
            ):
                if not insp.has_table(name):
                    out[key] = None
                    continue
                stmt = sa.select(sa.func.count()).select_from(sa.table(name))
                out[key] = int(conn.execute(stmt).scalar_one())
        return out

    def _fetch(self, stmt: sa.Select, fields: list[tuple[str, pa.DataType]]) -> pa.Table:
        """Run a SELECT and return its rows as an Arrow table with ``fields``."""
        with self.engine.connect() as conn:
            return self.dialect.fetch(conn, stmt, fields)


def _scalar_us(codec: TsCodec, value: Any) -> int:
    if hasattr(value, "tzinfo") and hasattr(value, "year"):  # datetime from PostgreSQL
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return timestamp_us(ts)
    return codec.decode_scalar(value)
