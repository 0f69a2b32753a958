"""Atomic writes into a Parquet folder: one writer at a time, every file staged first.

A write gives each file it touches its new content (or removes it): each new file is
written to a hidden temporary name beside the old one and fsynced, and only when all of
them are staged are they renamed over the old files (``os.replace``) and the folders
fsynced, so a reader sees a whole old file or a whole new one. A failure before the
renames leaves nothing behind; one during them (rare: a rename within a folder) raises a
WriteError saying which files hold the new rows. Writers take an exclusive ``fcntl`` lock
on ``<root>/.lock``; readers never wait.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import WriteError

try:  # POSIX only; elsewhere writers are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

ROW_GROUP_ROWS = 65_536

#: Temporary files of a write (``.<name>.<uuid hex>.tmp``) older than this are leftovers of
#: a killed writer and are removed; younger ones may be a write in progress elsewhere.
TEMP_MAX_AGE_S = 3600.0
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")

#: What a write does to one file: the new content from the stored one (None when absent),
#: or the new content itself (the stored file is not read); None removes the file.
Plan = Callable[[pa.Table | None], pa.Table | None] | pa.Table | None


class FolderWriter:
    """Staged, atomic file replacement under ``root`` (see the module docstring).

    ``fault(label)`` is called between the steps ("staged" after each staged file,
    "before_replace" before the first rename): tests make it raise.
    """

    def __init__(self, root: Path, fsync: bool, fault: Callable[[str], None]) -> None:
        self.root = root
        self.fsync = fsync
        self.fault = fault

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The exclusive writer lock."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(self.root / ".lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def write(self, plans: list[tuple[Path, Plan]], n_rows: int) -> None:
        """Under the lock, give each file the content ``plan(stored table or None)`` (or
        ``plan`` itself when it is a table or None); every
        file is staged before the first one is replaced. ``n_rows`` is for messages. Stale
        temporary files in the folders written are removed first."""
        staged: list[tuple[Path | None, Path]] = []
        with self.lock():
            remove_stale_temp_files({path.parent for path, _ in plans})
            try:
                for path, plan in plans:
                    exists = path.exists()
                    if callable(plan):
                        new = plan(pq.read_table(path) if exists else None)
                    else:
                        new = plan
                    if new is None:
                        if exists:
                            staged.append((None, path))
                        continue
                    staged.append((self._stage(path, new), path))
                    self.fault("staged")
            except BaseException as exc:
                _discard(staged)
                if isinstance(exc, OSError):
                    raise WriteError(
                        f"writing {n_rows} rows into {str(self.root)!r} failed; nothing was "
                        f"written: {exc}"
                    ) from exc
                raise
            self._commit(staged)

    def replace(self, path: Path, tab: pa.Table) -> None:
        """Stage ``tab`` and rename it over ``path`` (the caller holds the lock)."""
        tmp = self._stage(path, tab)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync(path.parent)

    def remove(self, path: Path) -> bool:
        """Remove one file (the caller holds the lock), then its folder when that is empty;
        False when it was gone already."""
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        if self.fsync:
            _fsync(path.parent)
        with contextlib.suppress(OSError):  # not empty (or gone): keep it
            path.parent.rmdir()
        return True

    def _stage(self, path: Path, tab: pa.Table) -> Path:
        """Write ``tab`` to a temporary file beside ``path`` (durably) and return its name."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(tab, tmp, row_group_size=ROW_GROUP_ROWS, compression="zstd")
            if self.fsync:
                _fsync(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _commit(self, staged: list[tuple[Path | None, Path]]) -> None:
        """Replace every target by its staged file (remove it where the staged file is
        None); on a failure before the renames, remove the staged files so nothing of the
        write is visible."""
        try:
            self.fault("before_replace")
        except BaseException:
            _discard(staged)
            raise
        dirs, done = set(), 0
        try:
            for tmp, path in staged:
                if tmp is None:
                    path.unlink(missing_ok=True)
                else:
                    os.replace(tmp, path)
                dirs.add(path.parent)
                done += 1
        except OSError as exc:  # rare: a rename within one folder failed
            _discard(staged[done:])
            raise WriteError(
                f"replacing {str(staged[done][1])!r} failed after {done} of {len(staged)} "
                f"files: those {done} hold the new rows, the others the old ones (every file "
                f"whole); re-run the write: {exc}"
            ) from exc
        if self.fsync:
            for d in dirs:
                _fsync(d)


def remove_stale_temp_files(
    folders: Iterable[Path], max_age_s: float = TEMP_MAX_AGE_S, now: float | None = None
) -> int:
    """Remove this package's temporary files (``.<name>.<uuid>.tmp``) whose last change is
    older than ``max_age_s`` from ``folders`` (by age only: a process id says nothing about
    another host or container); returns how many were removed."""
    cutoff = (time.time() if now is None else now) - max_age_s
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not _TEMP_NAME.match(entry.name):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff and entry.is_file():
                    os.unlink(entry.path)
                    removed += 1
            except OSError:  # gone already (another clean-up), or not ours to remove
                continue
    return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(staged: list[tuple[Path | None, Path]]) -> None:
    for tmp, _ in staged:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def split_sorted(
    tab: pa.Table, time_col: str, width_us: int, path_of: Callable[[int], Path]
) -> list[tuple[Path, pa.Table]]:
    """Slice ``tab`` into one part per ``time_col // width_us`` (one sort, no filters),
    each with the file path ``path_of(bucket)``."""
    buckets = tab[time_col].cast(pa.int64()).to_numpy() // width_us
    if buckets.min() == buckets.max():  # one file (e.g. one forecast slot): no sort needed
        return [(path_of(int(buckets[0])), tab)]
    tab = tab.sort_by([(time_col, "ascending")])
    buckets = tab[time_col].cast(pa.int64()).to_numpy() // width_us
    bounds = np.flatnonzero(np.diff(buckets)) + 1
    starts = np.r_[0, bounds]
    ends = np.r_[bounds, len(buckets)]
    return [
        (path_of(int(buckets[s])), tab.slice(int(s), int(e - s)))
        for s, e in zip(starts, ends, strict=True)
    ]


def merge(old: pa.Table | None, new: pa.Table, key: list[str]) -> pa.Table:
    """Upsert ``new`` into ``old`` on ``key``: new rows win; columns the new rows lack keep
    their stored values; rows only in ``old`` stay."""
    if old is None or old.num_rows == 0:
        return new
    new = new.cast(
        pa.schema(
            [
                old.schema.field(c) if c in old.column_names else new.schema.field(c)
                for c in new.column_names
            ]
        )
    )
    kept = old.join(new.select(key), keys=key, join_type="left anti")
    extra = [c for c in old.column_names if c not in new.column_names]
    if extra:
        new = new.join(old.select([*key, *extra]), keys=key, join_type="left outer")
    order = [
        *old.column_names,
        *(c for c in new.column_names if c not in old.column_names),
    ]
    merged = pa.concat_tables([kept, new], promote_options="permissive")
    return merged.select(order)
