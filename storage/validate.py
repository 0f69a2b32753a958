"""Strict checks on frames given to writes; they return canonical Arrow tables.

Writes refuse bad data with a message naming the column, the number of bad rows and the
first offending series, timestamp and value. Reads never repair or judge data: per-series
quality decisions belong to the ``lstm`` library.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from storage.columns import (
    ACCURACY_SCHEMA,
    FORECAST_SCHEMA,
    SERIES_ID,
    TS,
    TS_TYPE,
    VALUE,
    ColumnMap,
    check_identifier,
)
from storage.errors import DataValidationError
from storage.timeutil import US_PER_S, NaiveWarner, column_to_us, fmt_us, us_array

#: Columns a forecasts frame must have: the schema's, less created_at (optional, now).
FORECAST_INPUT = tuple(
    name for name in FORECAST_SCHEMA.names if name not in ("created_at", "interval_scale")
)

#: Longest series id a store accepts, in characters. PostgreSQL's btree index rows hold at
#: most 2704 bytes; 512 characters of 4-byte UTF-8 stay below that on every backend.
MAX_SERIES_ID_LENGTH = 512


def _shown_id(sid: str, width: int = 40) -> str:
    """A series id for messages: the first ``width`` characters and the length."""
    return repr(sid) if len(sid) <= width else f"{sid[:width]!r}... ({len(sid)} characters)"


def _id_problem(sid: str) -> str | None:
    if sid == "":
        return "empty series id"
    if len(sid) > MAX_SERIES_ID_LENGTH:
        return f"series id of {len(sid)} characters (at most {MAX_SERIES_ID_LENGTH})"
    if "\x00" in sid:
        return "series id contains a NUL character (PostgreSQL text cannot hold it)"
    return None


def invalid_series_ids(ids: object) -> dict[str, str]:
    """The ids a store would refuse, each with the reason (empty, longer than
    :data:`MAX_SERIES_ID_LENGTH` characters, a NUL character): skip these series before
    forecasting so the other series' forecasts can be written.

    >>> invalid_series_ids(["web", "x" * 600])  # doctest: +ELLIPSIS
    {'xxx...': 'series id of 600 characters (at most 512)'}
    """
    if isinstance(ids, str):
        ids = [ids]
    out: dict[str, str] = {}
    for sid in dict.fromkeys(str(i) for i in ids):  # type: ignore[union-attr]
        problem = _id_problem(sid)
        if problem is not None:
            out[sid] = problem
    return out


def _require_frame(df: object, what: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    return df


def _require_columns(df: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{what}: frame lacks column(s) {missing}; it has {[str(c) for c in df.columns]}"
        )


def _ids(df: pd.DataFrame, col: str, what: str) -> np.ndarray:
    s = df[col]
    if s.isna().any():
        n = int(s.isna().sum())
        pos = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise DataValidationError(
            f"{what}: column {col!r} has {n} missing series id(s) (first at row {pos})"
        )
    if pd.api.types.is_float_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        raise DataValidationError(
            f"{what}: column {col!r} must hold series ids (text or integers), got {s.dtype}"
        )
    ids = s.astype(str).to_numpy(dtype=object)
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise DataValidationError(
            f"{what}: column {col!r} has {len(empty)} empty series id(s) (first at row "
            f"{int(empty[0])})"
        )
    uniq = pd.unique(ids)
    lengths = np.fromiter((len(u) for u in uniq), dtype="int64", count=len(uniq))
    bad = [
        str(u)
        for u, n in zip(uniq, lengths, strict=True)
        if n > MAX_SERIES_ID_LENGTH or "\x00" in u
    ]
    if bad:
        raise DataValidationError(
            f"{what}: column {col!r} has {len(bad)} series id(s) a store refuses (first: "
            f"series {_shown_id(bad[0])}: {_id_problem(bad[0])}); ids hold 1 to "
            f"{MAX_SERIES_ID_LENGTH} characters and no NUL (storage.invalid_series_ids "
            "names them, to skip them)"
        )
    return ids


def _floats(
    df: pd.DataFrame, col: str, what: str, ids: np.ndarray, ts: np.ndarray | None, tname: str
) -> np.ndarray:
    """A numeric column as float64, refusing non-numeric dtypes and NaN/Inf values."""
    s = df[col]
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_complex_dtype(s.dtype):
        example = f" (first value {s.iloc[0]!r})" if len(s) else ""
        raise DataValidationError(
            f"{what}: column {col!r} must be numeric, got dtype {s.dtype}{example}"
        )
    values = s.to_numpy(dtype="float64", na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        at = f" at {tname} {fmt_us(ts[i])}" if ts is not None else ""
        raise DataValidationError(
            f"{what}: column {col!r} has {len(bad)} NaN/Inf value(s) (first: series "
            f"{ids[i]!r}{at}, value {float(values[i])!r})"
        )
    return values


def _check_grid(ts: np.ndarray, freq_us: int, col: str, what: str, ids: np.ndarray) -> None:
    off = np.flatnonzero(ts % freq_us)
    if len(off):
        i = int(off[0])
        raise DataValidationError(
            f"{what}: column {col!r} has {len(off)} timestamp(s) off the "
            f"{freq_us // US_PER_S}-second slot grid (first: series {ids[i]!r} at "
            f"{fmt_us(ts[i])})"
        )


def _check_unique(keys: pd.DataFrame, what: str, names: list[str]) -> None:
    dup = keys.duplicated(keep=False)
    if dup.any():
        first = keys[dup].iloc[0]
        n = int(keys.duplicated(keep="first").sum())
        shown = ", ".join(
            f"{name}={fmt_us(first[k]) if k.startswith('_us') else repr(_py(first[k]))}"
            for k, name in zip(keys.columns, names, strict=True)
        )
        raise DataValidationError(
            f"{what}: {n} duplicate row(s) for the key ({', '.join(names)}) (first: {shown})"
        )


def feature_columns(df: pd.DataFrame, cm: ColumnMap) -> list[str]:
    """The feature columns of a frame: the mapped ones, or every other numeric column."""
    if cm.feature_cols is not None:
        return list(cm.feature_cols)
    return [
        str(c)
        for c in df.columns
        if c not in cm.keys
        and pd.api.types.is_numeric_dtype(df[c].dtype)
        and not pd.api.types.is_complex_dtype(df[c].dtype)
    ]


def metrics_table(df: pd.DataFrame, cm: ColumnMap, freq_us: int, warn: NaiveWarner) -> pa.Table:
    """Validate a metrics frame (source names) and return it with canonical names."""
    what = "write_metrics"
    df = _require_frame(df, what)
    features = feature_columns(df, cm)
    _require_columns(df, [*cm.keys, *features], what)
    for f in features:
        check_identifier(f, "feature column")
    cm.check_feature_names(features)
    ids = _ids(df, cm.id_col, what)
    ts = column_to_us(df, cm.time_col, what, warn, ids)
    value = _floats(df, cm.target_col, what, ids, ts, cm.time_col)
    feats = {f: _floats(df, f, what, ids, ts, cm.time_col) for f in features}
    _check_grid(ts, freq_us, cm.time_col, what, ids)
    _check_unique(pd.DataFrame({"id": ids, "_us": ts}), what, [cm.id_col, cm.time_col])
    cols: dict[str, pa.Array] = {
        SERIES_ID: pa.array(ids, type=pa.string()),
        TS: us_array(ts),
        VALUE: pa.array(value, type=pa.float64()),
    }
    for f, v in feats.items():
        cols[f] = pa.array(v, type=pa.float64())
    return pa.table(cols)


def forecasts_table(
    df: pd.DataFrame, freq_us: int, max_horizon: int, warn: NaiveWarner, now_us: int
) -> pa.Table:
    """Validate a forecasts frame and return it in :data:`FORECAST_SCHEMA` order."""
    what = "write_forecasts"
    df = _require_frame(df, what)
    _require_columns(df, list(FORECAST_INPUT), what)
    ids = _ids(df, "series_id", what)
    issued = column_to_us(df, "issued_at", what, warn, ids)
    target = column_to_us(df, "target_ts", what, warn, ids)
    _check_grid(issued, freq_us, "issued_at", what, ids)
    _check_grid(target, freq_us, "target_ts", what, ids)
    step_s = df["step"]
    if not pd.api.types.is_numeric_dtype(step_s.dtype) or pd.api.types.is_bool_dtype(step_s):
        raise DataValidationError(
            f"{what}: column 'step' must hold integers, got dtype {step_s.dtype}"
        )
    step_f = step_s.to_numpy(dtype="float64", na_value=np.nan)
    bad = np.flatnonzero(
        ~np.isfinite(step_f) | (step_f != np.round(step_f)) | (step_f < 1) | (step_f > max_horizon)
    )
    if len(bad):
        i = int(bad[0])
        raise DataValidationError(
            f"{what}: column 'step' has {len(bad)} value(s) that are not integers in "
            f"1..{max_horizon} (first: series {ids[i]!r}, step {float(step_f[i]):g})"
        )
    step = step_f.astype("int64")
    wrong = np.flatnonzero(target != issued + step * freq_us)
    if len(wrong):
        i = int(wrong[0])
        raise DataValidationError(
            f"{what}: {len(wrong)} row(s) where target_ts != issued_at + step * freq (first: "
            f"series {ids[i]!r}, issued_at {fmt_us(issued[i])}, step {int(step[i])}, "
            f"target_ts {fmt_us(target[i])})"
        )
    nums = {
        c: _floats(df, c, what, ids, target, "target_ts")
        for c in ("yhat", "yhat_lower", "yhat_upper", "level")
    }
    inverted = np.flatnonzero(nums["yhat_lower"] > nums["yhat_upper"])
    if len(inverted):
        i = int(inverted[0])
        raise DataValidationError(
            f"{what}: {len(inverted)} row(s) with yhat_lower > yhat_upper (first: series "
            f"{ids[i]!r} at target_ts {fmt_us(target[i])}: {float(nums['yhat_lower'][i])!r} > "
            f"{float(nums['yhat_upper'][i])!r})"
        )
    lvl = nums["level"]
    bad = np.flatnonzero((lvl <= 0) | (lvl >= 1))
    if len(bad):
        i = int(bad[0])
        raise DataValidationError(
            f"{what}: column 'level' must lie strictly between 0 and 1 (e.g. 0.8); "
            f"{len(bad)} row(s) do not (first: series {ids[i]!r}, level {float(lvl[i])!r})"
        )
    mv = df["model_version"]
    if mv.isna().any() or (mv.astype(str) == "").any():
        n = int((mv.isna() | (mv.astype(str) == "")).sum())
        raise DataValidationError(f"{what}: column 'model_version' has {n} missing/empty value(s)")
    _check_unique(
        pd.DataFrame({"id": ids, "_us": issued, "step": step}),
        what,
        ["series_id", "issued_at", "step"],
    )
    if "created_at" in df.columns:
        created = column_to_us(df, "created_at", what, warn, ids)
    else:
        created = np.full(len(df), now_us, dtype="int64")
    scale = np.ones(len(df))
    if "interval_scale" in df.columns:
        scale = _floats(df, "interval_scale", what, ids, target, "target_ts")
        bad = np.flatnonzero(scale <= 0)
        if len(bad):
            i = int(bad[0])
            raise DataValidationError(
                f"{what}: column 'interval_scale' must be positive; {len(bad)} row(s) are not "
                f"(first: series {ids[i]!r}, interval_scale {float(scale[i])!r})"
            )
    arrays = [
        pa.array(ids, type=pa.string()),
        us_array(issued),
        us_array(target),
        pa.array(step, type=pa.int64()),
        pa.array(nums["yhat"]),
        pa.array(nums["yhat_lower"]),
        pa.array(nums["yhat_upper"]),
        pa.array(lvl),
        pa.array(mv.astype(str).to_numpy(dtype=object), type=pa.string()),
        us_array(created),
        pa.array(scale, type=pa.float64()),
    ]
    return pa.Table.from_arrays(arrays, schema=FORECAST_SCHEMA)


def check_issued_within(tab: pa.Table, owned: list[int]) -> None:
    """Refuse forecast rows issued outside the slots a write owns."""
    issued = tab["issued_at"].cast(pa.int64()).to_numpy()
    outside = np.flatnonzero(~np.isin(issued, np.asarray(owned, dtype="int64")))
    if len(outside):
        i = int(outside[0])
        shown = ", ".join(fmt_us(u) for u in owned[:3]) + (", ..." if len(owned) > 3 else "")
        raise DataValidationError(
            f"write_forecasts: {len(outside)} row(s) issued outside the slots the write owns "
            f"(first: series {tab['series_id'][i].as_py()!r}, issued_at {fmt_us(issued[i])}); "
            f"slots: {shown}"
        )


def now_us() -> int:
    """The current time as epoch microseconds."""
    return int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000)


def score_table(forecasts: pa.Table, actual: np.ndarray, scored_at_us: int) -> pa.Table:
    """Accuracy rows for forecasts with their actuals (``actual`` aligned, no NaN)."""
    yhat = forecasts["yhat"].to_numpy()
    lo = forecasts["yhat_lower"].to_numpy()
    hi = forecasts["yhat_upper"].to_numpy()
    n = forecasts.num_rows
    cols = {
        "series_id": forecasts["series_id"],
        "issued_at": forecasts["issued_at"],
        "step": forecasts["step"],
        "target_ts": forecasts["target_ts"],
        "model_version": forecasts["model_version"],
        "y": pa.array(actual, type=pa.float64()),
        "yhat": forecasts["yhat"],
        "yhat_lower": forecasts["yhat_lower"],
        "yhat_upper": forecasts["yhat_upper"],
        "level": forecasts["level"],
        "abs_error": pa.array(np.abs(actual - yhat), type=pa.float64()),
        "covered": pa.array((actual >= lo) & (actual <= hi), type=pa.bool_()),
        "scored_at": pa.array(np.full(n, scored_at_us, dtype="int64")).cast(TS_TYPE),
        "interval_scale": forecasts["interval_scale"],
    }
    return pa.table(cols).cast(ACCURACY_SCHEMA)


def _py(value: object) -> object:
    """numpy scalars to Python ones, so messages read ``12`` rather than ``np.int64(12)``."""
    return value.item() if isinstance(value, np.generic) else value
