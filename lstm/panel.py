"""Long metrics frames -> a regular, validated `Panel` of many series.

The protocol's step 1 lives here: floor timestamps to the grid, sum duplicates inside a slot,
fill missing slots by linear interpolation, and count every repair. All of it is vectorised
over the whole frame (no per-series Python loop).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lstm.errors import DataValidationError, preview
from lstm.slots import freq_to_ns

log = logging.getLogger(__name__)

ID, TS, Y = "series_id", "ts", "value"


@dataclass(frozen=True)
class ColumnNames:
    """Names of the id, time and target columns in a user's frame (canonical by default)."""

    id_col: str = ID
    time_col: str = TS
    target_col: str = Y

    @classmethod
    def nixtla(cls) -> ColumnNames:
        return cls("unique_id", "ds", "y")


@dataclass
class PrepReport:
    """What regularisation repaired or dropped, so a run can report it."""

    n_series: int = 0
    rows_in: int = 0
    slots_out: int = 0
    filled_slots: int = 0  # missing slots inside a series, filled by interpolation
    duplicate_rows: int = 0  # rows summed into a slot another row already had
    off_grid_rows: int = 0  # rows whose timestamp was floored to the grid
    invalid_values: dict[str, int] = field(default_factory=dict)  # NaN/Inf/negative/non-numeric
    dropped: dict[str, str] = field(default_factory=dict)  # series -> reason
    assumed_utc: bool = False
    future_rows: int = 0  # rows dated after the history's end (the clock's last slot): ignored

    def as_dict(self) -> dict:
        return {
            "n_series": self.n_series,
            "rows_in": self.rows_in,
            "slots_out": self.slots_out,
            "filled_slots": self.filled_slots,
            "duplicate_rows": self.duplicate_rows,
            "off_grid_rows": self.off_grid_rows,
            "invalid_values": dict(self.invalid_values),
            "dropped": dict(self.dropped),
            "assumed_utc": self.assumed_utc,
            "future_rows": self.future_rows,
        }


@dataclass
class Panel:
    """N regular series stored flat: series i occupies positions offsets[i]:offsets[i+1].

    `slot` is the slot number since the epoch (ts_ns // freq_ns), so calendar features and
    lags are pure integer arithmetic.
    """

    ids: np.ndarray  # [N] str
    offsets: np.ndarray  # [N+1] int64
    slot: np.ndarray  # [T] int64
    y: np.ndarray  # [T] float64
    exog: np.ndarray  # [T, E] float64
    exog_names: tuple[str, ...]
    freq_ns: int

    @property
    def n_series(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def series_index(self) -> np.ndarray:
        """[T] the series number of every position."""
        return np.repeat(np.arange(self.n_series), self.lengths)

    def timestamps(self, positions: np.ndarray | None = None) -> pd.DatetimeIndex:
        slots = self.slot if positions is None else self.slot[positions]
        return pd.DatetimeIndex(slots * self.freq_ns, tz="UTC")

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {ID: np.repeat(self.ids, self.lengths), TS: self.timestamps(), Y: self.y}
        )
        for j, name in enumerate(self.exog_names):
            frame[name] = self.exog[:, j]
        return frame

    def select(self, keep: np.ndarray) -> Panel:
        """A panel with only the series where `keep` [N] is true."""
        keep = np.asarray(keep, dtype=bool)
        pos_keep = np.repeat(keep, self.lengths)
        lengths = self.lengths[keep]
        return Panel(
            ids=self.ids[keep],
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            slot=self.slot[pos_keep],
            y=self.y[pos_keep],
            exog=self.exog[pos_keep],
            exog_names=self.exog_names,
            freq_ns=self.freq_ns,
        )


def to_utc(values: pd.Series, column: str, ids: pd.Series | None = None) -> tuple[pd.Series, bool]:
    """Parse timestamps to tz-aware UTC; naive ones are assumed to be UTC (returned flag)."""
    s = values
    if not pd.api.types.is_datetime64_any_dtype(s):
        try:
            parsed = pd.to_datetime(s, errors="coerce", format="mixed")
        except ValueError:  # several UTC offsets: convert them all
            parsed = pd.to_datetime(s, errors="coerce", format="mixed", utc=True)
        bad = parsed.isna() & s.notna()
        if bad.any():
            where = _where(ids, bad)
            raise DataValidationError(
                f"column {column!r}: {int(bad.sum())} timestamp(s) cannot be parsed, e.g. "
                f"{preview(s[bad].astype(str).tolist(), 3)}{where}. Fix: use ISO-8601 "
                "timestamps such as '2026-01-31 12:05:00+00:00'."
            )
        s = parsed
    if s.isna().any():
        where = _where(ids, s.isna())
        raise DataValidationError(
            f"column {column!r}: {int(s.isna().sum())} missing timestamp(s){where}"
        )
    if not pd.api.types.is_datetime64_any_dtype(s):  # e.g. python datetimes with offsets
        return pd.to_datetime(s, utc=True), False
    if s.dt.tz is None:
        return s.dt.tz_localize("UTC"), True
    return s.dt.tz_convert("UTC"), False


def _where(ids: pd.Series | None, mask: pd.Series) -> str:
    if ids is None:
        return ""
    return f" in series {preview(pd.unique(ids[mask].astype(str)), 3)}"


def to_ns(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps -> int64 nanoseconds since the epoch, whatever the stored unit."""
    return pd.DatetimeIndex(ts).as_unit("ns").asi8


@dataclass
class Columns:
    """A validated long frame as arrays: what `validate_columns` returns."""

    ids: pd.Series  # str
    ts: pd.Series  # tz-aware UTC
    y: np.ndarray  # float64, NaN for missing or non-numeric
    exog: dict[str, np.ndarray]  # float64 per feature


def validate_frame(
    df: pd.DataFrame,
    columns: ColumnNames = ColumnNames(),
    feature_cols: Sequence[str] | None = None,
    *,
    strict: bool = True,
) -> tuple[pd.DataFrame, PrepReport]:
    """Check a long frame and return it with canonical names, UTC timestamps, float target.

    strict=True (files a user hands us): non-numeric target values are an error listing them.
    strict=False (the scheduled job): they become missing values, counted per series.
    feature_cols=None takes every other numeric column as an exogenous feature.
    """
    cols, report = validate_columns(df, columns, feature_cols, strict=strict)
    out = pd.DataFrame({ID: cols.ids.to_numpy(), TS: cols.ts, Y: cols.y})
    for name, values in cols.exog.items():
        out[name] = values
    return out, report


def validate_columns(
    df: pd.DataFrame,
    columns: ColumnNames = ColumnNames(),
    feature_cols: Sequence[str] | None = None,
    *,
    strict: bool = True,
) -> tuple[Columns, PrepReport]:
    """The checks of `validate_frame`, returning arrays (no frame is built: the 5-minute
    inference path uses this directly)."""
    report = PrepReport(rows_in=len(df))
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(f"expected a pandas DataFrame, got {type(df).__name__}")
    needed = [columns.id_col, columns.time_col, columns.target_col]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"missing column(s) {missing}; the frame has {list(map(str, df.columns))}. Fix: "
            "name the id/time/target columns (--id-col/--time-col/--target-col or ColumnNames)."
        )
    if feature_cols is not None:
        missing = [c for c in feature_cols if c not in df.columns]
        if missing:
            raise DataValidationError(
                f"missing feature column(s) {missing} (the model uses them as inputs); the "
                f"frame has {list(map(str, df.columns))}. Fix: provide them, or train a model "
                "without them."
            )
        needed += list(feature_cols)
    if feature_cols is None:
        feature_cols = [
            c
            for c in df.columns
            if c not in needed and pd.api.types.is_numeric_dtype(df[c]) and c != "index"
        ]
    ids = df[columns.id_col]
    if ids.isna().any():
        raise DataValidationError(
            f"column {columns.id_col!r}: {int(ids.isna().sum())} row(s) without a series id"
        )
    if not pd.api.types.is_string_dtype(ids.dtype) or ids.dtype == object:
        ids = ids.astype(str)
    ts, report.assumed_utc = to_utc(df[columns.time_col], columns.time_col, ids)
    y = _numeric(df[columns.target_col], columns.target_col, ids, strict, report)
    exog = {name: _numeric(df[name], name, ids, strict, None) for name in feature_cols}
    if report.assumed_utc:
        log.warning("timestamps in %r carry no timezone: assumed UTC", columns.time_col)
    return Columns(ids, ts, y, exog), report


def _numeric(
    values: pd.Series, column: str, ids: pd.Series, strict: bool, report: PrepReport | None
) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(values, errors="coerce")
    bad = coerced.isna() & values.notna()
    if bad.all() and len(values):
        raise DataValidationError(
            f"column {column!r} must be numeric; got dtype {values.dtype} with values like "
            f"{preview(values.astype(str).head(3).tolist())}. Fix: point --target-col at the "
            "numeric column."
        )
    if bad.any():
        if strict:
            raise DataValidationError(
                f"column {column!r} must be numeric; {int(bad.sum())} non-numeric value(s) "
                f"{preview(values[bad].astype(str).tolist(), 3)}{_where(ids, bad)}. Fix: clean "
                "or drop those rows."
            )
        if report is not None:
            for sid, n in ids[bad].value_counts().items():
                report.invalid_values[str(sid)] = report.invalid_values.get(str(sid), 0) + int(n)
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def regularize(
    df: pd.DataFrame,
    freq: str = "5min",
    columns: ColumnNames = ColumnNames(),
    feature_cols: Sequence[str] | None = None,
    *,
    strict: bool = True,
) -> tuple[Panel, PrepReport]:
    """Validate a long frame and put every series on its regular grid (protocol step 1).

    Repairs, each counted in the returned report: timestamps floored to the grid; rows in
    one slot summed (features averaged); NaN, +-Inf and negative targets treated as missing;
    missing slots inside a series filled by linear interpolation (edges by the nearest
    value). A series with no valid target value at all is dropped and named.
    """
    frame, report = validate_frame(df, columns, feature_cols, strict=strict)
    exog_names = tuple(c for c in frame.columns if c not in (ID, TS, Y))
    freq_ns = freq_to_ns(freq)
    ts_ns = to_ns(frame[TS])
    report.off_grid_rows = int(np.count_nonzero(ts_ns % freq_ns))
    frame[TS] = ts_ns // freq_ns  # slot number

    y = frame[Y].to_numpy()
    invalid = ~np.isfinite(y) | (y < 0)  # includes non-numeric values coerced to NaN
    report.invalid_values = {}
    if invalid.any():
        counts = pd.Series(frame[ID].to_numpy()[invalid]).value_counts()
        for sid, n in counts.items():
            report.invalid_values[str(sid)] = report.invalid_values.get(str(sid), 0) + int(n)
        frame.loc[invalid, Y] = np.nan
    for name in exog_names:
        col = frame[name].to_numpy()
        frame.loc[~np.isfinite(col), name] = np.nan

    grouped = frame.groupby([ID, TS], sort=True)
    sizes = grouped.size()
    report.duplicate_rows = int((sizes - 1).sum())
    if report.duplicate_rows:
        summed = grouped[Y].sum(min_count=1)
        parts = [summed]
        if exog_names:
            parts.append(grouped[list(exog_names)].mean())
        frame = pd.concat(parts, axis=1).reset_index()
    else:
        frame = frame.sort_values([ID, TS], kind="stable").reset_index(drop=True)

    codes, ids = pd.factorize(frame[ID], sort=True)
    slots = frame[TS].to_numpy(dtype=np.int64)
    n = len(ids)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, codes, slots)
    np.maximum.at(last, codes, slots)
    lengths = last - first + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    pos = offsets[codes] + (slots - first[codes])

    grid_y = np.full(total, np.nan)
    grid_y[pos] = frame[Y].to_numpy(dtype=np.float64)
    grid_x = np.full((total, len(exog_names)), np.nan)
    for j, name in enumerate(exog_names):
        grid_x[pos, j] = frame[name].to_numpy(dtype=np.float64)
    grid_slot = np.repeat(first, lengths) + (np.arange(total) - np.repeat(offsets[:-1], lengths))
    has_row = np.zeros(total, dtype=bool)
    has_row[pos] = True

    valid_counts = np.add.reduceat(np.isfinite(grid_y).astype(np.int64), offsets[:-1]) if n else []
    empty = np.asarray(valid_counts) == 0
    # slots without a row inside the series that are kept (a dropped series fills nothing)
    report.filled_slots = int(np.count_nonzero(~has_row[~np.repeat(empty, lengths)]))
    for i in np.flatnonzero(empty):
        report.dropped[str(ids[i])] = "no valid target value"
    grid_y = interpolate_flat(grid_y, offsets)
    for j in range(len(exog_names)):
        grid_x[:, j] = np.nan_to_num(interpolate_flat(grid_x[:, j], offsets), nan=0.0)

    panel = Panel(
        ids=np.asarray(ids, dtype=object).astype(str),
        offsets=offsets,
        slot=grid_slot.astype(np.int64),
        y=grid_y,
        exog=grid_x,
        exog_names=exog_names,
        freq_ns=freq_ns,
    )
    if empty.any():
        panel = panel.select(~empty)
    report.n_series = panel.n_series
    report.slots_out = len(panel.y)
    return panel, report


def interpolate_flat(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Linear interpolation of NaNs inside each series of a flat array, vectorised.

    Leading/trailing NaNs take the nearest valid value; an all-NaN series stays NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    if not missing.any():
        return values
    total = len(values)
    idx = np.arange(total)
    starts = np.repeat(offsets[:-1], np.diff(offsets))
    ends = np.repeat(offsets[1:], np.diff(offsets)) - 1
    prev = np.maximum.accumulate(np.where(missing, -1, idx))
    nxt = np.minimum.accumulate(np.where(missing, total, idx)[::-1])[::-1]
    has_prev = prev >= starts
    has_next = nxt <= ends
    out = values.copy()
    both = missing & has_prev & has_next
    p, q = prev[both], nxt[both]
    frac = (idx[both] - p) / (q - p)
    out[both] = values[p] + (values[q] - values[p]) * frac
    only_prev = missing & has_prev & ~has_next
    out[only_prev] = values[prev[only_prev]]
    only_next = missing & ~has_prev & has_next
    out[only_next] = values[nxt[only_next]]
    return out


def load_dataset(
    path: str | Path,
    columns: ColumnNames = ColumnNames(),
) -> tuple[pd.DataFrame, ColumnNames]:
    """Read a long CSV/Parquet file, or a folder of `timestamp,value` CSVs (one per series).

    Returns the frame and the column names to read it with: for a folder, the series id is
    the file stem and the columns are (series_id, timestamp, value) unless told otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"data path {str(path)!r} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".parquet"))
        if not files:
            raise DataValidationError(f"folder {str(path)!r} holds no .csv or .parquet file")
        parts = []
        for f in files:
            part = _read_file(f)
            part.insert(0, ID, f.stem)
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
        time_col = columns.time_col
        if time_col == TS and TS not in frame.columns and "timestamp" in frame.columns:
            time_col = "timestamp"  # the NAB layout: timestamp,value per file
        return frame, ColumnNames(ID, time_col, columns.target_col)
    return _read_file(path), columns


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet" or path.is_dir():
        kind, read = "Parquet", pd.read_parquet
    elif suffix in (".csv", ".gz", ".txt"):
        kind, read = "CSV", pd.read_csv
    else:
        raise DataValidationError(f"{str(path)!r}: expected a .csv or .parquet file")
    try:
        frame = read(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        # pandas' EmptyDataError and pyarrow's ArrowInvalid are ValueErrors
        raise DataValidationError(
            f"{str(path)!r} cannot be read as {kind}: {type(exc).__name__}: {exc}"
        ) from exc
    if frame.empty:
        raise DataValidationError(f"{str(path)!r} holds no rows")
    return frame
