"""Shards of the series: which of K parallel predict runs owns a series.

A series belongs to shard ``stable_hash(series_id) % count``. The hash is the first 8 bytes
of the BLAKE2b digest of the id's UTF-8 bytes, read big-endian: the same on every process,
machine and Python version (Python's ``hash()`` of a str is salted per process and would
give every worker its own partition). K shards partition the series: every id is in
exactly one of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import ConfigError, DataValidationError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: the most shards a run may be split into (a run per shard: more is never useful)
MAX_SHARDS = 4096


def stable_hash(series_id: str) -> int:
    """A 64-bit hash of ``series_id`` that never changes (BLAKE2b of its UTF-8 bytes)."""
    digest = hashlib.blake2b(str(series_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(series_id: str, count: int) -> int:
    """The shard (0 .. count-1) that owns ``series_id`` among ``count`` shards."""
    return stable_hash(series_id) % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``0/4`` is the first of four)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        ok = (
            isinstance(self.count, int)
            and isinstance(self.index, int)
            and 1 <= self.count <= MAX_SHARDS
            and 0 <= self.index < self.count
        )
        if not ok:
            raise ConfigError(
                f"shard {self.index!r}/{self.count!r}: need 0 <= shard < shards and "
                f"1 <= shards <= {MAX_SHARDS} (e.g. 0/4 is the first of four)"
            )

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """``"1/4"`` -> Shard(1, 4)."""
        m = _SPEC.match(str(spec))
        if not m:
            raise ConfigError(f"shard {spec!r}: write it as INDEX/COUNT, e.g. 0/4")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, index: int | None, count: int | None) -> Shard | None:
        """The shard of a run's ``shard``/``shards`` parameters; None for an unsharded run
        (both None, or one shard of one)."""
        if index is None and count is None:
            return None
        if index is None or count is None:
            raise ConfigError(
                f"shard={index!r}, shards={count!r}: give both (e.g. shard=0, shards=4) or neither"
            )
        shard = cls(index, count)
        return None if count == 1 else shard

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, series_id: str) -> bool:
        return shard_of(series_id, self.count) == self.index

    def select(self, ids: Iterable[str]) -> list[str]:
        """The ids of ``ids`` this shard owns, in their order."""
        return [s for s in ids if self.owns(s)]

    def owned(self, ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The distinct values of ``ids`` this shard owns, in their Arrow type: each distinct
        id is hashed once, over all chunks (a metrics window repeats every id dozens of
        times across many row groups). Ids that are not text are hashed as text (the id a
        read returns)."""
        distinct = pc.unique(ids)
        text = distinct if pa.types.is_string(distinct.type) else distinct.cast(pa.string())
        keep = [self.owns(s) for s in text.to_pylist()]
        return distinct.filter(pa.array(keep, type=pa.bool_()))

    def mask(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Whether each element of an Arrow string array is owned (matched in Arrow against
        the owned distinct ids)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=bool)
        return pc.is_in(ids, value_set=self.owned(ids)).to_numpy(zero_copy_only=False)

    def filter(self, tab: pa.Table, column: str = "series_id") -> pa.Table:
        """The rows of ``tab`` whose ``column`` this shard owns."""
        if tab.num_rows == 0:
            return tab
        return tab.filter(pa.array(self.mask(tab[column])))


def check_in_shard(tab: pa.Table, shard: Shard) -> None:
    """Refuse forecast rows of series another shard owns (a shard's write replaces only its
    own series' rows: a foreign row would survive the owner's next re-run)."""
    if tab.num_rows == 0:
        return
    foreign = np.flatnonzero(~shard.mask(tab["series_id"]))
    if len(foreign):
        sid = tab["series_id"][int(foreign[0])].as_py()
        raise DataValidationError(
            f"write_forecasts(shard={shard}): {len(foreign)} row(s) of series other shards "
            f"own (first: series {sid!r}, owned by shard {shard_of(sid, shard.count)}/"
            f"{shard.count})"
        )
