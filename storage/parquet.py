"""Parquet folder backend: a hive-partitioned dataset that DuckDB, pandas and pyarrow read.

Layout under the root folder (sub-folder names are the TableNames)::

    metrics/date=2024-01-08/part-13.parquet             rows with ts in 13:00-13:59 UTC
    forecasts/date=2024-01-08/20240108T131500Z.parquet  one file per issued_at
    forecast_accuracy/date=2024-01-08/part-14.parquet   rows with target_ts in 14:00-14:59
    forecast_accuracy_daily/day=2023-10-01.parquet      retention's roll-up of one day
    forecasts_alerts/alerts.parquet                      breach alerts (storage.alerts)

Files are sorted by time, with small row groups, so a range filter skips most of a file.
Reads pick files by their folder and name first (``storage.parquetpaths``: the recent
window touches the hour files of its three ranges only, e.g. the week-ago range in another
date folder), then push the time and series filters down to the row groups. Writes merge
new rows into the files they touch (upsert on the key) and replace them atomically, one
writer at a time (``storage.parquetfiles``: every file staged and fsynced, then renamed
over the old one; readers see the old or the new file, never half a file, and never wait).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from storage.base import Range, Store
from storage.columns import (
    ACCURACY_KEY,
    ACCURACY_SCHEMA,
    ADDED_COLUMNS,
    FORECAST_KEY,
    FORECAST_SCHEMA,
    SERIES_ID,
    TS,
    TS_TYPE,
    VALUE,
    ColumnMap,
    TableNames,
)
from storage.errors import ConfigError, SchemaError
from storage.parquetalerts import ParquetAlerts
from storage.parquetfiles import (
    FolderWriter,
    Plan,
    merge,
    remove_stale_temp_files,
    split_sorted,
)
from storage.parquetpaths import HOUR_US, FolderLayout
from storage.parquetretention import ParquetRetention
from storage.shards import Shard
from storage.timeutil import outside_ts_range


def _fault_point(label: str) -> None:
    """No-op hook between the steps of a write; tests replace it to inject a failure."""


def _fault(label: str) -> None:
    _fault_point(label)  # looked up at call time, so a replaced hook is seen


class ParquetStore(ParquetRetention, ParquetAlerts, Store):
    """Metrics and forecasts in a folder of Parquet files; see the module docstring."""

    backend = "parquet"

    def __init__(
        self,
        root: str | os.PathLike[str],
        columns: ColumnMap | None = None,
        tables: TableNames | None = None,
        freq: str | pd.Timedelta = "5min",
        max_horizon: int = 288,
        fsync: bool = True,
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        super().__init__(f"parquet://{self.root.as_posix()}", columns, tables, freq, max_horizon)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"Parquet store {str(self.root)!r} exists and is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create Parquet folder {str(self.root)!r}: {exc.strerror}"
            ) from None
        self._paths = FolderLayout(self.root, self.tables)
        self._files = FolderWriter(self.root, fsync, _fault)
        #: Temporary files of killed writers removed when the store opened.
        self.stale_temp_files_removed = remove_stale_temp_files(self._paths.date_folders())

    # ------------------------------------------------------------ file writes
    def _upsert_files(
        self, parts: list[tuple[Path, pa.Table]], key: list[str], order: list[str]
    ) -> int:
        """Merge each part into its file (upsert on ``key``), staged then replaced."""

        def merged(new: pa.Table) -> Plan:
            return lambda old: merge(old, new, key).sort_by([(k, "ascending") for k in order])

        n_rows = sum(p[1].num_rows for p in parts)
        self._files.write([(path, merged(new)) for path, new in parts], n_rows)
        return n_rows

    # ---------------------------------------------------------------- metrics
    def _write_metrics(self, tab: pa.Table) -> int:
        cm = self.columns
        tab = tab.rename_columns(
            [
                {SERIES_ID: cm.id_col, TS: cm.time_col, VALUE: cm.target_col}.get(c, c)
                for c in tab.column_names
            ]
        )
        parts = split_sorted(
            tab,
            cm.time_col,
            HOUR_US,
            lambda hour: self._paths.hour_path(self.tables.metrics, hour),
        )
        return self._upsert_files(parts, [cm.id_col, cm.time_col], [cm.time_col, cm.id_col])

    def _metrics_schema(self, files: Sequence[Path | pa.NativeFile]) -> pa.Schema:
        if not files:
            all_files = self._paths.all_files(self.tables.metrics)
            if not all_files:
                raise SchemaError(
                    f"metrics folder {str(self._paths.dir(self.tables.metrics))!r} holds no Parquet "
                    f"files (expected date=YYYY-MM-DD/*.parquet); folders present: "
                    f"{sorted(p.name for p in self.root.iterdir() if p.is_dir())}"
                )
            files = all_files[-1:]
        return pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")

    def _metrics_plan(self, schema: pa.Schema) -> tuple[list[str], pa.DataType]:
        """Check the metrics schema; return the feature columns and the time type."""
        cm = self.columns
        names = schema.names
        where = f"metrics folder {str(self._paths.dir(self.tables.metrics))!r}"
        needed = [*cm.keys, *(cm.feature_cols or ())]
        missing = [c for c in needed if c not in names]
        if missing:
            raise SchemaError(f"{where} has no column(s) {missing}; its columns are {names}")
        ttype = schema.field(cm.target_col).type
        if not (
            pa.types.is_integer(ttype) or pa.types.is_floating(ttype) or pa.types.is_decimal(ttype)
        ):
            raise SchemaError(
                f"target column {cm.target_col!r} in {where} has type {ttype}; it must be numeric"
            )
        time_type = schema.field(cm.time_col).type
        if not pa.types.is_timestamp(time_type):
            raise SchemaError(
                f"time column {cm.time_col!r} in {where} has type {time_type}; "
                "it must be a timestamp"
            )
        if time_type.tz is None:
            self._warn(f"{where} column {cm.time_col!r}")

        def numeric(t: pa.DataType) -> bool:
            return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)

        if cm.feature_cols is not None:
            features = list(cm.feature_cols)
            for f in features:
                if not numeric(schema.field(f).type):
                    raise SchemaError(
                        f"feature column {f!r} in {where} has type {schema.field(f).type}; "
                        "it must be numeric"
                    )
        else:
            features = [n for n in names if n not in cm.keys and numeric(schema.field(n).type)]
        cm.check_feature_names(features)
        return features, time_type

    def _read_metrics(self, ranges: list[Range], ids: list[str] | None) -> pa.Table:
        files = self._paths.hour_files(self.tables.metrics, ranges)
        return self._scan_metrics(files, ranges, ids, None)

    def _read_shard_metrics(self, ranges: list[Range], shard: Shard) -> pa.Table:
        """Two scans of the same open files (a file a writer replaces in between is still
        read as it was: one version of each file, as one read): the files' series ids
        (one column), hashed here, then the window's rows of the ids the shard owns,
        filtered during the scan: the whole window is never held in memory. (The files
        are sorted by time, so the scan still decodes every row of the window: this saves
        memory, not decoding; see BENCHMARKS.md section 8.)"""
        files = self._paths.hour_files(self.tables.metrics, ranges)
        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(pa.OSFile(str(f))) for f in files]
            return self._scan_metrics(handles, ranges, None, shard)

    def _scan_metrics(
        self,
        files: Sequence[Path | pa.NativeFile],
        ranges: list[Range],
        ids: list[str] | None,
        shard: Shard | None,
    ) -> pa.Table:
        cm = self.columns
        schema = self._metrics_schema(files)
        features, time_type = self._metrics_plan(schema)
        cols = [cm.id_col, cm.time_col, cm.target_col, *features]
        out_names = [SERIES_ID, TS, VALUE, *features]
        empty = _canonical_metrics(schema.empty_table().select(cols), out_names)
        if not files or (ids is not None and not ids):
            return empty
        t = pc.field(cm.time_col)
        conds = []
        for lo, hi in ranges:
            c = None
            if lo is not None:
                c = t >= _ts_scalar(lo, time_type)
            if hi is not None:
                c2 = t <= _ts_scalar(hi, time_type)
                c = c2 if c is None else (c & c2)
            conds.append(c)
        expr = None
        if not any(c is None for c in conds):
            for c in conds:
                expr = c if expr is None else (expr | c)
        id_type = schema.field(cm.id_col).type
        if ids is not None:
            ic = pc.field(cm.id_col).isin(
                pa.array(ids, type=id_type) if pa.types.is_string(id_type) else pa.array(ids)
            )
            expr = ic if expr is None else (expr & ic)
        if all(isinstance(f, Path) for f in files):
            dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
        else:
            fmt = ds.ParquetFileFormat()
            dataset = ds.FileSystemDataset([fmt.make_fragment(f) for f in files], schema, fmt)
        if shard is not None:
            # every id in the files, not only the window's: a superset the second scan's
            # time filter narrows, read without decoding the time column (2x faster)
            owned = shard.owned(dataset.to_table(columns=[cm.id_col])[cm.id_col])
            if len(owned) == 0:
                return empty
            ic = pc.field(cm.id_col).isin(owned)
            expr = ic if expr is None else (expr & ic)
        tab = dataset.to_table(columns=cols, filter=expr)
        return _canonical_metrics(tab, out_names)

    def _metrics_range(self) -> tuple[int, int, int, int] | None:
        cm = self.columns
        files = self._paths.all_files(self.tables.metrics)
        schema = self._metrics_schema(files)
        self._metrics_plan(schema)
        if not files:
            return None
        tab = ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table(
            columns=[cm.id_col, cm.time_col]
        )
        if tab.num_rows == 0:
            return None
        ts = (
            tab[cm.time_col].cast(TS_TYPE)
            if tab[cm.time_col].type.tz
            else (tab[cm.time_col].cast(pa.timestamp("us")).cast(TS_TYPE))
        )
        bad = outside_ts_range(ts)
        skipped = int(pc.sum(bad).as_py() or 0)
        ts, ids = ts.filter(pc.invert(bad)), tab[cm.id_col].filter(pc.invert(bad))
        if len(ts) == 0:
            return (0, 0, 0, skipped) if skipped else None
        mm = pc.min_max(ts)
        n = pc.count_distinct(ids.cast(pa.string())).as_py()
        return mm["min"].value, mm["max"].value, int(n), skipped

    # -------------------------------------------------------------- forecasts
    def _write_forecasts(self, tab: pa.Table) -> int:
        parts = split_sorted(tab, "issued_at", 1, lambda issued: self._paths.issued_path(issued))
        return self._upsert_files(parts, list(FORECAST_KEY), ["step", "series_id"])

    def _replace_forecasts(self, tab: pa.Table, owned: list[int], shard: Shard | None) -> int:
        """Each owned slot's file gets exactly ``tab``'s rows for it (removed when none):
        rows of the old file, of any series, do not survive; with ``shard``, the old rows of
        the other shards' series do (the file is rewritten under the writer lock, so
        shards writing at once each keep the others' rows)."""
        split = split_sorted(tab, "issued_at", 1, self._paths.issued_path) if tab.num_rows else []
        by_path = dict(split)
        order = [("step", "ascending"), ("series_id", "ascending")]
        plans: list[tuple[Path, Plan]] = []
        for path in (self._paths.issued_path(us) for us in owned):
            new = by_path.get(path)
            new = None if new is None else new.sort_by(order)
            plans.append((path, new if shard is None else _keep_others(shard, new)))
        self._files.write(plans, tab.num_rows)
        return tab.num_rows

    def _slot_series(self, owned: list[int]) -> pa.Table:
        parts = []
        for us in owned:
            path = self._paths.issued_path(us)
            if not path.exists():
                continue
            ids = pc.unique(pq.read_table(path, columns=["series_id"])["series_id"])
            parts.append(
                pa.table(
                    {
                        "issued_at": pa.array([us] * len(ids), pa.int64()),
                        "series_id": ids.cast(pa.string()),
                    }
                )
            )
        if not parts:
            return pa.table(
                {"issued_at": pa.array([], pa.int64()), "series_id": pa.array([], pa.string())}
            )
        return pa.concat_tables(parts)

    def _forecast_candidates(
        self, issued: int | None, lo: int | None, hi: int | None
    ) -> list[Path]:
        if issued is not None:
            path = self._paths.issued_path(issued)
            return [path] if path.exists() else []
        f = self._freq_us
        ilo = None if lo is None else lo - self.max_horizon * f
        ihi = None if hi is None else hi - f
        return [p for _, p in self._paths.issued_files(ilo, ihi)]

    def _issued_slots(self, lo: int | None, hi: int | None) -> list[int]:
        return [issued for issued, _ in self._paths.issued_files(lo, hi)]

    def _read_forecasts(
        self, issued: int | None, ids: list[str] | None, lo: int | None, hi: int | None
    ) -> pa.Table:
        files = self._forecast_candidates(issued, lo, hi)
        return _read_files(files, FORECAST_SCHEMA, _target_filter(lo, hi, ids))

    def _read_latest(self, ids: list[str] | None, lo: int | None, hi: int | None) -> pa.Table:
        tab = self._read_forecasts(None, ids, lo, hi)
        if tab.num_rows == 0:
            return tab
        latest = tab.group_by(["series_id", "target_ts"]).aggregate([("issued_at", "max")])
        out = tab.join(
            latest,
            keys=["series_id", "target_ts", "issued_at"],
            right_keys=["series_id", "target_ts", "issued_at_max"],
            join_type="inner",
        )
        return out.select(FORECAST_SCHEMA.names).cast(FORECAST_SCHEMA)

    # --------------------------------------------------------------- accuracy
    def _score(self, lo: int, hi: int, scored_at: int) -> int:
        return self._score_generic(lo, hi, scored_at)

    def _write_accuracy(self, tab: pa.Table) -> int:
        parts = split_sorted(
            tab,
            "target_ts",
            HOUR_US,
            lambda hour: self._paths.hour_path(self.tables.accuracy, hour),
        )
        return self._upsert_files(parts, list(ACCURACY_KEY), ["target_ts", "series_id", "step"])

    def _read_accuracy_rows(
        self, lo: int | None, hi: int | None, ids: list[str] | None
    ) -> pa.Table:
        files = self._paths.hour_files(self.tables.accuracy, [(lo, hi)])
        return _read_files(files, ACCURACY_SCHEMA, _target_filter(lo, hi, ids))

    # ------------------------------------------------------------------ admin
    def _row_counts(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for key, name in (
            ("metrics", self.tables.metrics),
            ("forecasts", self.tables.forecasts),
            ("accuracy", self.tables.accuracy),
        ):
            files = self._paths.all_files(name)
            out[key] = (
                sum(pq.ParquetFile(f).metadata.num_rows for f in files)
                if files
                else (0 if self._paths.dir(name).is_dir() else None)
            )
        out["accuracy_daily"] = self._daily_rows()
        out["alerts"] = self._alerts_rows()
        return out


def _keep_others(shard: Shard, new: pa.Table | None) -> Plan:
    """A slot file's new content: its rows of other shards' series, then ``new``."""

    def plan(old: pa.Table | None) -> pa.Table | None:
        kept = None if old is None else old.filter(pa.array(~shard.mask(old["series_id"])))
        parts = [t for t in (kept, new) if t is not None and t.num_rows]
        if not parts:
            return None
        merged = (
            pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
        )
        return merged.sort_by([("step", "ascending"), ("series_id", "ascending")])

    return plan


def _ts_scalar(us: int, typ: pa.DataType) -> pa.Scalar:
    """Epoch microseconds as a scalar of the stored timestamp type (naive = UTC)."""
    s = pa.scalar(us, type=pa.int64()).cast(pa.timestamp("us"))
    if typ.tz is not None:
        s = s.cast(pa.timestamp("us", tz=typ.tz))
    return s.cast(typ)


def _canonical_metrics(tab: pa.Table, names: list[str]) -> pa.Table:
    tab = tab.rename_columns(names)
    ts = tab[TS]
    ts = ts.cast(TS_TYPE) if ts.type.tz is not None else ts.cast(pa.timestamp("us")).cast(TS_TYPE)
    tab = tab.set_column(1, TS, ts)
    tab = tab.set_column(0, SERIES_ID, tab[SERIES_ID].cast(pa.string()))
    for i, name in enumerate(names[2:], start=2):
        tab = tab.set_column(i, name, tab[name].cast(pa.float64()))
    return tab


def _target_filter(lo: int | None, hi: int | None, ids: list[str] | None) -> pc.Expression | None:
    expr = None
    t = pc.field("target_ts")
    if lo is not None:
        expr = t >= pa.scalar(lo, pa.int64()).cast(TS_TYPE)
    if hi is not None:
        c = t <= pa.scalar(hi, pa.int64()).cast(TS_TYPE)
        expr = c if expr is None else expr & c
    if ids is not None:
        c = pc.field("series_id").isin(pa.array(ids, type=pa.string()))
        expr = c if expr is None else expr & c
    return expr


def _read_files(files: list[Path], schema: pa.Schema, expr: pc.Expression | None) -> pa.Table:
    if not files:
        return schema.empty_table()
    dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
    tab = dataset.to_table(columns=schema.names, filter=expr)
    for name, value in ADDED_COLUMNS.items():  # files written before the column existed
        if name in schema.names and tab[name].null_count:
            i = tab.schema.get_field_index(name)
            tab = tab.set_column(i, name, pc.fill_null(tab[name], value))
    return tab
