"""Every endpoint of `forecast api` through FastAPI's TestClient, and every bad input with
its message."""

from __future__ import annotations

import json
import logging
import math

import pandas as pd
import pytest
from api_helpers import CURRENT, FREQ, NEWEST, NOW, band_value, make_registry, predict_body
from conftest import settings_for
from fastapi.testclient import TestClient

from api import create_app
from lstm import ModelRegistry, real_time_predict
from tasks.settings import get_settings


def test_latest_forecasts_are_the_newest_row_per_target_from_the_current_slot(client):
    r = client.get("/forecasts/latest")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 36 and body["truncated"] is False  # 3 series x 12 targets
    rows = [x for x in body["forecasts"] if x["series_id"] == "svc-1"]
    assert [x["target_ts"] for x in rows][:2] == [
        "2026-12-02T12:05:00Z",
        "2026-12-02T12:10:00Z",
    ]
    for x in rows:  # every target from the newest origin (12:00)
        step = int((pd.Timestamp(x["target_ts"]) - NEWEST) / FREQ)
        assert x["issued_at"] == "2026-12-02T12:00:00Z" and x["step"] == step
        assert x["yhat"] == band_value(1, step, NEWEST)
        assert x["yhat_lower"] == band_value(1, step, NEWEST) - 10.5
        assert x["model_version"] == "v1" and x["level"] == 0.8


def test_latest_forecasts_filter_limit_and_start(client):
    r = client.get("/forecasts/latest", params={"series_id": ["svc-0", "svc-2"], "limit": 5})
    body = r.json()
    assert r.status_code == 200 and body["count"] == 5 and body["truncated"] is True
    assert {x["series_id"] for x in body["forecasts"]} == {"svc-0"}
    r = client.get("/forecasts/latest", params={"series_id": "svc-2", "start": "2026-12-02T11:30Z"})
    rows = r.json()["forecasts"]
    assert rows[0]["target_ts"] == "2026-12-02T11:30:00Z"
    assert rows[0]["issued_at"] == "2026-12-02T11:25:00Z"  # newest origin for 11:30


def test_series_forecast_endpoint(client):
    r = client.get("/series/svc-0/forecast")
    body = r.json()
    assert r.status_code == 200 and body["count"] == 12
    assert [x["step"] for x in body["forecasts"]] == list(range(1, 13))
    assert body["forecasts"][-1]["yhat"] == band_value(0, 12, NEWEST)


@pytest.mark.parametrize(
    "path, params",
    [
        ("/series/svc-404/forecast", {}),
        ("/forecasts/latest", {"series_id": ["svc-0", "svc-404"]}),
    ],
)
def test_unknown_series_is_a_404_naming_it(client, path, params):
    r = client.get(path, params=params)
    assert r.status_code == 404
    assert r.json()["detail"].startswith("unknown series 'svc-404': no forecasts for it")


@pytest.mark.parametrize(
    "params, field, message",
    [
        ({"limit": 0}, "limit", "Input should be greater than or equal to 1"),
        ({"limit": "many"}, "limit", "Input should be a valid integer"),
        ({"start": "yesterday"}, "start", "Input should be a valid datetime"),
        (
            {"end": "2026-12-02T12:00Z"},
            "end",
            "end 2026-12-02T12:00:00+00:00 is before start 2026-12-02T12:05:00+00:00",
        ),
    ],
)
def test_bad_query_parameters_are_422_naming_them(client, params, field, message):
    r = client.get("/forecasts/latest", params=params)
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["field"] == field and err["msg"].startswith(message)
    assert r.json()["message"].startswith(f"{field}: {message}")


def test_healthz_ok(client, demo):
    r = client.get("/healthz")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["reasons"] == [] and h["store_reachable"] is True
    assert h["champion_version"] == demo["versions"][0]
    assert h["newest_issued_at"] == "2026-12-02T12:00:00Z"
    assert h["newest_forecast_age_s"] == (NOW - NEWEST).total_seconds() == 450.0


def test_healthz_is_503_when_the_newest_forecast_is_too_old(demo):
    later = NOW + pd.Timedelta(minutes=30)
    app = create_app(settings_for(demo, api_max_forecast_age_s=1200), now=lambda: later)
    r = TestClient(app).get("/healthz")
    assert r.status_code == 503
    h = r.json()
    assert h["status"] == "unhealthy" and h["newest_forecast_age_s"] == 2250.0
    assert "newest forecast is 2250 s old" in h["reasons"][0]
    assert "FORECAST_API_MAX_FORECAST_AGE_S=1200" in h["reasons"][0]


def test_store_unreachable_is_503_and_the_password_never_shows(tmp_path, caplog):
    url = "postgresql+psycopg://forecast:s3cretPW@127.0.0.1:9/metrics?connect_timeout=2"
    app = create_app(settings_for({"url": url, "models": tmp_path}, api_cache_s=0), now=lambda: NOW)
    client = TestClient(app)
    caplog.set_level(logging.INFO)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["store_reachable"] is False
    assert health.json()["reasons"][0].startswith("store unreachable")
    latest = client.get("/forecasts/latest")
    assert latest.status_code == 503 and latest.json()["detail"].startswith("store unavailable")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "lstm_forecast_store_up 0.0" in metrics.text
    for text in (health.text, latest.text, metrics.text, caplog.text):
        assert "s3cretPW" not in text
    assert "as user 'forecast'" in latest.text  # the message names the target


# ------------------------------------------------------------------------ /predict
def test_predict_runs_the_champion(client, demo):
    body = predict_body()
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == demo["versions"][0]
    assert out["issued_at"] == "2026-12-02T12:00:00Z" and out["level"] == 0.8
    assert len(out["steps"]) == 12 and out["steps"][0]["target_ts"] == "2026-12-02T12:05:00Z"
    direct = real_time_predict(
        ModelRegistry(demo["models"]).load(demo["versions"][0]),
        data_dict={
            "value": body["requests_target"],
            "ts": pd.Timestamp(body["ts"]),
            "error_rate": body["error_rate"],
        },
        return_confidence=True,
    )
    assert out["prediction"] == direct["prediction"] == out["steps"][0]["yhat"]
    assert [s["yhat"] for s in out["steps"]] == direct["forecast"]
    assert out["interval"]["lower"] == direct["intervals"]["80"]["lower"][0]
    assert out["interval"]["upper"] == direct["intervals"]["80"]["upper"][0]
    assert out["interval"]["lower"] <= out["prediction"] <= out["interval"]["upper"]
    assert out["confidence_level"] == 0.95


def test_predict_accepts_value_for_the_target_and_longer_history(client):
    body = predict_body(300)
    body["value"] = body.pop("requests_target")
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text


def _bad(mutate) -> dict:
    body = predict_body()
    mutate(body)
    return body


BAD_INPUTS = [
    (
        lambda b: b.update(error_rate=[0.01] * 11),
        "error_rate",
        "expected 12 values (one per 0 days 00:05:00 slot, oldest first, ending at ts), got 11",
    ),
    (
        lambda b: b.update(requests_target=b["requests_target"][:11]),
        "requests_target",
        "expected 12 values",
    ),
    (lambda b: b.pop("requests_target"), "requests_target", "Field required"),
    (lambda b: b.pop("ts"), "ts", "Field required"),
    (
        lambda b: b.pop("error_rate"),
        "error_rate",
        "Field required: model {v} was trained with it",
    ),
    (lambda b: b.update(ts="soon"), "ts", "Input should be a valid datetime"),
    (lambda b: b.update(requests_target="many"), "requests_target", "Input should be a valid list"),
    (
        lambda b: b["requests_target"].__setitem__(3, "12"),
        "requests_target[3]",
        "Input should be a valid number",
    ),
    (
        lambda b: b["error_rate"].__setitem__(0, True),
        "error_rate[0]",
        "Input should be a valid number",
    ),
    (
        lambda b: b["requests_target"].__setitem__(2, -5.0),
        "requests_target",
        "must be >= 0 (a count of requests); got [-5.0]",
    ),
    (lambda b: b.update(is_weekend=[2] * 12), "is_weekend", "must hold 0 or 1; got [2.0]"),
    (
        lambda b: b.update(cpu=[1.0] * 12),
        "cpu",
        "unknown field: model {v} uses ['requests_target', 'error_rate']",
    ),
    (
        lambda b: b.update(cpu=[1.0, "x"]),
        "body",
        "field 'cpu' at position 1: Input should be a valid number",
    ),
]


@pytest.mark.parametrize("mutate, field, message", BAD_INPUTS)
def test_bad_predict_input_is_a_422_naming_the_field(client, demo, mutate, field, message):
    r = client.post("/predict", json=_bad(mutate))
    assert r.status_code == 422, r.text
    message = message.format(v=demo["versions"][0])
    errors = r.json()["detail"]
    assert any(e["field"] == field and e["msg"].startswith(message) for e in errors), errors
    assert f"{field}: {message}" in r.json()["message"]


@pytest.mark.parametrize("token", ["NaN", "Infinity"])
def test_nan_and_infinity_are_refused(client, token):
    body = json.dumps(predict_body()).replace('"error_rate": [0.01,', f'"error_rate": [{token},')
    assert token in body
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["field"] == "error_rate[0]" and err["msg"] == "Input should be a finite number"


def test_malformed_json_is_a_422(client):
    r = client.post("/predict", content="{", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON decode error" in r.json()["message"]


def test_predict_follows_the_champion_pointer(demo, tmp_path):
    reg = ModelRegistry(demo["models"])
    first, second = demo["versions"]
    app = create_app(settings_for(demo, api_champion_check_s=0), now=lambda: NOW)
    client = TestClient(app)
    assert client.post("/predict", json=predict_body()).json()["model_version"] == first
    assert client.post("/predict", json=predict_body()).json()["model_version"] == first
    assert app.state.api.champion.loads == 1  # loaded once, not per request
    try:
        reg.promote(second, "test: the pointer moves")
        out = client.post("/predict", json=predict_body()).json()
        assert out["model_version"] == second and app.state.api.champion.loads == 2
        health = client.get("/healthz").json()
        assert health["champion_version"] == health["serving_version"] == second
    finally:
        reg.promote(first, "test: back")


def test_predict_without_a_champion_is_a_503(tmp_path, demo):
    app = create_app(settings_for({"url": demo["url"], "models": tmp_path / "empty"}))
    r = TestClient(app).post("/predict", json=predict_body())
    assert r.status_code == 503
    assert r.json()["detail"].startswith("no model to predict with: no champion model in")


def test_docs_and_openapi(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/forecasts/latest", "/series/{series_id}/forecast", "/predict"} <= set(paths)
    assert {"/healthz", "/metrics"} <= set(paths)


def test_no_endpoint_writes_to_the_store(client, demo):
    before = demo["store"].describe()["rows"]
    for path in ("/forecasts/latest", "/series/svc-0/forecast", "/healthz", "/metrics"):
        client.get(path)
    client.post("/predict", json=predict_body())
    assert demo["store"].describe()["rows"] == before
    assert not math.isnan(sum(before.values()))
    assert CURRENT == NEWEST + FREQ


def test_a_champion_that_fails_verification_leaves_the_old_one_serving(demo, tmp_path):
    reg, (first, second) = make_registry(tmp_path / "models", n=2)
    app = create_app(
        settings_for({"url": demo["url"], "models": tmp_path / "models"}, api_champion_check_s=0),
        now=lambda: NOW,
    )
    client = TestClient(app)
    assert client.post("/predict", json=predict_body()).json()["model_version"] == first
    reg.promote(second, "test")
    weights = reg.path(second) / "model_weights.pt"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    r = client.post("/predict", json=predict_body())
    assert r.status_code == 200 and r.json()["model_version"] == first
    health = client.get("/healthz").json()
    assert health["champion_version"] == second and health["serving_version"] == first
    assert health["champion_error"].startswith(f"champion {second} cannot be loaded")


def test_a_read_endpoint_is_a_few_lines(demo):
    """How GET /alerts gets added: a router reading through api_state and rows_response."""
    from fastapi import APIRouter, Depends
    from fastapi.responses import Response

    from api import ApiState, api_state, rows_response

    router = APIRouter()

    @router.get("/issued")
    def issued(state: ApiState = Depends(api_state)) -> Response:  # noqa: B008
        slots = state.read(lambda s: s.issued_slots())
        return rows_response(pd.DataFrame({"issued_at": slots}), "slots")

    app = create_app(settings_for(demo))
    app.include_router(router)
    body = TestClient(app).get("/issued").json()
    assert body["count"] == 12 and body["slots"][-1] == {"issued_at": "2026-12-02T12:00:00Z"}


def test_alerts_endpoint_lists_open_and_resolved_alerts(tmp_path):
    """GET /alerts reads Store.read_alerts: one series 2 widths out for 8 slots opens an
    alert at the 6th breach and resolves it 3 slots after it is back."""
    from storage import open_store

    t0 = pd.Timestamp("2026-12-02 00:00", tz="UTC")

    def at(i: int) -> pd.Timestamp:
        return t0 + FREQ * i

    store = open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.write_forecasts(
        pd.DataFrame(
            [
                {
                    "series_id": sid,
                    "issued_at": at(i),
                    "target_ts": at(i + 1),
                    "step": 1,
                    "yhat": 100.0,
                    "yhat_lower": 90.0,
                    "yhat_upper": 110.0,
                    "level": 0.8,
                    "model_version": "v1",
                }
                for i in range(30)
                for sid in ("a", "b")
            ]
        )
    )
    y = [150.0 if 10 <= i < 18 else 100.0 for i in range(31)]
    store.write_metrics(
        pd.DataFrame(
            {
                "series_id": ["a"] * 31 + ["b"] * 31,
                "ts": [at(i) for i in range(31)] * 2,
                "value": y + [100.0] * 31,
            }
        )
    )
    settings = get_settings(
        store_url=f"sqlite:///{tmp_path / 'alerts.db'}", models_dir=str(tmp_path / "models")
    )
    client = TestClient(create_app(settings))
    for i in range(1, 17):
        store.score_forecasts(at(i), lookback_slots=1)
        store.update_alerts(at(i), k=6, m=3, level=0.8, step=1)
    body = client.get("/alerts").json()
    assert body["count"] == 1 and body["open_only"] is True
    (a,) = body["alerts"]
    assert a["series_id"] == "a" and a["direction"] == "above" and a["status"] == "open"
    assert a["started_at"] == "2026-12-02T00:50:00Z" and a["resolved_at"] is None
    assert client.get("/alerts", params={"series_id": "b"}).json()["count"] == 0
    for i in range(17, 25):
        store.score_forecasts(at(i), lookback_slots=1)
        store.update_alerts(at(i), k=6, m=3, level=0.8, step=1)
    assert client.get("/alerts").json()["count"] == 0
    (done,) = client.get("/alerts", params={"open": "false"}).json()["alerts"]
    assert done["status"] == "resolved" and done["slots_breached"] == 8
    assert done["resolved_at"] == "2026-12-02T01:40:00Z"
    assert client.get("/alerts", params={"since": "nonsense"}).status_code == 422
    store.close()
