"""Bad input on every backend: clear errors naming table/column/series/value, and a write
that fails (validation or half-way) leaves the stored data as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from storage_helpers import canon, forecasts, metrics, slot

import storage.dialect_mysql
import storage.dialect_sqlite
import storage.parquet
import storage.sql
from storage import DataValidationError, StorageError


def _unchanged(store, metrics_before: pd.DataFrame, forecasts_before: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(store.read_metrics(), metrics_before)
    pd.testing.assert_frame_equal(store.read_forecasts(), forecasts_before)


@pytest.fixture
def seeded(make_store):
    """A store holding two series x 6 slots of metrics and one forecast slot."""
    store = make_store()
    store.write_metrics(metrics(["a", "b"], range(6)))
    store.write_forecasts(forecasts(["a", "b"], slot(5)))
    return store, store.read_metrics(), store.read_forecasts()


def _bad_metrics(kind: str) -> tuple[pd.DataFrame, list[str]]:
    """A frame whose LAST row is bad, and the fragments the error message must contain."""
    df = metrics(["a", "b"], range(6, 9))
    last = len(df) - 1
    if kind == "nan":
        df.loc[last, "value"] = np.nan
        return df, ["'value'", "1 NaN/Inf", "'b'", "2024-03-04 00:40:00+00:00", "nan"]
    if kind == "inf_feature":
        df.loc[[0, last], "error_rate"] = np.inf
        return df, ["'error_rate'", "2 NaN/Inf", "'a'", "inf"]
    if kind == "text_target":
        df["value"] = df["value"].astype(str)
        return df, ["'value'", "numeric", "dtype"]
    if kind == "duplicate":
        df.loc[last, "ts"] = df.loc[last - 1, "ts"]
        return df, ["1 duplicate", "series_id='b'", "ts=2024-03-04 00:35:00+00:00"]
    if kind == "off_grid":
        df.loc[last, "ts"] = df.loc[last, "ts"] + pd.Timedelta("90s")
        return df, ["off the 300-second slot grid", "'b'", "2024-03-04 00:41:30+00:00", "1 "]
    if kind == "missing_ts":
        df.loc[last, "ts"] = pd.NaT
        return df, ["'ts'", "1 missing timestamp", "'b'"]
    if kind == "missing_id":
        df["series_id"] = df["series_id"].astype(object)
        df.loc[last, "series_id"] = None
        return df, ["'series_id'", "1 missing series id", f"row {last}"]
    if kind == "missing_column":
        return df.drop(columns=["value"]), ["lacks column(s) ['value']", "'error_rate'"]
    if kind == "bad_timestamp_text":
        df["ts"] = df["ts"].astype(str)
        df.loc[last, "ts"] = "yesterday-ish"
        return df, ["'ts'", "not timestamps"]
    raise AssertionError(kind)


METRIC_FAULTS = [
    "nan",
    "inf_feature",
    "text_target",
    "duplicate",
    "off_grid",
    "missing_ts",
    "missing_id",
    "missing_column",
    "bad_timestamp_text",
]


@pytest.mark.parametrize("kind", METRIC_FAULTS)
def test_bad_metrics_are_refused_whole(seeded, kind):
    store, m0, f0 = seeded
    df, fragments = _bad_metrics(kind)
    with pytest.raises(DataValidationError) as err:
        store.write_metrics(df)
    msg = str(err.value)
    assert msg.startswith("write_metrics")
    for frag in fragments:
        assert frag in msg, (frag, msg)
    _unchanged(store, m0, f0)


def _bad_forecasts(kind: str) -> tuple[pd.DataFrame, list[str]]:
    df = forecasts(["a", "b"], slot(6))
    last = len(df) - 1
    if kind == "nan_yhat":
        df.loc[last, "yhat"] = np.nan
        return df, ["'yhat'", "1 NaN/Inf", "'b'", "target_ts 2024-03-04 01:30:00+00:00"]
    if kind == "step_range":
        df.loc[last, "step"] = 0
        return df, ["'step'", "1..288", "'b'", "step 0"]
    if kind == "target_mismatch":
        df.loc[last, "target_ts"] = df.loc[last, "target_ts"] + pd.Timedelta("5min")
        return df, ["target_ts != issued_at + step * freq", "'b'", "step 12"]
    if kind == "inverted_interval":
        df.loc[last, ["yhat_lower", "yhat_upper"]] = [5.0, 1.0]
        return df, ["yhat_lower > yhat_upper", "'b'", "5.0 > 1.0"]
    if kind == "level":
        df.loc[last, "level"] = 80.0
        return df, ["'level'", "between 0 and 1", "80.0"]
    if kind == "duplicate_key":
        df = pd.concat([df, df.tail(1)], ignore_index=True)
        return df, ["1 duplicate", "series_id='b'", "step=12"]
    if kind == "missing_column":
        return df.drop(columns=["yhat_upper", "level"]), ["['yhat_upper', 'level']"]
    if kind == "off_grid":
        df["issued_at"] = df["issued_at"] + pd.Timedelta("1s")
        df["target_ts"] = df["target_ts"] + pd.Timedelta("1s")
        return df, ["'issued_at'", "24 timestamp(s) off the", "2024-03-04 00:30:01+00:00"]
    if kind == "empty_model_version":
        df.loc[last, "model_version"] = ""
        return df, ["'model_version'", "1 missing/empty"]
    raise AssertionError(kind)


FORECAST_FAULTS = [
    "nan_yhat",
    "step_range",
    "target_mismatch",
    "inverted_interval",
    "level",
    "duplicate_key",
    "missing_column",
    "off_grid",
    "empty_model_version",
]


@pytest.mark.parametrize("kind", FORECAST_FAULTS)
def test_bad_forecasts_are_refused_whole(seeded, kind):
    store, m0, f0 = seeded
    df, fragments = _bad_forecasts(kind)
    with pytest.raises(DataValidationError) as err:
        store.write_forecasts(df)
    msg = str(err.value)
    assert msg.startswith("write_forecasts")
    for frag in fragments:
        assert frag in msg, (frag, msg)
    _unchanged(store, m0, f0)


class Boom(RuntimeError):
    """The injected failure."""


def _inject(monkeypatch, backend: str, labels: set[str], after: int = 0) -> list[str]:
    """Make the backend's write hook raise Boom at the (after+1)-th point in ``labels``."""
    seen: list[str] = []

    def hook(label: str) -> None:
        if label in labels:
            seen.append(label)
            if len(seen) > after:
                raise Boom(f"injected at {label}")

    module = storage.parquet if backend == "parquet" else storage.sql
    monkeypatch.setattr(module, "_fault_point", hook)
    return seen


def test_forecast_write_interrupted_half_way_leaves_nothing(seeded, backend, monkeypatch):
    store, m0, f0 = seeded
    # overwrite the stored slot AND add two new ones, then fail after all rows are staged
    df = pd.concat(
        [
            forecasts(["a", "b"], slot(5), bump=50.0),
            forecasts(["a", "b"], slot(6)),
            forecasts(["a"], slot(400)),
        ],
        ignore_index=True,
    )
    labels = {"before_replace"} if backend == "parquet" else {"before_commit"}
    seen = _inject(monkeypatch, backend, labels)
    with pytest.raises(Boom):
        store.write_forecasts(df)
    assert seen  # the failure happened inside the write, after the rows were sent
    _unchanged(store, m0, f0)
    monkeypatch.undo()
    assert store.write_forecasts(df) == len(df)  # and the store still works
    assert len(store.read_forecasts()) == len(df)


def test_metrics_write_interrupted_between_batches_leaves_nothing(seeded, backend, monkeypatch):
    store, m0, f0 = seeded
    df = metrics(["a", "b", "c"], range(3, 40), seed=9)  # overwrites and new rows, many hours
    if backend in ("sqlite", "mariadb"):  # 111 rows in batches of 10: fail after the second
        module = storage.dialect_sqlite if backend == "sqlite" else storage.dialect_mysql
        monkeypatch.setattr(module, "CHUNK_ROWS", 10)
        if backend == "mariadb":  # LOAD DATA statements (or INSERTs where it is refused)
            monkeypatch.setattr(module, "LOAD_ROWS", 10)
        labels, after = {"chunk"}, 1
    elif backend == "postgres":  # fail after COPY filled the staging table
        labels, after = {"staged"}, 0
    else:  # four hour files: fail after the second is staged
        labels, after = {"staged"}, 1
    seen = _inject(monkeypatch, backend, labels, after=after)
    with pytest.raises(Boom):
        store.write_metrics(df)
    assert len(seen) == after + 1
    _unchanged(store, m0, f0)
    if backend == "parquet":
        leftovers = [p for p in store.root.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == []


def test_storage_errors_share_one_base_class(seeded):
    store, _, _ = seeded
    with pytest.raises(StorageError):
        store.write_metrics(pd.DataFrame({"x": [1]}))
    with pytest.raises(StorageError):
        store.read_recent(slot(3) + pd.Timedelta("1min"), 12)
    with pytest.raises(StorageError, match="extra_ranges"):
        store.read_recent(slot(3), 12, extra_ranges=[(5, 2)])
    with pytest.raises(StorageError, match="n_slots"):
        store.read_recent(slot(3), 0)
    with pytest.raises(StorageError, match="start .* is after end"):
        store.read_metrics(start=slot(4), end=slot(3))
    with pytest.raises(StorageError, match="by="):
        store.read_accuracy(by=("yhat",))


def test_empty_frames_write_nothing(seeded):
    store, m0, f0 = seeded
    assert store.write_metrics(metrics(["a"], [1]).iloc[0:0]) == 0
    assert store.write_forecasts(forecasts(["a"], slot(9)).iloc[0:0]) == 0
    _unchanged(store, m0, f0)
    assert canon(store.read_metrics(), ["series_id", "ts"]).equals(m0)
