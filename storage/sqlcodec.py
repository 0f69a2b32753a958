"""How a SQL timestamp column stores a UTC instant, and conversions to and from it.

PostgreSQL stores ``TIMESTAMP WITH TIME ZONE`` (a ``timestamp without time zone`` column
of an existing table is read as UTC wall time). SQLite has no timestamp type: tables this
package creates hold fixed-width ISO-8601 text with an explicit offset,
``2024-01-01 00:05:00+00:00`` (``...00:05:00.123456+00:00`` for created_at/scored_at), which
sorts chronologically, so range filters use the index. Existing SQLite tables may hold
other fixed-width ISO text (``T`` separator, ``Z`` or no suffix, 3 or 6 fraction digits)
or integer epoch seconds/milliseconds; the codec is detected from a stored value and
bounds are encoded the same way, so comparisons stay correct.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from storage.columns import TS_TYPE
from storage.errors import SchemaError
from storage.timeutil import us_to_datetime

_EPOCH = dt.datetime(1970, 1, 1)
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?P<sep>[ T])\d{2}:\d{2}:\d{2}(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]00:?00)?$"
)


class TsCodec:
    """Conversions for one timestamp column (see the module docstring)."""

    #: Arrow type of the values as fetched from the driver.
    fetch_type: pa.DataType = TS_TYPE
    #: True when stored values are the canonical format of tables this package creates.
    canonical: bool = False
    #: True when stored values carry no timezone (they are taken as UTC).
    naive: bool = False

    def param(self, us: int) -> Any:
        """A bound-parameter value comparable with the stored column."""
        raise NotImplementedError

    def encode(self, us: np.ndarray) -> list[Any]:
        """Values to insert for int64 epoch microseconds (used by executemany)."""
        codes, uniques = pd.factorize(us)
        enc = np.array([self.param(int(u)) for u in uniques], dtype=object)
        return enc[codes].tolist()

    def decode(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """Fetched values to ``timestamp[us, UTC]``."""
        return arr.cast(TS_TYPE)

    def decode_scalar(self, value: Any) -> int:
        """One fetched value to epoch microseconds."""
        out = self.decode(pa.array([value], type=self.fetch_type))[0].value
        return int(out)


@dataclass(frozen=True)
class IsoTextCodec(TsCodec):
    """SQLite ISO-8601 text of fixed width."""

    sep: str = " "
    frac: int = 0
    suffix: str = "+00:00"

    fetch_type = pa.string()

    @property
    def canonical(self) -> bool:  # type: ignore[override]
        return self.sep == " " and self.suffix == "+00:00" and self.frac in (0, 6)

    @property
    def naive(self) -> bool:  # type: ignore[override]
        return not self.suffix

    def param(self, us: int) -> str:
        d = _EPOCH + dt.timedelta(microseconds=int(us))
        s = d.strftime(f"%Y-%m-%d{self.sep}%H:%M:%S")
        if self.frac:
            s += "." + f"{d.microsecond:06d}"[: self.frac]
        return s + self.suffix

    def decode(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        if self.suffix:
            return tolerant_cast(arr, TS_TYPE)
        return tolerant_cast(arr, pa.timestamp("us")).cast(TS_TYPE)


def tolerant_cast(arr: pa.Array | pa.ChunkedArray, typ: pa.DataType) -> pa.Array:
    """Text to timestamps; a value that does not parse (a user's row dated ``999-01-01`` or
    ``infinity``) becomes NULL, which reads skip and count, instead of failing the read."""
    try:
        return arr.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parsed: dict[Any, Any] = {}
    out = []
    for v in arr.to_pylist():
        if v not in parsed:
            try:
                parsed[v] = pa.scalar(v, pa.string()).cast(typ).value if v is not None else None
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
                parsed[v] = None
        out.append(parsed[v])
    return pa.array(out, type=pa.int64()).cast(typ)


@dataclass(frozen=True)
class EpochCodec(TsCodec):
    """SQLite integer epoch seconds (``per_second=1``) or milliseconds (1000)."""

    per_second: int = 1

    fetch_type = pa.int64()

    def param(self, us: int) -> int:
        return int(us) // (1_000_000 // self.per_second)

    def encode(self, us: np.ndarray) -> list[Any]:
        return (np.asarray(us, dtype="int64") // (1_000_000 // self.per_second)).tolist()

    def decode(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        import pyarrow.compute as pc

        return pc.multiply(arr.cast(pa.int64()), 1_000_000 // self.per_second).cast(TS_TYPE)


@dataclass(frozen=True)
class PgCodec(TsCodec):
    """PostgreSQL ``timestamptz`` (aware) or ``timestamp`` holding UTC wall time."""

    aware: bool = True

    @property
    def canonical(self) -> bool:  # type: ignore[override]
        return True

    @property
    def naive(self) -> bool:  # type: ignore[override]
        return not self.aware

    @property
    def fetch_type(self) -> pa.DataType:  # type: ignore[override]
        return TS_TYPE if self.aware else pa.timestamp("us")

    def param(self, us: int) -> dt.datetime:
        return us_to_datetime(us, aware=self.aware)

    def decode(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        return arr.cast(TS_TYPE)


#: Grid timestamps (ts, issued_at, target_ts) in SQLite tables this package creates.
SQLITE_GRID = IsoTextCodec(" ", 0, "+00:00")
#: created_at / scored_at in SQLite tables this package creates.
SQLITE_FINE = IsoTextCodec(" ", 6, "+00:00")


def detect_sqlite_codec(sample: Any, table: str, column: str) -> TsCodec:
    """The codec of an existing SQLite column from one stored value (None: canonical)."""
    if sample is None:
        return SQLITE_GRID
    if isinstance(sample, int) and not isinstance(sample, bool):
        return EpochCodec(1000 if abs(sample) > 100_000_000_000 else 1)
    if isinstance(sample, str):
        m = _ISO.match(sample)
        if m and len(m["frac"] or "") in (0, 3, 6):
            tz = m["tz"] or ""
            suffix = "Z" if tz == "Z" else ("+00:00" if tz else "")
            if tz and tz not in ("Z", "+00:00"):
                raise SchemaError(
                    f"column {column!r} of table {table!r} holds {sample!r}: only UTC offsets "
                    "written as 'Z' or '+00:00' are supported"
                )
            return IsoTextCodec(m["sep"], len(m["frac"] or ""), suffix)
    raise SchemaError(
        f"column {column!r} of table {table!r} holds {sample!r} ({type(sample).__name__}); "
        "expected ISO-8601 text such as '2024-01-01 00:05:00+00:00' or integer epoch seconds"
    )
