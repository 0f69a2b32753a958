import numpy as np
import pandas as pd
import pytest

from lstm import (
    DataValidationError,
    PredictionBuffer,
    batch_predict,
    create_data_buffer,
    real_time_predict,
    update_buffer,
    validate_real_time_input,
)
from lstm.inference import buffer_to_input, input_keys
from lstm.prepare import prepare_latest


def series_dict(frame: pd.DataFrame, sid: str, n: int) -> dict:
    s = frame[frame.series_id == sid].tail(n)
    return {"value": s.value.tolist(), "ts": s.ts.tolist(), "error_rate": s.error_rate.tolist()}


def test_batch_and_single_series_forecasts_agree(small_forecaster, synth_frame):
    as_of = synth_frame.ts.max()
    frame, report = small_forecaster.forecast(synth_frame, as_of)
    assert report.n_forecast == 6 and not report.skipped
    assert len(frame) == 6 * 12
    for sid in synth_frame.series_id.unique():
        single = real_time_predict(
            small_forecaster, data_dict=series_dict(synth_frame, sid, 300), return_confidence=True
        )
        rows = frame[frame.series_id == sid].sort_values("step")
        np.testing.assert_allclose(rows.yhat.to_numpy(), single["forecast"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            rows.yhat_lower.to_numpy(), single["intervals"]["80"]["lower"], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            rows.yhat_upper.to_numpy(), single["intervals"]["80"]["upper"], rtol=1e-5, atol=1e-6
        )
        assert single["prediction"] == pytest.approx(rows.yhat.iloc[0], rel=1e-5)
        lo, hi = single["confidence_interval"]
        assert lo <= single["prediction"] <= hi
        assert pd.Timestamp(single["target_ts"][0]) == as_of + pd.Timedelta("5min")


def test_forecast_frame_layout_and_monotone_intervals(small_forecaster, synth_frame):
    frame, _ = small_forecaster.forecast(synth_frame)
    assert list(frame.columns) == [
        "series_id",
        "issued_at",
        "target_ts",
        "step",
        "yhat",
        "yhat_lower",
        "yhat_upper",
        "level",
    ]
    assert (frame.yhat_lower <= frame.yhat).all() and (frame.yhat <= frame.yhat_upper).all()
    assert (frame.yhat >= 0).all() and (frame.level == 0.8).all()
    assert (
        (frame.target_ts - frame.issued_at) == pd.to_timedelta(frame.step * 5, unit="min")
    ).all()
    f95, _ = small_forecaster.forecast(synth_frame, level=0.95)
    assert ((f95.yhat_upper - f95.yhat_lower) >= (frame.yhat_upper - frame.yhat_lower) - 1e-9).all()


def test_bad_series_are_skipped_or_repaired_and_the_rest_forecast(small_forecaster, synth_frame):
    as_of = synth_frame.ts.max()
    df = synth_frame.copy()
    ids = sorted(df.series_id.unique())

    def window():
        return df.ts > as_of - pd.Timedelta("1h")

    # ids[0]: two gaps inside the window -> repaired
    gap = df.index[(df.series_id == ids[0]) & window()][[3, 6]]
    df = df.drop(gap)
    # ids[1]: NaN at as_of -> skipped
    df.loc[(df.series_id == ids[1]) & (df.ts == as_of), "value"] = np.nan
    # ids[2]: 6 of 12 window slots missing -> skipped
    drop = df.index[(df.series_id == ids[2]) & window()][:6]
    df = df.drop(drop)
    # ids[3]: disappeared 2 hours ago
    df = df[~((df.series_id == ids[3]) & (df.ts > as_of - pd.Timedelta("2h")))]
    frame, report = small_forecaster.forecast(df, as_of)
    assert report.repaired == {ids[0]: 2}
    assert set(report.skipped) == {ids[1], ids[2], ids[3]}
    assert "as_of" in report.skipped[ids[1]]
    assert "6 of 12 window slots missing" in report.skipped[ids[2]]
    assert "no value in the 12-slot window" in report.skipped[ids[3]]
    assert sorted(frame.series_id.unique()) == [ids[0], ids[4], ids[5]]
    assert report.n_input_series == 6 and report.n_forecast == 3


def test_unseen_series_at_a_new_level_is_forecast_at_its_own_scale(small_forecaster, synth_frame):
    sid = synth_frame.series_id.iloc[0]
    s = synth_frame[synth_frame.series_id == sid].copy()
    big = s.assign(series_id="brand-new", value=s.value * 1000)
    frame, report = small_forecaster.forecast(pd.concat([s, big]))
    base = frame[frame.series_id == sid].yhat.to_numpy()
    scaled = frame[frame.series_id == "brand-new"].yhat.to_numpy()
    assert report.n_forecast == 2
    # log scaling: a 1000x series gets (almost exactly) 1000x forecasts
    np.testing.assert_allclose(scaled / np.maximum(base, 1e-9), 1000, rtol=0.05)


def test_duplicate_and_off_grid_rows_are_summed_and_counted(small_forecaster, synth_frame):
    as_of = synth_frame.ts.max()
    one = synth_frame[synth_frame.series_id == synth_frame.series_id.iloc[0]]
    extra = one.tail(1).assign(value=5.0, ts=as_of + pd.Timedelta("1min"))
    raw, ids, report = prepare_latest(pd.concat([one, extra]), small_forecaster.spec, as_of)
    assert report.duplicate_rows == 1 and report.off_grid_rows == 1
    assert raw.y[0, -1] == pytest.approx(one.value.iloc[-1] + 5.0)


def test_missing_exogenous_column_is_a_clear_error(small_forecaster, synth_frame):
    with pytest.raises(DataValidationError, match="error_rate"):
        small_forecaster.forecast(synth_frame.drop(columns="error_rate"))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("value"), "Missing features: ['value']"),
        (lambda d: d.update(value=d["value"][:5]), "at least 12 values, got 5"),
        (lambda d: d["value"].__setitem__(-1, float("nan")), "NaN"),
        (lambda d: d["error_rate"].__setitem__(-2, float("inf")), "Inf"),
        (lambda d: d["value"].__setitem__(-3, -4.0), "must be >= 0"),
        (lambda d: d["value"].__setitem__(-3, "abc"), "non-numeric values ['abc']"),
        (lambda d: d.update(error_rate="0.1"), "must be list/array"),
        (lambda d: d["ts"].__setitem__(-1, "yesterday-ish"), "not a timestamp"),
        (
            lambda d: d.update(value=[[v, v] for v in d["value"]]),
            "must be one-dimensional (one value per slot), got shape",
        ),
    ],
)
def test_validate_real_time_input_messages(small_forecaster, synth_frame, mutate, message):
    data = series_dict(synth_frame, synth_frame.series_id.iloc[0], 12)
    mutate(data)
    ok, msg = validate_real_time_input(data, input_keys(small_forecaster.spec), 12)
    assert not ok and message in msg
    with pytest.raises(ValueError, match="Input validation failed"):
        real_time_predict(small_forecaster, data_dict=data)


def test_seed_style_batch_predict_over_dicts(small_forecaster, synth_frame):
    ids = synth_frame.series_id.unique()[:3]
    inputs = [series_dict(synth_frame, s, 300) for s in ids]
    inputs.insert(1, {"value": [1.0] * 3, "ts": ["2026-01-01"] * 3, "error_rate": [0.1] * 3})
    results = batch_predict(small_forecaster, data_list=inputs)
    assert [r["status"] for r in results] == ["success", "error", "success", "success"]
    assert "at least 12 values" in results[1]["error"]
    single = real_time_predict(small_forecaster, data_dict=inputs[2])
    np.testing.assert_allclose(results[2]["forecast"], single["forecast"], rtol=1e-5)


def test_buffers_feed_real_time_predict(small_forecaster, synth_frame):
    s = synth_frame[synth_frame.series_id == synth_frame.series_id.iloc[0]]
    buf = create_data_buffer(
        s.iloc[:-1], window_size=12, required_cols=["value", "error_rate"], history=300
    )
    last = s.iloc[-1]
    buf = update_buffer(buf, {"value": last.value, "error_rate": last.error_rate})
    assert buf["timestamp"] == last.ts and len(buf["data"]) == 300
    res = real_time_predict(small_forecaster, data_dict=buffer_to_input(buf))
    full = real_time_predict(
        small_forecaster, data_dict=series_dict(synth_frame, last.series_id, 300)
    )
    np.testing.assert_allclose(res["forecast"], full["forecast"], rtol=1e-6)
    pb = PredictionBuffer(max_size=2)
    for k in range(3):
        pb.add({"confidence_interval": (0.0, float(k + 1))})
    assert len(pb) == 2 and pb.get_recent(5)[0]["confidence_interval"] == (0.0, 2.0)
    assert pb.get_avg_confidence() == pytest.approx(2.5)
    pb.clear()
    assert pb.get_avg_confidence() is None


def test_many_origins_at_once_equal_one_by_one(small_forecaster, synth_frame):
    """The backfill property: one batched call gives what predict gives slot by slot."""
    last = synth_frame.ts.max()
    slots = [last - pd.Timedelta(minutes=5 * k) for k in (0, 7, 30)]
    df = synth_frame[~((synth_frame.series_id == "svc-2") & (synth_frame.ts == slots[1]))]
    many, report = small_forecaster.forecast(df, slots)
    assert report.n_skipped == 1 and "svc-2" in report.skipped
    one_by_one = pd.concat([small_forecaster.forecast(df, s)[0] for s in slots])
    key = ["issued_at", "series_id", "step"]
    pd.testing.assert_frame_equal(
        many.sort_values(key).reset_index(drop=True),
        one_by_one.sort_values(key).reset_index(drop=True),
    )
    assert len(many) == (3 * 6 - 1) * 12


def test_invalid_value_at_as_of_is_named(small_forecaster, synth_frame):
    as_of = synth_frame.ts.max()
    df = synth_frame.copy()
    df.loc[(df.series_id == "svc-1") & (df.ts == as_of), "value"] = -3.0
    _, report = small_forecaster.forecast(df, as_of)
    assert report.skipped["svc-1"].startswith(
        "an invalid (NaN/Inf/negative/non-numeric) value at as_of"
    )


@pytest.mark.parametrize("shuffle", [False, True])
def test_forecasting_in_chunks_of_series_changes_nothing(small_forecaster, synth_frame, shuffle):
    """Bounded memory for a big fleet: series prepared a few at a time give the very rows,
    order and report of one pass, for one origin and for several, rows sorted or not."""
    last = synth_frame.ts.max()
    slots = [last - pd.Timedelta(minutes=5 * k) for k in (0, 7)]
    df = synth_frame[~((synth_frame.series_id == "svc-2") & (synth_frame.ts == slots[1]))]
    df = df.drop(df.index[(df.series_id == "svc-4") & (df.ts > last - pd.Timedelta("1h"))][[2]])
    df = df[~((df.series_id == "svc-0") & (df.ts == last))]  # svc-0 skipped at the last slot
    if shuffle:
        df = df.sample(frac=1.0, random_state=3)
    for as_of in (last, slots):
        whole, report = small_forecaster.forecast(df, as_of)
        parts, chunked = small_forecaster.forecast(df, as_of, series_chunk=2)
        pd.testing.assert_frame_equal(parts, whole)
        assert chunked.skipped == report.skipped and set(report.skipped) >= {"svc-0"}
        assert chunked.repaired == report.repaired and "svc-4" in report.repaired
        for name in ("n_input_series", "n_forecast", "n_skipped", "lags_imputed"):
            assert getattr(chunked, name) == getattr(report, name), name
        assert set(chunked.timings) == {"features_s", "model_s", "frame_s"}
