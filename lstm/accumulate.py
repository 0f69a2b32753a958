"""Build a Panel from history read in chunks, in bounded memory.

`regularize` takes one long frame; a fleet's 30 days do not fit in one (100,000 series x
8,640 slots is 864 million rows). `PanelAccumulator` knows its series and slot range up
front and adds chunks of rows (any split: by time, by series, by file) into dense
[series x slots] arrays, so nothing per row (no Python strings) outlives its chunk. The
result and its repair counts equal `regularize` on the concatenated frame (tested):
timestamps floored to the grid, rows in one slot summed (features averaged), invalid
values (NaN, Inf, negative, non-numeric) missing, gaps interpolated, each series from its
first to its last row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lstm.panel import ColumnNames, Panel, PrepReport, interpolate_flat, to_ns, validate_columns
from lstm.windows import expand_ranges


class PanelAccumulator:
    """Dense accumulation of the rows of `ids` with slots in [start_slot, end_slot]."""

    def __init__(
        self,
        ids: Sequence[str],
        start_slot: int,
        end_slot: int,
        freq_ns: int,
        exog_names: Sequence[str] = (),
    ) -> None:
        self.ids = np.array(sorted({str(i) for i in ids}), dtype=object)
        self.index = pd.Index(self.ids)
        self.start, self.n_slots = int(start_slot), int(end_slot) - int(start_slot) + 1
        self.freq_ns = int(freq_ns)
        self.exog_names = tuple(exog_names)
        cells = len(self.ids) * self.n_slots
        self.rows = np.zeros(cells, dtype=np.uint16)  # rows seen per cell (saturates at 65535)
        self.y_sum = np.zeros(cells)
        self.y_count = np.zeros(cells, dtype=np.uint16)
        self.x_sum = np.zeros((len(self.exog_names), cells))
        self.x_count = np.zeros((len(self.exog_names), cells), dtype=np.uint16)
        self.report = PrepReport()
        self.rows_ignored = 0  # rows of other series or outside the slot range

    def add(self, frame: pd.DataFrame) -> None:
        """Add a chunk of long rows (canonical columns: series_id, ts, value, features)."""
        if frame.empty:
            return
        cols, rep = validate_columns(frame, ColumnNames(), self.exog_names, strict=False)
        self.report.rows_in += rep.rows_in
        self.report.assumed_utc |= rep.assumed_utc
        code = self.index.get_indexer(cols.ids.to_numpy())
        ts_ns = to_ns(cols.ts)
        slot = ts_ns // self.freq_ns
        col = slot - self.start
        keep = (code >= 0) & (col >= 0) & (col < self.n_slots)
        self.rows_ignored += int((~keep).sum())
        self.report.off_grid_rows += int(np.count_nonzero((ts_ns - slot * self.freq_ns)[keep]))
        flat = code[keep] * self.n_slots + col[keep]
        # a row is a duplicate when its cell already had one (earlier chunk or this one)
        seen = self.rows[flat] > 0
        self.report.duplicate_rows += int(seen.sum() + (~seen).sum() - len(np.unique(flat[~seen])))
        np.add.at(self.rows, flat, 1)
        y = cols.y[keep]
        valid = np.isfinite(y) & (y >= 0)
        if not valid.all():
            bad_ids = pd.Series(self.ids[code[keep][~valid]])
            for sid, n in bad_ids.value_counts().items():
                inv = self.report.invalid_values
                inv[str(sid)] = inv.get(str(sid), 0) + int(n)
        np.add.at(self.y_sum, flat[valid], y[valid])
        np.add.at(self.y_count, flat[valid], 1)
        for j, name in enumerate(self.exog_names):
            x = cols.exog[name][keep]
            ok = np.isfinite(x)
            np.add.at(self.x_sum[j], flat[ok], x[ok])
            np.add.at(self.x_count[j], flat[ok], 1)

    def finish(self) -> tuple[Panel, PrepReport]:
        """The regular Panel of every series with a valid value, and what was repaired."""
        n, s = len(self.ids), self.n_slots
        rows = (self.rows > 0).reshape(n, s)
        has = rows.any(axis=1)
        first = np.argmax(rows, axis=1)
        last = s - 1 - np.argmax(rows[:, ::-1], axis=1)
        valid_any = (self.y_count.reshape(n, s) > 0).any(axis=1)
        report = self.report
        for sid in self.ids[~has]:
            report.dropped[str(sid)] = "no metrics rows in the history window"
        for sid in self.ids[has & ~valid_any]:
            report.dropped[str(sid)] = "no valid target value"
        keep = has & valid_any
        lo, hi = first[keep], last[keep]
        base = np.flatnonzero(keep).astype(np.int64) * s
        lengths = hi - lo + 1
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pos = expand_ranges(np.concatenate([base, [0]]), lo, hi)  # flat cells of each series
        report.filled_slots = int(np.count_nonzero(self.rows[pos] == 0))
        count = self.y_count[pos]
        y = np.where(count > 0, self.y_sum[pos], np.nan)
        exog = np.zeros((len(pos), len(self.exog_names)))
        for j in range(len(self.exog_names)):
            c = self.x_count[j][pos]
            with np.errstate(invalid="ignore", divide="ignore"):
                x = np.where(c > 0, self.x_sum[j][pos] / np.maximum(c, 1), np.nan)
            exog[:, j] = np.nan_to_num(interpolate_flat(x, offsets), nan=0.0)
        panel = Panel(
            ids=self.ids[keep].astype(str),
            offsets=offsets,
            slot=self.start + (pos % s),
            y=interpolate_flat(y, offsets),
            exog=exog,
            exog_names=self.exog_names,
            freq_ns=self.freq_ns,
        )
        report.n_series = panel.n_series
        report.slots_out = len(panel.y)
        return panel, report
