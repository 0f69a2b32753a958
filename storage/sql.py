"""SQL backend (SQLAlchemy 2 Core): SQLite embedded, PostgreSQL in production.

Bulk paths, one transaction per write:

* PostgreSQL: the rows go as CSV (written by Arrow) through psycopg 3's ``COPY`` into a
  temporary table, then one ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``.
  Reads run ``COPY (SELECT ...) TO STDOUT`` and Arrow parses the CSV.
* SQLite: ``INSERT ... ON CONFLICT (key) DO UPDATE`` through ``executemany``; reads fetch
  tuples straight into Arrow arrays.

Upsert statements are built with each dialect's own ``insert().on_conflict_do_update``.
Identifiers are validated (see ``storage.columns``) and quoted by the dialect; values are
always bound parameters.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from storage.base import Range, Store
from storage.columns import (
    ACCURACY_KEY,
    ACCURACY_SCHEMA,
    ACCURACY_SUMMARY,
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
    NonNumericValueWarning,
    SchemaError,
    StorageConnectionError,
    WriteError,
    is_driver_error,
    is_transient,
)
from storage.sqlcodec import TsCodec, detect_sqlite_codec
from storage.sqlschema import (
    MetricsLayout,
    accuracy_table,
    check_metrics_table,
    fine_codec,
    forecasts_table,
    grid_codec,
    latest_view_sql,
    new_metrics_table,
)
from storage.timeutil import timestamp_us

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
#: Rows per executemany batch (SQLite) between fault-injection points.
CHUNK_ROWS = 50_000
#: Rows fetched per call when reading from SQLite.
_FETCH_ROWS = 100_000
#: Advisory lock key taken while creating tables (PostgreSQL); any fixed 64-bit number.
_DDL_LOCK_KEY = 0x5707A6E


def _fault_point(label: str) -> None:
    """No-op hook between the steps of a write; tests replace it to inject a failure."""


def redact_url(url: sa.engine.URL) -> str:
    """The URL with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


class SqlStore(Store):
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
        try:
            sa_url = sa.engine.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise ConfigError(f"not a database URL: {exc}") from None
        super().__init__(redact_url(sa_url), columns, tables, freq, max_horizon)
        self._sa_url = sa_url
        self.engine = _make_engine(sa_url, engine_kwargs or {})
        self.dialect = self.engine.dialect.name
        if self.dialect not in SUPPORTED_DIALECTS:
            self.engine.dispose()
            raise ConfigError(
                f"database dialect {self.dialect!r} ({self._url}) is not supported; "
                f"supported: {list(SUPPORTED_DIALECTS)} and Parquet folders"
            )
        self.backend = "postgres" if self.dialect == "postgresql" else self.dialect
        self._q = self.engine.dialect.identifier_preparer.quote
        self._md = sa.MetaData()
        self.forecasts = forecasts_table(self._md, self.tables, self.dialect)
        self.accuracy = accuracy_table(self._md, self.tables, self.dialect)
        self._grid = grid_codec(self.dialect)
        self._fine = fine_codec(self.dialect)
        self._metrics: MetricsLayout | None = None
        try:
            with self.engine.begin() as conn:
                self._ensure_output_tables(conn)
                self._load_metrics_layout(conn)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise StorageConnectionError(self._connect_message(exc)) from None
        except BaseException:
            self.engine.dispose()
            raise

    # ------------------------------------------------------------- connection
    def _connect_message(self, exc: BaseException) -> str:
        u = self._sa_url
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()
        text = " ".join(line.strip() for line in detail)
        if u.password:
            text = text.replace(str(u.password), "***")
        if self.dialect == "sqlite":
            return f"cannot open SQLite database {u.database!r}: {text}"
        return (
            f"cannot connect to {self.dialect} database {u.database!r} at "
            f"{u.host or 'localhost'}:{u.port or 5432} as user {u.username!r}: {text}"
        )

    def close(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------- schema
    def _ensure_output_tables(self, conn: sa.Connection) -> None:
        """Create the forecasts and accuracy tables and the view when absent.

        On PostgreSQL a transaction-level advisory lock serialises this between processes
        opening the store at the same moment (e.g. the first predict and retrain runs).
        """
        if self.dialect == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_DDL_LOCK_KEY)))
        insp = sa.inspect(conn)
        for table in (self.forecasts, self.accuracy):
            if insp.has_table(table.name):
                have = {c["name"] for c in insp.get_columns(table.name)}
                missing = [c.name for c in table.columns if c.name not in have]
                if missing:
                    raise SchemaError(
                        f"existing table {table.name!r} lacks column(s) {missing}; it has "
                        f"{sorted(have)}"
                    )
            else:
                table.create(conn)
        if self.tables.latest_view not in insp.get_view_names():
            conn.exec_driver_sql(
                latest_view_sql(self.forecasts, self.tables.latest_view, self.engine.dialect)
            )

    def _load_metrics_layout(self, conn: sa.Connection) -> None:
        name = self.tables.metrics
        if not sa.inspect(conn).has_table(name):
            self._metrics = None
            return
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        codec = None
        if self.dialect == "sqlite":
            tcol = self.columns.time_col
            if tcol in table.c:
                # raw driver value: no SQLAlchemy type processing of what is stored
                q = self._q
                sample = conn.exec_driver_sql(
                    f"SELECT {q(tcol)} FROM {q(name)} WHERE {q(tcol)} IS NOT NULL LIMIT 1"
                ).scalar()
                codec = detect_sqlite_codec(sample, name, tcol)
        self._metrics = check_metrics_table(table, self.columns, self.dialect, codec)
        if self._metrics.codec.naive:
            self._warn(f"table {name!r} column {self.columns.time_col!r}")

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
        """Drop the view and the three tables (tests and clean-ups)."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {self._q(self.tables.latest_view)}")
            for name in (self.tables.accuracy, self.tables.forecasts, self.tables.metrics):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._q(name)}")
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
        with self.engine.begin() as conn:
            n = self._upsert(conn, layout.table, renamed, [cm.id_col, cm.time_col], codecs)
            _fault_point("before_commit")
        return n

    def _metrics_select(self, layout: MetricsLayout) -> tuple[list, list[tuple[str, pa.DataType]]]:
        cm, t = self.columns, layout.table
        idc = t.c[cm.id_col] if layout.id_is_text else sa.cast(t.c[cm.id_col], sa.Text)
        cols = [idc, t.c[cm.time_col], t.c[cm.target_col], *[t.c[f] for f in layout.features]]
        fields = [
            (SERIES_ID, pa.string()),
            (TS, layout.codec.fetch_type),
            (VALUE, pa.float64()),
            *[(f, pa.float64()) for f in layout.features],
        ]
        return cols, fields

    def _read_metrics(self, ranges: list[Range], ids: list[str] | None) -> pa.Table:
        layout = self._metrics_layout()
        cm, t, codec = self.columns, layout.table, layout.codec
        cols, fields = self._metrics_select(layout)
        tcol = t.c[cm.time_col]
        conds = []
        for lo, hi in ranges:
            parts = []
            if lo is not None:
                parts.append(tcol >= sa.literal(codec.param(lo), type_=tcol.type))
            if hi is not None:
                parts.append(tcol <= sa.literal(codec.param(hi), type_=tcol.type))
            conds.append(sa.and_(*parts) if parts else sa.true())
        stmt = sa.select(*cols).where(sa.or_(*conds))
        if ids is not None:
            if not ids:
                return _empty(fields, codec)
            stmt = stmt.where(self._in_ids(t.c[cm.id_col], ids, layout.id_is_text))
        tab = self._fetch(stmt, fields)
        return tab.set_column(1, TS, codec.decode(tab[TS]))

    def _in_ids(self, col: sa.ColumnElement, ids: Sequence[str], is_text: bool = True) -> Any:
        target = col if is_text else sa.cast(col, sa.Text)
        if self.dialect == "postgresql":
            return target == sa.any_(
                sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.Text))
            )
        each = sa.select(sa.column("value")).select_from(
            sa.func.json_each(sa.bindparam("ids_json", json.dumps(list(ids)), type_=sa.Text))
        )
        return target.in_(each.scalar_subquery())

    def _metrics_range(self) -> tuple[int, int, int] | None:
        layout = self._metrics_layout()
        t, cm = layout.table, self.columns
        stmt = sa.select(
            sa.func.min(t.c[cm.time_col]),
            sa.func.max(t.c[cm.time_col]),
            sa.func.count(sa.distinct(t.c[cm.id_col])),
        )
        with self.engine.connect() as conn:
            lo, hi, n = conn.execute(stmt).one()
        if lo is None or not n:
            return None
        return _scalar_us(layout.codec, lo), _scalar_us(layout.codec, hi), int(n)

    # -------------------------------------------------------------- forecasts
    def _ts_codecs(self, table: sa.Table) -> dict[str, TsCodec]:
        fine = {"created_at", "scored_at"}
        return {
            c.name: (self._fine if c.name in fine else self._grid)
            for c in table.columns
            if c.name in ("issued_at", "target_ts", "created_at", "scored_at")
        }

    def _write_forecasts(self, tab: pa.Table) -> int:
        with self.engine.begin() as conn:
            n = self._upsert(
                conn, self.forecasts, tab, list(FORECAST_KEY), self._ts_codecs(self.forecasts)
            )
            _fault_point("before_commit")
        return n

    def _read_table(
        self,
        source: sa.FromClause,
        schema: pa.Schema,
        where: list,
    ) -> pa.Table:
        codecs = {
            name: (self._fine if name in ("created_at", "scored_at") else self._grid)
            for name in schema.names
            if schema.field(name).type == TS_TYPE
        }
        fields = []
        for f in schema:
            if f.name in codecs:
                fields.append((f.name, codecs[f.name].fetch_type))
            elif pa.types.is_boolean(f.type) and self.dialect == "sqlite":
                fields.append((f.name, pa.int64()))  # SQLite stores booleans as 0/1
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
            where.append(self._in_ids(c.series_id, ids) if ids else sa.false())
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

    def _latest_view(self) -> sa.TableClause:
        return sa.table(
            self.tables.latest_view, *[sa.column(c.name, c.type) for c in self.forecasts.c]
        )

    def _read_latest(self, ids: list[str] | None, lo: int | None, hi: int | None) -> pa.Table:
        v = self._latest_view()
        return self._read_table(v, FORECAST_SCHEMA, self._where(v, ids, lo, hi))

    # --------------------------------------------------------------- accuracy
    def _write_accuracy(self, tab: pa.Table) -> int:
        with self.engine.begin() as conn:
            n = self._upsert(
                conn, self.accuracy, tab, list(ACCURACY_KEY), self._ts_codecs(self.accuracy)
            )
            _fault_point("before_commit")
        return n

    def _score(self, lo: int, hi: int, scored_at: int) -> int:
        layout = self._metrics_layout()
        if self.dialect == "sqlite" and not (layout.codec.canonical and layout.id_is_text):
            return self._score_generic(lo, hi, scored_at)
        cm, m, f, a = self.columns, layout.table, self.forecasts, self.accuracy
        mid = m.c[cm.id_col] if layout.id_is_text else sa.cast(m.c[cm.id_col], sa.Text)
        y = m.c[cm.target_col]
        sel = (
            sa.select(
                f.c.series_id,
                f.c.issued_at,
                f.c.step,
                f.c.target_ts,
                f.c.model_version,
                y,
                f.c.yhat,
                f.c.yhat_lower,
                f.c.yhat_upper,
                f.c.level,
                sa.func.abs(y - f.c.yhat),
                sa.and_(y >= f.c.yhat_lower, y <= f.c.yhat_upper),
                sa.literal(self._fine.param(scored_at), type_=a.c.scored_at.type),
            )
            .select_from(
                f.join(m, sa.and_(mid == f.c.series_id, m.c[cm.time_col] == f.c.target_ts))
            )
            .where(
                f.c.target_ts > sa.literal(self._grid.param(lo), f.c.target_ts.type),
                f.c.target_ts <= sa.literal(self._grid.param(hi), f.c.target_ts.type),
                y.is_not(None),
            )
        )
        ins = self._insert(a).from_select([c.name for c in a.columns], sel)
        ins = self._on_conflict(ins, a, list(ACCURACY_KEY), [c.name for c in a.columns])
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
        a = self.accuracy
        groups = [a.c[b] for b in by]
        covered = sa.case((a.c.covered, 1.0), else_=0.0)
        stmt = sa.select(
            *groups,
            sa.func.count().label("n"),
            sa.func.avg(a.c.abs_error).label("mae"),
            (
                100.0
                * sa.func.sum(a.c.abs_error)
                / sa.func.nullif(sa.func.sum(sa.func.abs(a.c.y)), 0)
            ).label("wape_pct"),
            (100.0 * sa.func.avg(covered)).label("coverage_pct"),
        ).where(*self._where(a, None, lo, hi))
        if groups:
            stmt = stmt.group_by(*groups)
        else:
            stmt = stmt.having(sa.func.count() > 0)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = pd.DataFrame([tuple(r) for r in rows], columns=[*by, *ACCURACY_SUMMARY])
        out["n"] = out["n"].astype("int64")
        for c in ("mae", "wape_pct", "coverage_pct", *(["level"] if "level" in by else [])):
            out[c] = out[c].astype("float64")
        if "step" in by:
            out["step"] = out["step"].astype("int64")
        for c in ("series_id", "model_version"):
            if c in by:
                out[c] = out[c].astype("str")
        return out

    # ------------------------------------------------------------------ admin
    def _row_counts(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        with self.engine.connect() as conn:
            insp = sa.inspect(conn)
            for key, name in (
                ("metrics", self.tables.metrics),
                ("forecasts", self.tables.forecasts),
                ("accuracy", self.tables.accuracy),
            ):
                if not insp.has_table(name):
                    out[key] = None
                    continue
                stmt = sa.select(sa.func.count()).select_from(sa.table(name))
                out[key] = int(conn.execute(stmt).scalar_one())
        return out

    # ------------------------------------------------------------- bulk paths
    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    @staticmethod
    def _on_conflict(ins: Any, table: sa.Table, key: list[str], cols: list[str]) -> Any:
        return ins.on_conflict_do_update(
            index_elements=[table.c[k] for k in key],
            set_={c: ins.excluded[c] for c in cols if c not in key},
        )

    def _upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        key: list[str],
        codecs: dict[str, TsCodec],
    ) -> int:
        """Upsert ``tab`` (column names = table's) inside the caller's transaction."""
        try:
            if self.dialect == "postgresql":
                return self._pg_upsert(conn, table, tab, key, codecs)
            return self._sqlite_upsert(conn, table, tab, key, codecs)
        except Exception as exc:
            # the bulk paths use the driver's own cursor: its errors arrive unwrapped
            if not is_driver_error(exc) or is_transient(exc):
                raise  # transient: the caller's retry policy decides
            detail = str(getattr(exc, "orig", None) or exc).strip()
            hint = ""
            if "ON CONFLICT" in detail.upper():
                hint = (
                    f" (table {table.name!r} needs a primary key or unique index on "
                    f"({', '.join(key)}); tables this store creates have one)"
                )
            raise WriteError(
                f"writing {tab.num_rows} rows into table {table.name!r} failed; nothing was "
                f"written: {detail}{hint}"
            ) from exc

    def _sqlite_upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        key: list[str],
        codecs: dict[str, TsCodec],
    ) -> int:
        cols = tab.column_names
        ins = self._insert(table).values({c: sa.bindparam(c) for c in cols})
        ins = self._on_conflict(ins, table, key, cols)
        compiled = ins.compile(dialect=self.engine.dialect)
        order = list(compiled.positiontup or [])
        if sorted(order) != sorted(cols):  # pragma: no cover - guards a SQLAlchemy change
            raise WriteError(f"unexpected parameter order {order} for columns {cols}")
        values: dict[str, list] = {}
        for c in cols:
            arr = tab[c]
            if c in codecs:
                us = arr.cast(pa.int64()).to_numpy()
                values[c] = codecs[c].encode(us)
            elif pa.types.is_boolean(arr.type):
                values[c] = arr.cast(pa.int8()).to_pylist()
            else:
                values[c] = arr.to_pylist()
        rows = list(zip(*(values[c] for c in order), strict=True))
        cur = conn.connection.driver_connection.cursor()
        try:
            sql = str(compiled)
            for i in range(0, len(rows), CHUNK_ROWS):
                cur.executemany(sql, rows[i : i + CHUNK_ROWS])
                _fault_point("chunk")
        finally:
            cur.close()
        return len(rows)

    def _pg_upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        tab: pa.Table,
        key: list[str],
        codecs: dict[str, TsCodec],
    ) -> int:
        cols = tab.column_names
        stage_name = f"_stage_{table.name}"
        stage_cols = []
        for c in cols:
            if c in codecs:
                stage_cols.append(sa.Column(c, sa.BigInteger))
            elif pa.types.is_boolean(tab[c].type):
                stage_cols.append(sa.Column(c, sa.Boolean))
            elif pa.types.is_floating(tab[c].type):
                stage_cols.append(sa.Column(c, sa.Double))
            elif pa.types.is_integer(tab[c].type):
                stage_cols.append(sa.Column(c, sa.BigInteger))
            else:
                stage_cols.append(sa.Column(c, sa.Text))
        stage = sa.Table(
            stage_name,
            sa.MetaData(),
            *stage_cols,
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        stage.create(conn)
        ship = tab
        for c in codecs:
            ship = ship.set_column(ship.schema.get_field_index(c), c, ship[c].cast(pa.int64()))
        buf = io.BytesIO()
        pacsv.write_csv(ship, buf, pacsv.WriteOptions(include_header=False))
        data = buf.getbuffer()
        q = self._q
        copy_sql = f"COPY {q(stage_name)} ({', '.join(q(c) for c in cols)}) FROM STDIN (FORMAT csv)"
        with conn.connection.driver_connection.cursor() as cur, cur.copy(copy_sql) as copy:
            step = 8 << 20
            for i in range(0, len(data), step):
                copy.write(data[i : i + step])
        _fault_point("staged")
        exprs = []
        for c in cols:
            if c in codecs:
                aware = getattr(table.c[c].type, "timezone", True)
                epoch = "TIMESTAMPTZ 'epoch'" if aware else "TIMESTAMP 'epoch'"
                exprs.append(
                    (
                        sa.literal_column(epoch)
                        + stage.c[c] * sa.literal_column("INTERVAL '1 microsecond'")
                    ).label(c)
                )
            else:
                exprs.append(sa.cast(stage.c[c], table.c[c].type).label(c))
        ins = self._insert(table).from_select(cols, sa.select(*exprs).select_from(stage))
        ins = self._on_conflict(ins, table, key, cols)
        conn.execute(ins)
        return tab.num_rows

    def _fetch(self, stmt: sa.Select, fields: list[tuple[str, pa.DataType]]) -> pa.Table:
        """Run a SELECT and return its rows as an Arrow table with ``fields``."""
        compiled = stmt.compile(dialect=self.engine.dialect)
        params = compiled.construct_params()
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            if self.dialect == "postgresql":
                return _pg_fetch(raw, str(compiled), params, fields)
            args = [params[k] for k in (compiled.positiontup or [])]
            return _sqlite_fetch(raw, str(compiled), args, fields)


def _pg_fetch(raw: Any, sql: str, params: dict, fields: list[tuple[str, pa.DataType]]) -> pa.Table:
    buf = io.BytesIO()
    with raw.cursor() as cur:
        with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", params) as copy:
            for block in copy:
                buf.write(block)
        raw.rollback()
    if buf.tell() == 0:
        return pa.schema(fields).empty_table()
    buf.seek(0)
    names = [n for n, _ in fields]
    return pacsv.read_csv(
        buf,
        read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(fields),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def _sqlite_fetch(
    raw: Any, sql: str, args: list, fields: list[tuple[str, pa.DataType]]
) -> pa.Table:
    struct = pa.struct(fields)
    chunks = []
    cur = raw.cursor()
    try:
        cur.execute(sql, args)
        while rows := cur.fetchmany(_FETCH_ROWS):
            try:
                chunks.append(pa.array(rows, type=struct))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                chunks.append(_tolerant_struct(rows, fields, struct))
    finally:
        cur.close()
    if not chunks:
        return pa.schema(fields).empty_table()
    return pa.Table.from_struct_array(pa.chunked_array(chunks, type=struct))


def _tolerant_struct(
    rows: list, fields: list[tuple[str, pa.DataType]], struct: pa.StructType
) -> pa.StructArray:
    """SQLite lets any value into a REAL column: read non-numbers in float columns as NULL
    (warned, with a count and an example) instead of failing the whole read."""
    arrays = []
    for j, (name, typ) in enumerate(fields):
        col = [r[j] for r in rows]
        if pa.types.is_floating(typ):
            bad = [v for v in col if v is not None and not isinstance(v, int | float)]
            if bad:
                col = [_as_float(v) for v in col]
                n_bad = sum(
                    1
                    for v, o in zip(col, (r[j] for r in rows), strict=True)
                    if v is None and o is not None
                )
                if n_bad:
                    warnings.warn(
                        f"column {name!r}: {n_bad} non-numeric value(s) read as missing, e.g. {bad[0]!r}",
                        NonNumericValueWarning,
                        stacklevel=4,
                    )
        arrays.append(pa.array(col, type=typ))
    return pa.StructArray.from_arrays(arrays, fields=list(struct))


def _as_float(v: Any) -> float | None:
    if v is None or isinstance(v, int | float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _empty(fields: list[tuple[str, pa.DataType]], codec: TsCodec) -> pa.Table:
    tab = pa.schema(fields).empty_table()
    return tab.set_column(1, TS, codec.decode(tab[TS]))


def _scalar_us(codec: TsCodec, value: Any) -> int:
    if hasattr(value, "tzinfo") and hasattr(value, "year"):  # datetime from PostgreSQL
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return timestamp_us(ts)
    return codec.decode_scalar(value)


def _make_engine(url: sa.engine.URL, extra: dict[str, Any]) -> sa.Engine:
    kwargs: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        # the bulk paths (COPY in and out) use psycopg 3's own cursor
        if url.get_driver_name() != "psycopg":
            raise ConfigError(
                f"PostgreSQL driver {url.get_driver_name()!r} in {redact_url(url)} is not "
                "supported: use postgresql+psycopg://... (psycopg 3)"
            )
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = 10
    elif url.get_backend_name() == "sqlite":
        connect_args["timeout"] = 30
        db = url.database
        if db and db != ":memory:" and not db.startswith("file:"):
            import os

            parent = os.path.dirname(os.path.abspath(db))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise StorageConnectionError(
                    f"cannot open SQLite database {db!r}: cannot create folder {parent!r}: "
                    f"{exc.strerror}"
                ) from None
    connect_args.update(extra.pop("connect_args", {}))
    kwargs.update(extra)
    try:
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"cannot use database URL {redact_url(url)}: {exc}") from None
    name = engine.dialect.name

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            if name == "postgresql":
                cur.execute("SET TIME ZONE 'UTC'")
                cur.execute("SET jit = off")
                dbapi_conn.commit()
            elif name == "sqlite":
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    return engine
