"""Where the rows of a Parquet store live: folder and file names, and which files a read
must open (by folder and file name alone, before any file is opened).

``<root>/<table>/date=YYYY-MM-DD/`` holds one UTC day; metrics and accuracy files are
``part-HH.parquet`` (one UTC hour each; other ``*.parquet`` files dropped into a date
folder are read too), forecast files are named by their issued_at,
``YYYYMMDDTHHMMSSZ.parquet``. Retention's daily accuracy roll-up is one small file per
day, ``<root>/<accuracy>_daily/day=YYYY-MM-DD.parquet``; the breach alerts are one file,
``<root>/<forecasts>_alerts/alerts.parquet``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from storage.base import Range
from storage.columns import TableNames

HOUR_US = 3_600_000_000
_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_HOUR_FILE = re.compile(r"^part-(\d{2})\.parquet$")
_ISSUED_FILE = re.compile(r"^(\d{8}T\d{6}Z)\.parquet$")
_DAY_FILE = re.compile(r"^day=(\d{4}-\d{2}-\d{2})\.parquet$")
DAY_US = 24 * HOUR_US


def _date_of(us: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(us))).strftime("%Y-%m-%d")


def _date_start_us(date: str) -> int:
    d = dt.datetime.strptime(date, "%Y-%m-%d")
    return int((d - dt.datetime(1970, 1, 1)) / dt.timedelta(microseconds=1))


def _issued_name(us: int) -> str:
    d = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(us))
    return d.strftime("%Y%m%dT%H%M%SZ") + ".parquet"


def _issued_from_name(name: str) -> int | None:
    m = _ISSUED_FILE.match(name)
    if not m:
        return None
    d = dt.datetime.strptime(m[1], "%Y%m%dT%H%M%SZ")
    return int((d - dt.datetime(1970, 1, 1)) / dt.timedelta(microseconds=1))


def _overlaps(lo: int | None, hi: int | None, a: int, b: int) -> bool:
    """Does closed [lo, hi] (None = unbounded) overlap half-open [a, b)?"""
    return (lo is None or lo < b) and (hi is None or hi >= a)


class FolderLayout:
    """The file names of one store's tables under ``root``."""

    def __init__(self, root: Path, tables: TableNames) -> None:
        self.root = root
        self.tables = tables

    def dir(self, name: str) -> Path:
        """The folder of table ``name``."""
        return self.root / name

    def dates(self, table: str, lo: int | None, hi: int | None) -> list[str]:
        """Date partitions of ``table`` overlapping [lo, hi]."""
        base = self.dir(table)
        if not base.is_dir():
            return []
        out = []
        for entry in os.scandir(base):
            m = _DATE_DIR.match(entry.name)
            if m and entry.is_dir():
                start = _date_start_us(m[1])
                if _overlaps(lo, hi, start, start + 24 * HOUR_US):
                    out.append(m[1])
        return sorted(out)

    def hour_files(self, table: str, ranges: list[Range]) -> list[Path]:
        """Files of an hour-partitioned table that may hold rows in ``ranges``."""
        los = [r[0] for r in ranges]
        his = [r[1] for r in ranges]
        lo = None if any(x is None for x in los) else min(los)  # type: ignore[type-var]
        hi = None if any(x is None for x in his) else max(his)  # type: ignore[type-var]
        files = []
        for date in self.dates(table, lo, hi):
            start = _date_start_us(date)
            for entry in os.scandir(self.dir(table) / f"date={date}"):
                if entry.name.startswith((".", "_")) or not entry.name.endswith(".parquet"):
                    continue
                m = _HOUR_FILE.match(entry.name)
                if m:
                    a = start + int(m[1]) * HOUR_US
                    if not any(_overlaps(r[0], r[1], a, a + HOUR_US) for r in ranges):
                        continue
                elif not any(_overlaps(r[0], r[1], start, start + 24 * HOUR_US) for r in ranges):
                    continue
                files.append(Path(entry.path))
        return sorted(files)

    def hour_path(self, table: str, hour: int) -> Path:
        us = hour * HOUR_US
        return self.dir(table) / f"date={_date_of(us)}" / f"part-{hour % 24:02d}.parquet"

    def issued_files(self, lo: int | None, hi: int | None) -> list[tuple[int, Path]]:
        """Forecast files with issued_at in [lo, hi]."""
        out = []
        table = self.tables.forecasts
        for date in self.dates(table, lo, hi):
            for entry in os.scandir(self.dir(table) / f"date={date}"):
                issued = _issued_from_name(entry.name)
                if (
                    issued is not None
                    and (lo is None or issued >= lo)
                    and (hi is None or issued <= hi)
                ):
                    out.append((issued, Path(entry.path)))
        return sorted(out)

    def issued_path(self, issued: int) -> Path:
        return self.dir(self.tables.forecasts) / f"date={_date_of(issued)}" / _issued_name(issued)

    def files_before(self, table: str, cutoff: int) -> list[tuple[int, Path]]:
        """(day start, file) of an hour-partitioned table's files that hold only rows
        before ``cutoff``: hour files ending by then, other files of days ending by then."""
        out = []
        for date in self.dates(table, None, cutoff - 1):
            start = _date_start_us(date)
            for entry in os.scandir(self.dir(table) / f"date={date}"):
                if entry.name.startswith((".", "_")) or not entry.name.endswith(".parquet"):
                    continue
                m = _HOUR_FILE.match(entry.name)
                end = start + (int(m[1]) + 1) * HOUR_US if m else start + DAY_US
                if end <= cutoff:
                    out.append((start, Path(entry.path)))
        return sorted(out)

    def daily_path(self, day: int) -> Path:
        return self.dir(self.tables.accuracy_daily) / f"day={_date_of(day)}.parquet"

    def daily_files(self, lo: int | None, hi: int | None) -> list[Path]:
        """Daily roll-up files of days with lo <= day start <= hi."""
        base = self.dir(self.tables.accuracy_daily)
        if not base.is_dir():
            return []
        out = []
        for entry in os.scandir(base):
            m = _DAY_FILE.match(entry.name)
            if m:
                day = _date_start_us(m[1])
                if (lo is None or day >= lo) and (hi is None or day <= hi):
                    out.append(Path(entry.path))
        return sorted(out)

    def alerts_path(self) -> Path:
        """The one file of the breach alerts."""
        return self.dir(self.tables.alerts) / "alerts.parquet"

    def date_folders(self) -> list[Path]:
        """Every ``date=`` folder of the three tables, and the daily roll-up's and the
        alerts' folders."""
        own = [self.dir(self.tables.accuracy_daily), self.dir(self.tables.alerts)]
        out = [d for d in own if d.is_dir()]
        for name in (self.tables.metrics, self.tables.forecasts, self.tables.accuracy):
            base = self.dir(name)
            if base.is_dir():
                out += [Path(e.path) for e in os.scandir(base) if _DATE_DIR.match(e.name)]
        return out

    def all_files(self, table: str) -> list[Path]:
        base = self.dir(table)
        if not base.is_dir():
            return []
        return sorted(p for p in base.glob("date=*/*.parquet") if not p.name.startswith((".", "_")))
