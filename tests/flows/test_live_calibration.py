"""Live recalibration through the predict flow (issue 14): runs score, later runs stretch
the intervals they write, the factor is recorded, and no run uses a later actual."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from prefect.testing.fixtures import asserting_events_worker, reset_worker_events  # noqa: F401

STEP = pd.Timedelta("5min")
N_SERIES = 8
END = pd.Timestamp("2026-03-02 12:00", tz="UTC")  # the model's history ends here
CALM, NOISY = 8, 10  # predict runs before and after the noise grows


@pytest.fixture(scope="module")
def lab(harness, tmp_path_factory):
    """Metrics to END + CALM + NOISY slots (noise added after END + CALM, a few times the
    model's error), a champion fitted on the history to END, small calibration windows."""
    from lstm import ForecastConfig, ModelRegistry, fit_forecaster, generate_metrics, regularize
    from tasks.common import forget_stores, get_store
    from tasks.settings import get_settings

    root = tmp_path_factory.mktemp("livecal")
    mp = pytest.MonkeyPatch()
    env = {
        "FORECAST_STORE_URL": f"sqlite:///{root / 'live.db'}",
        "FORECAST_MODELS_DIR": str(root / "models"),
        "FORECAST_CALIBRATION_WINDOW": "48",  # scores per step: 6 slots of 8 series
        "FORECAST_CALIBRATION_MIN_SCORES": "24",
        "FORECAST_COVERAGE_BREACH_MIN": "40",
        "FORECAST_DATA_WAIT_SECONDS": "0",
    }
    for k, v in env.items():
        mp.setenv(k, v)
    days = 9
    slots = int(pd.Timedelta(days=days) / STEP) + CALM + NOISY + 2
    frame = generate_metrics(
        N_SERIES,
        slots * STEP / pd.Timedelta("1D"),
        seed=5,
        start=END - STEP * (int(pd.Timedelta(days=days) / STEP) - 1),
    )
    change = END + CALM * STEP
    rng = np.random.default_rng(0)
    sd = frame.groupby("series_id")["value"].transform(lambda v: v.diff().abs().median())
    late = frame["ts"] > change
    frame.loc[late, "value"] += rng.normal(0.0, 1.0, late.sum()) * 6.0 * sd[late]
    frame["value"] = frame["value"].clip(lower=0.0)
    store = get_store(get_settings())
    store.write_metrics(frame)
    cfg = ForecastConfig()
    cfg = replace(cfg, train=replace(cfg.train, epochs=1, max_windows_per_epoch=2048))
    panel, _ = regularize(frame[frame.ts <= END])
    registry = ModelRegistry(root / "models")
    version = registry.save(fit_forecaster(panel, config=cfg))
    registry.promote(version, "test")
    yield store, version
    forget_stores()
    mp.undo()


def _run(at: pd.Timestamp, **env) -> dict:
    from flows.predict import predict

    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        return predict(as_of=at.to_pydatetime(), catch_up_slots=0)


def _width(store, at: pd.Timestamp) -> pd.DataFrame:
    fc = store.read_forecasts(issued_at=at).sort_values(["series_id", "step"])
    return fc.assign(width=fc["yhat_upper"] - fc["yhat_lower"]).reset_index(drop=True)


def test_intervals_widen_after_the_noise_grows_and_the_scale_says_so(lab):
    store, version = lab
    runs = [END + i * STEP for i in range(1, CALM + NOISY + 1)]
    first = _run(runs[0])
    # nothing scored yet: the model's own intervals, scale 1.0 in every row
    assert first["calibration"]["scores_read"] == 0
    assert (_width(store, runs[0])["interval_scale"] == 1.0).all()
    out = {at: _run(at) for at in runs[1:]}
    calm = _width(store, runs[CALM - 1])
    noisy = _width(store, runs[-1])
    assert calm["interval_scale"].nunique() > 1 or calm["interval_scale"].iloc[0] != 1.0
    f_calm, f_noisy = calm["interval_scale"].median(), noisy["interval_scale"].median()
    assert f_noisy > 1.5 * f_calm, (f_calm, f_noisy)
    last = out[runs[-1]]["calibration"]
    # 6 slots hold 48 scores of steps 1-11 but 40 of step 12 (its first target came 5
    # runs ago): the read spans all FORECAST_CALIBRATION_MAX_SLOTS; the window is the same
    assert last["model_version"] == version and last["window_slots"] == 2016
    lv = last["levels"]["80"]
    assert lv["scores_by_step"] == [48] * 11 + [40]
    assert lv["factor_by_step"] == pytest.approx(
        noisy.groupby("step")["interval_scale"].first().tolist(), abs=1e-4
    )  # the report rounds to 4 decimals
    # the rows' scale is what stretched the model's interval: the same run with the
    # setting off writes the model's own, `scale` times narrower, around the same median
    frozen = noisy.copy()
    off = _run(runs[-1], FORECAST_ONLINE_CALIBRATION="false")
    assert off["calibration"] == {"enabled": False}
    own = _width(store, runs[-1])
    assert (own["interval_scale"] == 1.0).all()
    np.testing.assert_allclose(own["yhat"], frozen["yhat"])
    np.testing.assert_allclose(frozen["width"], own["width"] * frozen["interval_scale"], rtol=1e-9)
    # the written bounds are what was scored: live coverage measures them
    scored = store.read_accuracy_rows(start=runs[-3], end=runs[-2])
    back = scored.merge(
        store.read_forecasts(start=runs[-3], end=runs[-2]),
        on=["series_id", "issued_at", "step"],
        suffixes=("", "_f"),
    )
    np.testing.assert_array_equal(back["yhat_upper"], back["yhat_upper_f"])
    np.testing.assert_array_equal(back["interval_scale"], back["interval_scale_f"])


def test_a_rerun_of_an_earlier_slot_uses_no_later_actual(lab):
    """Re-running a calm slot after the noisy runs scored writes the same factors as the
    first time: the noisy scores (targets after that slot) are outside its window. With
    them in the window the factors would be the noisy ones."""
    store, _ = lab
    at = END + (CALM - 1) * STEP
    before = _width(store, at)
    again = _run(at)
    after = _width(store, at)
    np.testing.assert_allclose(after["interval_scale"], before["interval_scale"])
    np.testing.assert_allclose(after["yhat_upper"], before["yhat_upper"])
    assert again["calibration"]["scores_read"] > 0
    noisy = _width(store, END + (CALM + NOISY - 1) * STEP)  # the last was rerun "off"
    assert noisy["interval_scale"].median() > 1.5 * after["interval_scale"].median()


def _coverage_events(worker) -> list:
    worker.wait_until_empty()
    return [e for e in worker._client.events if e.event == "forecast.coverage.breach"]


def test_a_coverage_breach_emits_one_event_per_level_capped(
    lab,
    asserting_events_worker,  # noqa: F811
    reset_worker_events,  # noqa: F811
):
    """A noisy slot's run (its window's coverage far below 80 %) emits one
    forecast.coverage.breach event for the level, naming the model and the cells; with
    FORECAST_ALERT_MAX_EVENTS=0 it emits none (the warning is still logged)."""
    _, version = lab
    at = END + (CALM + NOISY - 2) * STEP
    out = _run(at)
    cal = out["calibration"]
    assert cal["breaches"] and cal["events"] == 1
    events = _coverage_events(asserting_events_worker)
    assert len(events) == 1
    ev = events[0]
    assert ev.resource.id == f"forecast.model.{version}"
    assert ev.payload["level"] == 0.8 and ev.payload["as_of"] == at.isoformat()
    cells = {c["step"]: c for c in ev.payload["cells"]}
    assert "all" in cells and cells["all"]["coverage_pct"] < 75.0
    assert cells["all"]["n"] >= 40  # FORECAST_COVERAGE_BREACH_MIN
    capped = _run(at, FORECAST_ALERT_MAX_EVENTS="0")
    assert capped["calibration"]["breaches"] and capped["calibration"]["events"] == 0
    assert len(_coverage_events(asserting_events_worker)) == 1
