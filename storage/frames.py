"""Arrow-table helpers every store shares: merged time ranges, sorting, and conversion to
the canonical pandas frames."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import pyarrow as pa


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort closed integer ranges and merge the ones that overlap."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def sort_table(tab: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Sort an Arrow table ascending by ``keys``."""
    if tab.num_rows <= 1:
        return tab
    return tab.sort_by([(k, "ascending") for k in keys])


def to_frame(tab: pa.Table) -> pd.DataFrame:
    """An Arrow table to pandas (strings -> str, timestamps -> datetime64[us, UTC])."""
    return tab.to_pandas()


def sorted_frame(tab: pa.Table, keys: Sequence[str]) -> pd.DataFrame:
    """`tab` sorted by `keys` as pandas, holding at most one extra copy at a time: the
    sorted table's buffers are released column by column as they are converted (a
    metrics read at 1,000,000 series is tens of millions of rows)."""
    tab = sort_table(tab, keys)  # the caller passes its last reference to the unsorted one
    return tab.to_pandas(self_destruct=True, split_blocks=True)


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
