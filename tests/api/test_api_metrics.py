"""`GET /metrics`: the Prometheus text, parsed back, against the store's values."""

from __future__ import annotations

import pandas as pd
import pytest
from api_helpers import CURRENT, FREQ, NOW, band_value, predict_body
from conftest import settings_for
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api import create_app


def scrape(demo, **overrides) -> dict[str, list]:
    app = create_app(settings_for(demo, api_cache_s=0, **overrides), now=lambda: NOW)
    r = TestClient(app).get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(r.text):
        out.setdefault(fam.name, []).extend(fam.samples)
    return out


def one(families, name) -> float:
    (sample,) = families[name]
    return sample.value


def band(families, name) -> dict[tuple[str, int], float]:
    return {(s.labels["series_id"], int(s.labels["step"])): s.value for s in families[name]}


def test_forecast_band_is_the_forecast_for_now_made_step_slots_ago(demo):
    m = scrape(demo)
    yhat, lower, upper = (
        band(m, f"lstm_forecast_{n}") for n in ("yhat", "yhat_lower", "yhat_upper")
    )
    assert len(yhat) == 3 * 12
    for (sid, step), value in yhat.items():
        issued = CURRENT - step * FREQ  # made `step` slots before the current slot
        expected = band_value(int(sid.split("-")[1]), step, issued)
        assert value == expected
        assert lower[(sid, step)] == expected - 10.5 and upper[(sid, step)] == expected + 20.25
    # no sample carries a timestamp: Prometheus stamps the scrape time (never the future)
    assert all(s.timestamp is None for fam in m.values() for s in fam)


def test_job_metrics_from_the_store(demo):
    m = scrape(demo)
    assert one(m, "lstm_forecast_store_up") == 1
    assert (
        one(m, "lstm_forecast_newest_issued_at_timestamp_seconds")
        == pd.Timestamp("2026-12-02T12:00Z").timestamp()
    )
    assert one(m, "lstm_forecast_newest_forecast_age_seconds") == 450.0
    assert one(m, "lstm_forecast_last_run_series_forecast") == 3
    assert one(m, "lstm_forecast_last_run_series_skipped") == 1  # svc-3: metrics, no forecast
    assert "lstm_forecast_last_run_delay_seconds" in m  # written when the test wrote them
    assert one(m, "lstm_forecast_band_series") == 3
    assert m.get("lstm_forecast_serving_model_info", []) == []  # no /predict served yet


def test_rolling_accuracy_per_model_version_and_level(demo):
    m = scrape(demo)
    expected = demo["store"].read_accuracy(
        start=NOW - pd.Timedelta(hours=1), end=NOW, by=("model_version", "level")
    )
    assert len(expected) == 1 and expected["n"].iloc[0] > 0
    row = expected.iloc[0]
    labels = {"model_version": "v1", "level": "0.8"}
    for name, value in [
        ("lstm_forecast_mae", row["mae"]),
        ("lstm_forecast_interval_coverage_ratio", row["coverage_pct"] / 100),
        ("lstm_forecast_wape_ratio", row["wape_pct"] / 100),
        ("lstm_forecast_scored_forecasts", row["n"]),
    ]:
        (sample,) = m[name]
        assert sample.labels == labels and sample.value == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    "overrides, series, steps",
    [
        ({"api_metrics_top_n": 2}, {"svc-1", "svc-2"}, set(range(1, 13))),  # the busiest two
        ({"api_metrics_series": ("svc-0", "svc-9")}, {"svc-0"}, set(range(1, 13))),
        ({"api_metrics_steps": (1, 12)}, {"svc-0", "svc-1", "svc-2"}, {1, 12}),
    ],
)
def test_cardinality_is_bounded_by_the_settings(demo, overrides, series, steps):
    m = scrape(demo, **overrides)
    got = band(m, "lstm_forecast_yhat")
    assert {k[0] for k in got} == series and {k[1] for k in got} == steps
    assert one(m, "lstm_forecast_band_series_exported") == len(series)


def test_predict_outcomes_are_counted(demo, client):
    client.post("/predict", json=predict_body())
    client.post("/predict", json={"ts": "2026-12-02T12:00Z"})
    text = client.get("/metrics").text
    assert 'lstm_forecast_api_predictions_total{outcome="ok"} 1.0' in text
    assert 'lstm_forecast_api_predictions_total{outcome="invalid"} 1.0' in text
    assert f'lstm_forecast_serving_model_info{{model_version="{demo["versions"][0]}"}} 1.0' in text
