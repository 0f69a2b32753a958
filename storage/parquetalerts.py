"""Breach alerts in a Parquet folder (``storage.alerts``): the four primitives of
``ParquetStore``.

All alerts are one small file, ``<root>/<forecasts>_alerts/alerts.parquet`` (one row per
alert; retention keeps it bounded). A write merges the changed alerts into it on
``(series_id, direction, started_at)`` and replaces it atomically under the writer lock
(staged, fsynced, renamed: ``storage.parquetfiles``), so a reader sees the old file or the new
one. The scored rows the detector reads come from the accuracy hour files of the range,
filtered to one step as they are read.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from storage.alerts import BREACH_COLUMNS
from storage.breaches import OPEN, RESOLVED
from storage.columns import ACCURACY_SCHEMA, ALERT_KEY, ALERT_SCHEMA, TS_TYPE
from storage.parquetfiles import FolderWriter, merge
from storage.parquetpaths import FolderLayout

_ORDER = [(k, "ascending") for k in ALERT_KEY]


def _ts(us: int) -> pa.Scalar:
    return pa.scalar(us, pa.int64()).cast(TS_TYPE)


class ParquetAlerts:
    """The alert primitives of ``ParquetStore`` (see the module docstring)."""

    _paths: FolderLayout
    _files: FolderWriter

    def _read_breach_rows(self, lo: int, hi: int, step: int) -> pa.Table:
        files = self._paths.hour_files(self._paths.tables.accuracy, [(lo, hi)])
        if not files:
            return pa.schema([ACCURACY_SCHEMA.field(c) for c in BREACH_COLUMNS]).empty_table()
        t = pc.field("target_ts")
        expr = (t >= _ts(lo)) & (t <= _ts(hi)) & (pc.field("step") == step)
        dataset = ds.dataset([str(f) for f in files], schema=ACCURACY_SCHEMA, format="parquet")
        return dataset.to_table(columns=list(BREACH_COLUMNS), filter=expr)

    def _alerts_stored(self) -> pa.Table:
        path = self._paths.alerts_path()
        if not path.exists():
            return ALERT_SCHEMA.empty_table()
        return pq.read_table(path).cast(ALERT_SCHEMA)

    def _read_alert_rows(
        self, open_only: bool, ids: list[str] | None, since: int | None
    ) -> pa.Table:
        tab = self._alerts_stored()
        status = tab["status"]
        keep = pa.array([True] * tab.num_rows, pa.bool_())
        if open_only:
            keep = pc.and_(keep, pc.equal(status, OPEN))
        if ids is not None:
            keep = pc.and_(keep, pc.is_in(tab["series_id"], pa.array(ids, pa.string())))
        if since is not None:
            later = pc.fill_null(pc.greater_equal(tab["resolved_at"], _ts(since)), False)
            keep = pc.and_(keep, pc.or_(pc.equal(status, OPEN), later))
        return tab.filter(keep)

    def _write_alerts(self, tab: pa.Table) -> int:
        def plan(old: pa.Table | None) -> pa.Table:
            old = None if old is None else old.cast(ALERT_SCHEMA)
            return merge(old, tab, list(ALERT_KEY)).cast(ALERT_SCHEMA).sort_by(_ORDER)

        self._files.write([(self._paths.alerts_path(), plan)], tab.num_rows)
        return tab.num_rows

    def _retain_alerts(self, cutoff: int) -> int:
        def gone(tab: pa.Table) -> pa.ChunkedArray:
            old = pc.fill_null(pc.less(tab["resolved_at"], _ts(cutoff)), False)
            return pc.and_(pc.equal(tab["status"], RESOLVED), old)

        if not pc.sum(gone(self._alerts_stored())).as_py():
            return 0
        removed = 0

        def plan(old: pa.Table | None) -> pa.Table | None:
            nonlocal removed
            if old is None:
                return None
            old = old.cast(ALERT_SCHEMA)
            mask = gone(old)
            removed = int(pc.sum(mask).as_py() or 0)
            return old.filter(pc.invert(mask))

        self._files.write([(self._paths.alerts_path(), plan)], 0)
        return removed

    def _alerts_rows(self) -> int:
        path = self._paths.alerts_path()
        return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
