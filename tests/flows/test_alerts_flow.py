"""Breach alerts end to end (issue 16): real predict flow runs under the Prefect harness on a
SQLite store, the events captured the Prefect 3 way (``AssertingEventsClient`` through
``prefect.testing.fixtures.asserting_events_worker``)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from flow_helpers import END, make_metrics
from prefect.testing.fixtures import asserting_events_worker, reset_worker_events  # noqa: F401
from typer.testing import CliRunner

STEP = pd.Timedelta("5min")
SPIKE = END - 40 * STEP  # the first slot whose actual leaves the band
SPIKE_SLOTS = 8  # k = 6 (the default at 80 %) opens the alert; two more slots grow it


@pytest.fixture(scope="module")
def alert_job(harness, tmp_path_factory):
    """A SQLite store with metrics and a trained champion, the default alert rule (k = 6
    step-12 slots more than 1 width out, m = 3); one series' actuals jump to 4x for
    SPIKE_SLOTS slots (40 minutes)."""
    from flows.retrain import retrain
    from lstm import ModelRegistry
    from tasks.common import forget_stores, get_store
    from tasks.settings import get_settings

    root = tmp_path_factory.mktemp("alerts")
    mp = pytest.MonkeyPatch()
    for k, v in {
        "FORECAST_TRAIN_MAX_SECONDS": "20",
        "FORECAST_HIDDEN_SIZE": "32",
        "FORECAST_NUM_LAYERS": "1",
        "FORECAST_STORE_URL": f"sqlite:///{root / 'forecast.db'}",
        "FORECAST_MODELS_DIR": str(root / "models"),
    }.items():
        mp.setenv(k, v)
    frame = make_metrics()
    spiked = "svc-0"  # about 950 requests a slot: its counting noise is small next to 4x
    assert frame.loc[frame["series_id"] == spiked, "value"].mean() > 500
    store = get_store(get_settings())
    store.write_metrics(frame)
    result = retrain(history_end=END)
    if not result["promoted"]:  # a busy machine's short fit may lose to a baseline: the
        registry = ModelRegistry(root / "models")  # alerts need a champion, not a winner
        registry.promote(result["version"], "alerts test")
    at = (frame["series_id"] == spiked) & frame["ts"].between(
        SPIKE, SPIKE + (SPIKE_SLOTS - 1) * STEP
    )
    store.write_metrics(frame[at].assign(value=frame.loc[at, "value"] * 4.0))
    yield spiked, store
    forget_stores()
    mp.undo()


def _run(i: int, catch_up: int = 0) -> dict:
    """The predict run of slot SPIKE + i."""
    from flows.predict import predict

    return predict(as_of=(SPIKE + i * STEP).to_pydatetime(), catch_up_slots=catch_up)


def _breach_events(worker) -> list:
    worker.wait_until_empty()
    return [e for e in worker._client.events if e.event.startswith("forecast.breach.")]


def test_a_jump_out_of_the_band_opens_one_alert_once_and_resolves_once(
    alert_job,
    asserting_events_worker,  # noqa: F811
    reset_worker_events,  # noqa: F811
):
    spiked, store = alert_job
    # the first run also issues the 12 slots before (catch-up): the step-12 forecasts of
    # the jump's slots were made before it
    runs = {-1: _run(-1, catch_up=12)}
    for i in range(SPIKE_SLOTS + 8):
        runs[i] = _run(i)
    opened = {i: r["alerts"]["opened"] for i, r in runs.items() if r["alerts"]["n_opened"]}
    resolved = {i: r["alerts"]["resolved"] for i, r in runs.items() if r["alerts"]["n_resolved"]}
    # the 6th slot out of the band (SPIKE + 5) opens it; nothing else opens anything
    assert list(opened) == [5], opened
    assert [a["series_id"] for a in opened[5]] == [spiked]
    assert opened[5][0]["direction"] == "above" and opened[5][0]["slots_breached"] == 6
    assert [runs[i]["alerts"]["n_open"] for i in range(5, SPIKE_SLOTS)] == [1] * 3
    # back inside from SPIKE + 8: resolved once, after 3 slots back (a later one, should an
    # actual just after the jump fall outside its band by chance)
    assert len(resolved) == 1 and SPIKE_SLOTS + 2 <= next(iter(resolved)) <= SPIKE_SLOTS + 7
    (alert,) = store.read_alerts().to_dict(orient="records")
    assert alert["series_id"] == spiked and alert["status"] == "resolved"
    # every slot of the jump breached (and maybe, by chance, a slot just after it)
    assert alert["started_at"] == SPIKE and alert["last_breach_at"] >= SPIKE + 7 * STEP
    assert alert["slots_breached"] >= SPIKE_SLOTS and alert["max_excess"] > 1.0
    # the forecasts issued during the jump miss the return to normal (too high): that
    # echo opens no "below" alert (they count for nothing until 12 slots after resolution)

    events = _breach_events(asserting_events_worker)
    assert [e.event for e in events] == ["forecast.breach.started", "forecast.breach.resolved"]
    started, done = events
    assert started.resource.id == f"forecast.series.{spiked}"
    assert started.payload["direction"] == "above" and started.payload["slots"] == 6
    assert started.payload["excess"] > 1.0 and started.payload["level"] == pytest.approx(0.8)
    assert done.payload["slots"] == alert["slots_breached"] and done.payload["resolved_at"]
    assert any(r.id.startswith("forecast.model.") for r in started.related)

    # re-running the opening and the resolving runs opens, resolves and emits nothing more
    for i in (5, next(iter(resolved))):
        again = _run(i)["alerts"]
        assert again["n_opened"] == again["n_resolved"] == again["events"] == 0, again
    assert _breach_events(asserting_events_worker) == events
    assert len(store.read_alerts()) == 1

    # the CLI lists it; --open finds none
    from forecast_cli.main import app

    out = CliRunner().invoke(app, ["alerts", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["series_id"] == spiked and row["status"] == "resolved", row
    assert row["resolved_at"] is not None and row["started_at"] == SPIKE.isoformat()
    out = CliRunner().invoke(app, ["alerts", "--open"])
    assert out.exit_code == 0 and "no open breach alerts" in out.output, out.output
    table = CliRunner().invoke(app, ["alerts"])
    assert spiked in table.output and "resolved" in table.output, table.output


def test_the_predict_artifact_names_the_alert(alert_job):
    """The opening run's summary artifact (the test above ran first, in this module)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    spiked, _ = alert_job
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["predict-summary"]))
        )
    tables = [json.loads(a.data) if isinstance(a.data, str) else a.data for a in arts]
    items = [row["item"] for t in tables for row in t]
    assert f"alert opened: {spiked}" in items and f"alert resolved: {spiked}" in items
    assert f"alert open: {spiked}" in items
    assert "breach alerts: opened / resolved / open" in items


def test_the_sharded_parent_updates_the_alerts_once(
    alert_job,
    tmp_path,
    monkeypatch,
    asserting_events_worker,  # noqa: F811
    reset_worker_events,  # noqa: F811
):
    """The predict-sharded parent scores and updates the alerts once after its shards (the
    shard runs do neither): the same alert opens at the same slot as with unsharded runs,
    one event is emitted for it, and a re-run of the parent opens nothing more. The shard
    runs are the real predict flow, run here in-process instead of on a work pool (the
    fan-out itself is tested with two workers in tests/deployments/test_fleet.py)."""
    import flows.predict_sharded as sharded
    from flows.predict import predict
    from storage import Shard
    from tasks.common import get_store
    from tasks.settings import get_settings
    from tasks.shard_tasks import ShardResult, shard_parameters

    spiked, store = alert_job
    url = f"sqlite:///{tmp_path / 'sharded.db'}"  # a fresh store: the same metrics, no alerts
    get_store(get_settings(store_url=url)).write_metrics(store.read_metrics())
    shard_runs: list[dict] = []

    def run_here(deployment, params, shards, timeout_s, retry=True):
        results = []
        for shard in (Shard(i, shards) for i in range(shards)):
            shard_runs.append(predict(**shard_parameters(params, shard)))
            results.append(ShardResult(shard, [f"here-{shard}"], state="COMPLETED"))
        return results

    monkeypatch.setattr(sharded, "run_shards", run_here)

    def parent(i: int, catch_up: int = 0) -> dict:
        as_of = (SPIKE + i * STEP).to_pydatetime()
        return sharded.predict_sharded(
            shards=2, as_of=as_of, store_url=url, catch_up_slots=catch_up
        )

    runs = {-1: parent(-1, catch_up=12)}
    for i in range(6):
        runs[i] = parent(i)
    assert all(r["alerts"] is None for r in shard_runs)  # the shards judged nothing
    assert len(shard_runs) == 2 * len(runs)
    opened = {i: r["alerts"]["opened"] for i, r in runs.items() if r["alerts"]["n_opened"]}
    assert list(opened) == [5], opened  # the 6th slot out of the band, as unsharded
    assert [a["series_id"] for a in opened[5]] == [spiked]
    assert runs[5]["alerts"]["events"] == 1 and runs[5]["scored"] > 0
    events = _breach_events(asserting_events_worker)
    assert [(e.event, e.resource.id) for e in events] == [
        ("forecast.breach.started", f"forecast.series.{spiked}")
    ]
    again = parent(5)["alerts"]
    assert again["n_opened"] == again["events"] == 0 and again["n_open"] == 1, again
    assert _breach_events(asserting_events_worker) == events
    (alert,) = get_store(get_settings(store_url=url)).read_alerts().to_dict(orient="records")
    assert alert["series_id"] == spiked and alert["status"] == "open"
