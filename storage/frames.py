"""Arrow-table helpers every store shares: merged time ranges, sorting, and conversion to
the canonical pandas frames."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import ConfigError


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort closed integer ranges and merge the ones that overlap."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def window_ranges(
    as_us: int, n_slots: int, freq_us: int, extra_ranges: Iterable[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """The closed epoch-microsecond ranges of a window of ``n_slots`` slots ending at
    ``as_us``, plus each ``(lo, hi)`` of ``extra_ranges`` in slots back from it (merged)."""
    if isinstance(n_slots, bool) or not isinstance(n_slots, int | np.integer) or n_slots < 1:
        raise ConfigError(f"n_slots must be a positive integer, got {n_slots!r}")
    ranges = [(as_us - (int(n_slots) - 1) * freq_us, as_us)]
    for item in extra_ranges:
        try:
            lo, hi = (int(x) for x in item)
        except (TypeError, ValueError):
            raise ConfigError(
                f"extra_ranges items must be (lo, hi) slot offsets, got {item!r}"
            ) from None
        if lo < 0 or hi < lo:
            raise ConfigError(
                f"extra_ranges item {item!r} must satisfy 0 <= lo <= hi (slots back from as_of)"
            )
        ranges.append((as_us - hi * freq_us, as_us - lo * freq_us))
    return merge_ranges(ranges)


def sort_table(tab: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Sort an Arrow table ascending by ``keys``."""
    if tab.num_rows <= 1:
        return tab
    return tab.sort_by([(k, "ascending") for k in keys])


def to_frame(tab: pa.Table) -> pd.DataFrame:
    """An Arrow table to pandas (strings -> str, timestamps -> datetime64[us, UTC])."""
    return tab.to_pandas()


def sorted_frame(tab: pa.Table, keys: Sequence[str]) -> pd.DataFrame:
    """`tab` sorted by `keys` as pandas, holding about one copy of the rows at a time: the
    columns are put in order one by one, each unsorted column released as its sorted copy
    is made, and each sorted column released as it is converted (a metrics read at
    1,000,000 series is 60 million rows, 2.2 GiB of columns). The caller must pass its
    last reference to `tab`, or nothing is released early."""
    schema, columns = tab.schema, tab.columns
    if tab.num_rows > 1:
        order = pc.sort_indices(tab, sort_keys=[(k, "ascending") for k in keys])
        del tab
        for i in range(len(columns)):
            columns[i] = columns[i].take(order)  # the unsorted column is released here
    else:
        del tab
    sorted_tab = pa.Table.from_arrays(columns, schema=schema)
    del columns
    return sorted_tab.to_pandas(self_destruct=True, split_blocks=True)


def slot_series_frame(tab: pa.Table | None) -> pd.DataFrame:
    """(issued_at UTC, series_id) rows of a ``_slot_series`` table, sorted."""
    if tab is None:
        tab = pa.table(
            {"issued_at": pa.array([], pa.int64()), "series_id": pa.array([], pa.string())}
        )
    out = pd.DataFrame(
        {
            "issued_at": pd.to_datetime(
                tab["issued_at"].cast(pa.int64()).to_numpy(), unit="us", utc=True
            ),
            "series_id": tab["series_id"].cast(pa.string()).to_pylist(),
        }
    )
    return out.sort_values(["issued_at", "series_id"], ignore_index=True)
