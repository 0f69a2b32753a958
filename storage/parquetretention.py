"""Retention in a Parquet folder (``storage.retention``): whole files removed, accuracy
rolled up first into one small file per day.

Mixed into ``ParquetStore``. Forecast slot files issued before the cutoff are removed one by
one (each removal is atomic: a reader sees the whole slot or none of it), under the writer
lock, in batches of at most about ``batch_rows`` rows; empty ``date=`` folders go too.

An accuracy batch is a set of hour files of one day that end by the cutoff. Under the lock,
the day's roll-up ``<accuracy>_daily/day=YYYY-MM-DD.parquet`` is rewritten (staged, then
renamed) with the batch's rows added and, in its schema metadata, the identity of every file
it absorbed (name, inode, mtime, size: any rewrite of a file, always a new file renamed into
place, changes it); only then are the files removed. A run interrupted between the two finds
the files already absorbed and only removes them: no file is counted twice, and none is
removed before it is counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from storage.columns import ACCURACY_SCHEMA
from storage.parquetfiles import FolderWriter
from storage.parquetpaths import FolderLayout
from storage.retention import DAILY_SCHEMA, add_daily, daily_from_rows, retention_fault

_ABSORBED = b"absorbed"


def _rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException):  # gone, or not a Parquet file: nothing to count
        return 0


def _identity(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{path.name}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def _groups(files: list[Path], batch_rows: int) -> list[list[tuple[Path, int]]]:
    """Files in order, grouped to at most ``batch_rows`` rows (a larger file alone)."""
    out: list[list[tuple[Path, int]]] = []
    total = 0
    for path in files:
        n = _rows(path)
        if out and total + n <= batch_rows:
            out[-1].append((path, n))
            total += n
        else:
            out.append([(path, n)])
            total = n
    return out


class ParquetRetention:
    """The retention primitives of ``ParquetStore`` (see the module docstring)."""

    _paths: FolderLayout
    _files: FolderWriter

    def _retain_forecasts(self, cutoff: int, batch_rows: int) -> tuple[int, int, int]:
        files = [p for _, p in self._paths.issued_files(None, cutoff - 1)]
        rows = removed = batches = 0
        for group in _groups(files, batch_rows):
            with self._files.lock():
                for path, n in group:
                    if self._files.remove(path):
                        rows, removed = rows + n, removed + 1
                    retention_fault("forecasts_deleted")
            batches += 1
        return rows, removed, batches

    def _retain_accuracy(self, cutoff: int, batch_rows: int) -> tuple[int, set[int], int, int]:
        by_day: dict[int, list[Path]] = {}
        for day, path in self._paths.files_before(self._paths.tables.accuracy, cutoff):
            by_day.setdefault(day, []).append(path)
        rows = removed = batches = 0
        days: set[int] = set()
        for day, files in sorted(by_day.items()):
            for group in _groups(files, batch_rows):
                with self._files.lock():
                    if self._absorb(day, [p for p, _ in group]):
                        days.add(day)
                    retention_fault("aggregated")
                    for path, n in group:
                        if self._files.remove(path):
                            rows, removed = rows + n, removed + 1
                        retention_fault("accuracy_deleted")
                batches += 1
        return rows, days, removed, batches

    def _absorb(self, day: int, files: list[Path]) -> bool:
        """Add the rows of ``files`` not absorbed yet to the day's roll-up (under the lock);
        True when rows were added."""
        target = self._paths.daily_path(day)
        old = pq.read_table(target) if target.exists() else None
        meta = (old.schema.metadata or {}) if old is not None else {}
        absorbed = set(json.loads(meta.get(_ABSORBED, b"[]")))
        ident = {p: _identity(p) for p in files}
        new = [p for p, i in ident.items() if i is not None and i not in absorbed]
        if not new:
            return False
        rows = ds.dataset([str(p) for p in new], schema=ACCURACY_SCHEMA, format="parquet")
        tab = add_daily(old, daily_from_rows(rows.to_table()))
        # identities of files still in place (an interrupted run's) and of this batch
        folder = {str(_identity(p)) for p in files[0].parent.glob("*.parquet")}
        keep = sorted({i for i in absorbed if i in folder} | {i for i in ident.values() if i})
        tab = tab.replace_schema_metadata({_ABSORBED: json.dumps(keep).encode()})
        self._files.replace(target, tab)
        return True

    def _read_daily(self, lo: int | None, hi: int | None) -> pa.Table:
        files = self._paths.daily_files(lo, hi)
        if not files:
            return DAILY_SCHEMA.empty_table()
        tab = pa.concat_tables([pq.read_table(f).cast(DAILY_SCHEMA) for f in files])
        return tab.replace_schema_metadata(None)

    def _daily_rows(self) -> int:
        return sum(_rows(f) for f in self._paths.daily_files(None, None))
