import numpy as np
import pandas as pd
import pytest

from lstm import ColumnNames, DataValidationError, load_dataset, regularize
from lstm.panel import interpolate_flat


def frame(rows):
    return pd.DataFrame(rows, columns=["series_id", "ts", "value"])


def test_regularize_floors_sums_duplicates_and_interpolates_gaps():
    df = frame(
        [
            ("a", "2026-01-01 00:00:00+00:00", 10.0),
            ("a", "2026-01-01 00:02:30+00:00", 5.0),  # same slot after flooring: summed
            ("a", "2026-01-01 00:05:00+00:00", 20.0),
            # 00:10 and 00:15 missing -> interpolated between 20 and 50
            ("a", "2026-01-01 00:20:00+00:00", 50.0),
            ("b", "2026-01-01 00:07:00+00:00", 1.0),  # off grid -> 00:05
            ("b", "2026-01-01 00:10:00+00:00", 2.0),
        ]
    )
    panel, report = regularize(df)
    assert list(panel.ids) == ["a", "b"]
    assert list(panel.lengths) == [5, 2]
    np.testing.assert_allclose(panel.y[:5], [15.0, 20.0, 30.0, 40.0, 50.0])
    np.testing.assert_allclose(panel.y[5:], [1.0, 2.0])
    assert report.filled_slots == 2
    assert report.duplicate_rows == 1
    assert report.off_grid_rows == 2
    ts = panel.timestamps()
    assert str(ts[0]) == "2026-01-01 00:00:00+00:00"
    assert str(ts[5]) == "2026-01-01 00:05:00+00:00"


def test_invalid_values_are_treated_as_missing_and_counted():
    df = frame(
        [
            ("a", "2026-01-01 00:00", 1.0),
            ("a", "2026-01-01 00:05", np.nan),
            ("a", "2026-01-01 00:10", np.inf),
            ("a", "2026-01-01 00:15", -4.0),
            ("a", "2026-01-01 00:20", 5.0),
            ("dead", "2026-01-01 00:00", np.nan),
        ]
    )
    panel, report = regularize(df)
    np.testing.assert_allclose(panel.y, [1, 2, 3, 4, 5])
    assert report.invalid_values == {"a": 3, "dead": 1}
    assert report.dropped == {"dead": "no valid target value"}
    assert report.assumed_utc is True
    assert list(panel.ids) == ["a"]


def test_missing_columns_are_listed_with_what_exists():
    df = pd.DataFrame({"unique_id": ["a"], "ds": ["2026-01-01"], "y": [1.0]})
    with pytest.raises(DataValidationError) as err:
        regularize(df)
    msg = str(err.value)
    assert "['series_id', 'ts', 'value']" in msg
    assert "'unique_id'" in msg and "--id-col" in msg


def test_nixtla_columns_through_the_mapping():
    df = pd.DataFrame(
        {"unique_id": ["a", "a"], "ds": ["2026-01-01 00:00", "2026-01-01 00:05"], "y": [1.0, 2.0]}
    )
    panel, _ = regularize(df, columns=ColumnNames.nixtla())
    assert list(panel.ids) == ["a"] and list(panel.y) == [1.0, 2.0]


def test_non_numeric_target_strict_names_series_and_values():
    df = frame([("a", "2026-01-01 00:00", 1.0), ("b", "2026-01-01 00:00", "oops")])
    with pytest.raises(DataValidationError) as err:
        regularize(df)
    msg = str(err.value)
    assert "'value'" in msg and "'oops'" in msg and "'b'" in msg


def test_non_numeric_target_lenient_counts_per_series():
    df = frame(
        [
            ("a", "2026-01-01 00:00", 1.0),
            ("a", "2026-01-01 00:05", "x"),
            ("a", "2026-01-01 00:10", 3.0),
        ]
    )
    panel, report = regularize(df, strict=False)
    np.testing.assert_allclose(panel.y, [1, 2, 3])
    assert report.invalid_values == {"a": 1}


def test_wholly_non_numeric_target_column_is_an_error_even_when_lenient():
    df = frame([("a", "2026-01-01 00:00", "x"), ("a", "2026-01-01 00:05", "y")])
    with pytest.raises(DataValidationError, match="must be numeric; got dtype"):
        regularize(df, strict=False)


def test_unparseable_timestamps_are_listed():
    df = frame([("a", "2026-01-01 00:00", 1.0), ("a", "not a time", 2.0)])
    with pytest.raises(DataValidationError) as err:
        regularize(df)
    assert "'not a time'" in str(err.value) and "'ts'" in str(err.value)


def test_timezones_are_converted_to_utc():
    df = frame([("a", "2026-01-01 01:00:00+01:00", 1.0), ("a", "2026-01-01 00:05:00+00:00", 2.0)])
    panel, report = regularize(df)
    assert str(panel.timestamps()[0]) == "2026-01-01 00:00:00+00:00"
    assert report.assumed_utc is False
    assert list(panel.y) == [1.0, 2.0]


def test_exogenous_features_are_detected_and_interpolated():
    df = frame([("a", "2026-01-01 00:00", 1.0), ("a", "2026-01-01 00:10", 3.0)])
    df["error_rate"] = [0.1, 0.3]
    panel, _ = regularize(df)
    assert panel.exog_names == ("error_rate",)
    np.testing.assert_allclose(panel.exog[:, 0], [0.1, 0.2, 0.3])


def test_interpolate_flat_respects_series_boundaries():
    values = np.array([np.nan, 1.0, np.nan, 3.0, np.nan, np.nan, 7.0, np.nan])
    offsets = np.array([0, 5, 8])
    out = interpolate_flat(values, offsets)
    # series 0: [nan,1,nan,3,nan] -> bfill, linear, ffill; series 1: [nan,7,nan]
    np.testing.assert_allclose(out, [1, 1, 2, 3, 3, 7, 7, 7])


def test_load_dataset_folder_of_csvs(tmp_path):
    for name, vals in (("x", [1, 2]), ("y", [3, 4])):
        pd.DataFrame({"timestamp": ["2026-01-01 00:00", "2026-01-01 00:05"], "value": vals}).to_csv(
            tmp_path / f"{name}.csv", index=False
        )
    df, cols = load_dataset(tmp_path)
    panel, _ = regularize(df, columns=cols)
    assert list(panel.ids) == ["x", "y"]
    np.testing.assert_allclose(panel.y, [1, 2, 3, 4])


def test_load_dataset_missing_path():
    with pytest.raises(DataValidationError, match="does not exist"):
        load_dataset("/nonexistent/metrics.csv")
