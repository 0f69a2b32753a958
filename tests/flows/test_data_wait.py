"""Late metrics and honest run states (issue 13): a scheduled predict run waits, bounded,
for its slot's metrics; a run that forecasts too little ends Failed; runs are named for
what they do."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pandas as pd
import pytest

STEP = pd.Timedelta("5min")
N_SERIES = 6


def _slot_now() -> pd.Timestamp:
    """The slot a run started now forecasts from, leaving >= 40 s before it changes."""
    from lstm.slots import last_complete_slot

    now = pd.Timestamp.now(tz="UTC")
    to_next = (now.floor(STEP) + STEP - now).total_seconds()
    if to_next < 40:
        time.sleep(to_next + 1)
    return last_complete_slot(pd.Timestamp.now(tz="UTC"), "5min")


@pytest.fixture
def live(harness, tmp_path, monkeypatch):
    """A store whose metrics end one slot before the slot a run started now forecasts
    (that slot's rows are returned, to be written 'late'), and a registered champion."""
    from lstm import ForecastConfig, ModelRegistry, fit_forecaster, generate_metrics, regularize
    from tasks.common import forget_stores, get_store
    from tasks.settings import get_settings

    as_of = _slot_now()
    days = 9
    slots = int(pd.Timedelta(days=days) / STEP)
    frame = generate_metrics(N_SERIES, days, seed=3, start=as_of - STEP * (slots - 1))
    url = f"sqlite:///{tmp_path / 'live.db'}"
    monkeypatch.setenv("FORECAST_STORE_URL", url)
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(tmp_path / "models"))
    store = get_store(get_settings())
    store.write_metrics(frame[frame.ts < as_of])
    cfg = ForecastConfig()
    cfg = replace(cfg, train=replace(cfg.train, epochs=1, max_windows_per_epoch=2048))
    panel, _ = regularize(frame[frame.ts < as_of])
    registry = ModelRegistry(tmp_path / "models")
    registry.promote(registry.save(fit_forecaster(panel, config=cfg)), "test")
    yield as_of, frame[frame.ts == as_of], store
    forget_stores()


def _flow_run_name(state) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).name


def test_slot_arrival_counts_series_at_the_slot_and_the_slot_before():
    from tasks.predict_tasks import slot_arrival

    as_of = pd.Timestamp("2026-12-02 12:40", tz="UTC")
    recent = pd.DataFrame(
        {
            "series_id": ["a", "a", "b", "c", "c"],
            "ts": [as_of - STEP, as_of, as_of - STEP, as_of - STEP, as_of],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    assert slot_arrival(recent, as_of, "5min") == (2, 3)
    assert slot_arrival(recent.iloc[:0], as_of, "5min") == (0, 0)


def test_a_scheduled_run_waits_for_late_metrics_then_forecasts_every_series(live, monkeypatch):
    from flows.predict import predict

    as_of, late, store = live
    monkeypatch.setenv("FORECAST_DATA_WAIT_SECONDS", "30")
    monkeypatch.setenv("FORECAST_DATA_POLL_SECONDS", "0.5")
    writer = threading.Timer(2.0, store.write_metrics, args=(late,))
    writer.start()
    try:
        state = predict(return_state=True)
    finally:
        writer.join()
    out = state.result()
    assert out["as_of"] == str(as_of)
    assert out["arrival"]["arrived"] == N_SERIES and out["arrival"]["expected"] == N_SERIES
    # at least one poll found the slot missing (the run waited), and it did not wait it out
    assert 0.5 <= out["arrival"]["waited_s"] < 30
    assert out["series_forecast"] == N_SERIES, out["skipped"]
    assert _flow_run_name(state) == f"predict-{as_of:%Y-%m-%dT%H:%M}Z"


def test_a_run_that_forecasts_nothing_ends_failed_with_the_reason(live, monkeypatch):
    from flows.predict import predict

    as_of, _, store = live
    monkeypatch.setenv("FORECAST_DATA_WAIT_SECONDS", "1")
    monkeypatch.setenv("FORECAST_DATA_POLL_SECONDS", "0.2")
    # the 12 catch-up slots have their data and are forecast; the run's own slot has none
    state = predict(return_state=True)
    assert state.is_failed()
    msg = str(state.message)
    assert f"forecast 0 of {N_SERIES} series from {as_of}" in msg, msg
    assert "FORECAST_MIN_FORECAST_SHARE=0.5" in msg and "no value at as_of" in msg, msg
    # what was forecast is kept, whole: the catch-up slots, every series, none from as_of
    rows = store.read_forecasts()
    assert rows["series_id"].nunique() == N_SERIES
    assert (pd.DatetimeIndex(rows["issued_at"]) < as_of).all() and len(rows) == 12 * N_SERIES * 12


def test_a_run_given_as_of_by_hand_does_not_wait(live, monkeypatch):
    from flows.predict import predict

    as_of, _, store = live
    monkeypatch.setenv("FORECAST_DATA_WAIT_SECONDS", "60")
    prev = as_of - STEP  # every series has this slot
    t0 = time.monotonic()
    out = predict(as_of=prev.to_pydatetime(), catch_up_slots=0)
    assert time.monotonic() - t0 < 60
    assert out["arrival"] is None and out["series_forecast"] == N_SERIES


def test_settings_refuse_an_out_of_range_wait(monkeypatch):
    from tasks.settings import SettingsError, get_settings

    monkeypatch.setenv("FORECAST_DATA_WAIT_SHARE", "1.5")
    with pytest.raises(SettingsError, match="FORECAST_DATA_WAIT_SHARE"):
        get_settings()
