"""The Prefect flows end to end against SQLite, Parquet and (when CI=true) PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from flow_helpers import END, N_SERIES
from typer.testing import CliRunner

from flows.backfill import backfill
from flows.predict import predict
from flows.retrain import retrain
from forecast_cli.main import app
from lstm import ModelRegistry

STEP = pd.Timedelta("5min")
VALUE_COLS = [
    "series_id",
    "issued_at",
    "target_ts",
    "step",
    "yhat",
    "yhat_lower",
    "yhat_upper",
    "level",
    "model_version",
    "interval_scale",
]


def rows_at(job, issued_at) -> pd.DataFrame:
    df = job.store().read_forecasts(issued_at=issued_at)
    return df[VALUE_COLS].sort_values(["series_id", "step"]).reset_index(drop=True)


def test_retrain_promotes_a_first_model_that_beats_the_baselines(job):
    r = job.retrain
    assert r["promoted"] is True, r
    table = r["comparison"]
    assert table["challenger"]["MASE"] < min(
        table["naive"]["MASE"], table["seasonal_naive"]["MASE"]
    )
    registry = ModelRegistry(job.models_dir)
    assert registry.champion() == r["version"]
    md = registry.metadata(r["version"])
    assert md["decision"]["promote"] is True and md["data_report"]["n_series"] == N_SERIES
    assert (job.models_dir / "reports" / f"{r['version']}.png").exists()
    # the run is named for what it made (renamed once the version was registered)
    from prefect import get_client

    with get_client(sync_client=True) as client:
        names = {fr.name for fr in client.read_flow_runs()}
    assert f"retrain-{r['version']}" in names, sorted(names)[:10]


def test_predict_writes_every_series_with_the_champion_version(job):
    as_of = END - 6 * STEP
    out = predict(
        as_of=as_of.to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
        catch_up_slots=0,
    )
    assert out["series_forecast"] == N_SERIES and out["n_skipped"] == 0
    rows = rows_at(job, as_of)
    assert len(rows) == N_SERIES * 12
    champion = ModelRegistry(job.models_dir).champion()
    assert set(rows["model_version"]) == {champion}
    assert (rows["yhat_lower"] <= rows["yhat"]).all() and (rows["yhat"] <= rows["yhat_upper"]).all()


def test_the_next_run_scores_forecasts_whose_actuals_arrived(job):
    first, second = END - 50 * STEP, END - 49 * STEP
    kwargs = dict(store_url=job.url, models_dir=str(job.models_dir), catch_up_slots=0)
    predict(as_of=first.to_pydatetime(), **kwargs)
    issued = rows_at(job, first)
    out = predict(as_of=second.to_pydatetime(), **kwargs)  # `second` is first's step-1 target
    scored = job.store().read_accuracy_rows(start=second, end=second)
    mine = scored[scored["issued_at"] == first].sort_values("series_id")
    assert out["scored"] >= N_SERIES and len(mine) == N_SERIES, out["scored"]
    actual = job.frame[job.frame.ts == second].set_index("series_id")["value"]
    yhat = issued[issued.step == 1].set_index("series_id")["yhat"]
    expected = (actual - yhat).abs().sort_index()
    assert (mine["step"] == 1).all()
    np.testing.assert_allclose(mine["abs_error"].to_numpy(), expected.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(mine["y"].to_numpy(), actual.sort_index().to_numpy())
    # the run reports the accuracy of what it scored: one group per model and level
    live = {(g["model_version"], g["level"]): g for g in out["live_accuracy"]}
    ref = job.store().read_accuracy(start=second, end=second, by=("model_version", "level"))
    assert len(live) == len(ref) >= 1
    for r in ref.itertuples():
        g = live[(r.model_version, r.level)]
        assert g["n"] == r.n and g["mae"] == pytest.approx(r.mae)
        assert g["coverage_pct"] == pytest.approx(r.coverage_pct)


def test_predict_rerun_for_the_same_slot_changes_no_row_count(job):
    as_of = END - 3 * STEP
    kwargs = dict(as_of=as_of.to_pydatetime(), store_url=job.url, models_dir=str(job.models_dir))
    predict(**kwargs)
    total = len(job.store().read_forecasts())
    first = rows_at(job, as_of)
    for _ in range(2):
        predict(**kwargs)
        assert len(job.store().read_forecasts()) == total
    pd.testing.assert_frame_equal(rows_at(job, as_of), first)


def test_catch_up_fills_missed_slots_in_one_run(job):
    as_of = END - 40 * STEP
    predict(
        as_of=(as_of - 5 * STEP).to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
        catch_up_slots=0,
    )
    out = predict(
        as_of=as_of.to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
        catch_up_slots=5,
    )
    # slots as_of-4 .. as_of-1 were missing (as_of-5 existed): 4 + the slot itself
    assert len(out["slots"]) == 5
    issued = job.store().issued_slots(as_of - 5 * STEP, as_of)
    assert issued == [as_of - k * STEP for k in range(5, -1, -1)]


def test_backfill_equals_predict_slot_by_slot(job):
    # live recalibration is on (the default): backfill applies it as predict does
    start, end = END - 30 * STEP, END - 25 * STEP
    out = backfill(
        start=start.to_pydatetime(),
        end=end.to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
        batch_slots=4,
    )
    assert out["slots"] == 6 and out["batches"] == 2 and out["written"] == 6 * N_SERIES * 12
    for slot in (start, end - STEP):
        from_backfill = rows_at(job, slot)
        predict(
            as_of=slot.to_pydatetime(),
            store_url=job.url,
            models_dir=str(job.models_dir),
            catch_up_slots=0,
        )
        pd.testing.assert_frame_equal(rows_at(job, slot), from_backfill, rtol=1e-6)
    again = backfill(
        start=start.to_pydatetime(),
        end=end.to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
    )
    assert again["written"] == out["written"]
    assert len(job.store().read_forecasts(start=start, end=end + 13 * STEP)) >= 6 * N_SERIES


def test_recalibrated_rows_are_the_same_from_catch_up_rerun_and_backfill(job, monkeypatch):
    """An origin's factors depend on the origin only: five slots written by one catch-up
    run, then by a re-run of each slot alone (the store holds later scores by then), then
    by a backfill in batches of 2 are the same rows, and the factors are not all 1."""
    monkeypatch.setenv("FORECAST_CALIBRATION_WINDOW", "24")  # 3 slots of 8 series
    monkeypatch.setenv("FORECAST_CALIBRATION_MIN_SCORES", "8")
    kw = dict(store_url=job.url, models_dir=str(job.models_dir))
    base = END - 130 * STEP  # a range no other test writes near
    for k in range(8):  # a scored history, one slot at a time
        predict(as_of=(base + k * STEP).to_pydatetime(), catch_up_slots=0, **kw)
    # nothing was scored before the first run: the model's own intervals
    assert (job.store().read_forecasts(issued_at=base)["interval_scale"] == 1.0).all()
    slots = [base + k * STEP for k in range(8, 13)]
    out = predict(as_of=slots[-1].to_pydatetime(), catch_up_slots=4, **kw)
    assert len(out["slots"]) == 5
    caught = {s: rows_at(job, s) for s in slots}
    scale = pd.concat(caught.values())["interval_scale"]
    assert (scale != 1.0).any() and scale.nunique() > 1
    for s in slots:
        predict(as_of=s.to_pydatetime(), catch_up_slots=0, **kw)
        pd.testing.assert_frame_equal(rows_at(job, s), caught[s], rtol=1e-9)
    backfill(start=slots[0].to_pydatetime(), end=slots[-1].to_pydatetime(), batch_slots=2, **kw)
    for s in slots:
        pd.testing.assert_frame_equal(rows_at(job, s), caught[s], rtol=1e-9)


def inject_nan(job, series: str, ts: pd.Timestamp) -> None:
    """Put a NULL value into the stored metrics, bypassing the store's strict write checks."""
    table = job.env["FORECAST_METRICS_TABLE"]
    store = job.store()
    if job.backend == "parquet":
        path = store.root / table / f"date={ts:%Y-%m-%d}" / f"part-{ts:%H}.parquet"
        tab = pq.read_table(path)
        df = tab.to_pandas()
        df.loc[(df["series_id"] == series) & (df["ts"] == ts), "value"] = float("nan")
        pq.write_table(pa.Table.from_pandas(df, schema=tab.schema, preserve_index=False), path)
        return
    when = ts.strftime("%Y-%m-%d %H:%M:%S+00:00") if job.backend == "sqlite" else ts.to_pydatetime()
    with store.engine.begin() as conn:
        n = conn.execute(
            sa.text(f"UPDATE {table} SET value = NULL WHERE series_id = :s AND ts = :t"),
            {"s": series, "t": when},
        ).rowcount
    assert n == 1


def test_a_series_with_nan_is_skipped_and_counted_others_forecast(job):
    as_of = END - 60 * STEP
    bad = sorted(job.frame.series_id.unique())[2]
    inject_nan(job, bad, as_of)
    out = predict(
        as_of=as_of.to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
        catch_up_slots=0,
    )
    assert out["n_skipped"] == 1 and list(out["skipped"]) == [bad]
    assert "invalid" in out["skipped"][bad]
    assert out["series_forecast"] == N_SERIES - 1
    rows = rows_at(job, as_of)
    assert bad not in set(rows["series_id"]) and len(rows) == (N_SERIES - 1) * 12


def test_storage_failure_mid_write_leaves_no_partial_forecasts(job, monkeypatch):
    as_of = END - 80 * STEP
    import storage.parquet
    import storage.sql

    def boom(label):
        raise RuntimeError(f"injected failure at {label}")

    module = storage.parquet if job.backend == "parquet" else storage.sql
    monkeypatch.setattr(module, "_fault_point", boom)
    before = len(job.store().read_forecasts())
    with pytest.raises(RuntimeError, match="injected failure"):
        predict(
            as_of=as_of.to_pydatetime(),
            store_url=job.url,
            models_dir=str(job.models_dir),
            catch_up_slots=3,
        )
    monkeypatch.undo()
    assert len(job.store().read_forecasts()) == before
    assert job.store().issued_slots(as_of - 3 * STEP, as_of) == []


def test_worse_challenger_is_not_promoted_and_promote_rolls_back(job, monkeypatch):
    registry = ModelRegistry(job.models_dir)
    first = registry.champion()
    r = retrain(
        store_url=job.url,
        models_dir=str(job.models_dir),
        promotion_margin=0.9,
        train_max_seconds=3,
        history_end=END,
    )
    assert r["promoted"] is False and "does not beat" in r["reason"]
    assert registry.champion() == first and r["version"] in registry.versions()
    for k, v in job.env.items():
        monkeypatch.setenv(k, v)
    cli = CliRunner()
    res = cli.invoke(
        app, ["--store", job.url, "--models", str(job.models_dir), "promote", r["version"]]
    )
    assert res.exit_code == 0, res.output
    assert registry.champion() == r["version"]
    as_of = END - 100 * STEP
    predict(
        as_of=as_of.to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
        catch_up_slots=0,
    )
    assert set(rows_at(job, as_of)["model_version"]) == {r["version"]}
    res = cli.invoke(app, ["--models", str(job.models_dir), "promote", first])
    assert res.exit_code == 0 and registry.champion() == first
    listing = cli.invoke(app, ["--models", str(job.models_dir), "models"])
    assert f"* {first}" in listing.output and r["version"] in listing.output
    res = cli.invoke(app, ["--models", str(job.models_dir), "promote", "no-such-version"])
    assert res.exit_code == 2 and "does not exist" in res.output


SERVE_SCRIPT = """
from prefect import serve
from deployments.serve import build_deployments
from flows.backfill import backfill
serve(*build_deployments(), backfill.to_deployment(name="backfill"), print_starting_message=False)
"""


@pytest.mark.slow
def test_served_deployments_run_predict_and_backfill_with_datetime_parameters(job, tmp_path):
    """`forecast serve` for real: a served process registers the deployments, picks up
    runs from the API, loads the flows in fresh processes, validates their datetime
    parameters there and writes through the store (in-process tests never do any of it)."""
    if job.backend != "sqlite":
        pytest.skip("one backend is enough: this test is about Prefect's served run path")
    import os
    import subprocess
    import sys
    import time

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        **job.env,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "FORECAST_STORE_URL": job.url,
        "FORECAST_MODELS_DIR": str(job.models_dir),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        deadline = time.monotonic() + 180
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name("backfill/backfill")
                    break
                except Exception:
                    assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "serve did not register its deployments"
                    time.sleep(1)
        as_of = END - 20 * STEP
        fr = run_deployment(
            "predict/predict",
            parameters={"as_of": as_of.isoformat(), "catch_up_slots": 0},
            timeout=300,
        )
        assert fr.state.is_completed(), fr.state.message
        assert len(rows_at(job, as_of)) == N_SERIES * 12
        lo, hi = END - 30 * STEP, END - 28 * STEP
        fr = run_deployment(
            "backfill/backfill",
            parameters={"start": lo.isoformat(), "end": hi.isoformat()},
            timeout=300,
        )
        assert fr.state.is_completed(), fr.state.message
        for s in (lo, lo + STEP, hi):
            assert len(rows_at(job, s)) == N_SERIES * 12, s
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_library_log_lines_reach_the_run_log(job):
    """Training progress (the `lstm` logger) reaches the retrain run's log in Prefect's
    database through PREFECT_LOGGING_EXTRA_LOGGERS, not through a hand-written handler."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
        ours = [r for r in runs if (r.state and r.state.is_completed())]
        assert ours, "no completed retrain run in the harness"
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[ours[0].id]))
        )
    names = {log.name for log in logs}
    assert any(n.startswith("lstm") for n in names), names
    assert any("epoch" in log.message and "val" in log.message for log in logs)


def test_retrain_learns_from_a_sample_and_is_judged_on_series_it_never_saw(
    harness, tmp_path, monkeypatch
):
    """A store with more series than FORECAST_TRAIN_SERIES: the model trains on a
    stratified sample, its intervals are calibrated and its promotion decided on a disjoint
    held-out sample, and a metrics row dated a year ahead is ignored and counted (it does
    not move the history window)."""
    from flow_helpers import make_metrics

    from lstm import generate_metrics
    from tasks.common import forget_stores, get_store
    from tasks.settings import get_settings

    for k, v in {
        "FORECAST_TRAIN_MAX_SECONDS": "15",
        "FORECAST_HIDDEN_SIZE": "16",
        "FORECAST_NUM_LAYERS": "1",
        "FORECAST_TRAIN_SERIES": "5",
        "FORECAST_HOLDOUT_SERIES": "3",
    }.items():
        monkeypatch.setenv(k, v)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    frame = pd.concat(
        [make_metrics(), generate_metrics(4, 1, seed=8, id_prefix="new", start=END)],
        ignore_index=True,
    )
    frame = frame[frame.ts <= END]
    ahead = frame.iloc[[0]].assign(ts=END + pd.Timedelta(days=365))
    store = get_store(get_settings(store_url=url))
    store.write_metrics(pd.concat([frame, ahead], ignore_index=True))
    old = END - pd.Timedelta(days=40)  # older than FORECAST_FORECAST_RETENTION_DAYS (30)
    store.write_forecasts(
        pd.DataFrame(
            {
                "series_id": "s0",
                "issued_at": old,
                "target_ts": [old + s * STEP for s in (1, 2)],
                "step": [1, 2],
                "yhat": 1.0,
                "yhat_lower": 0.0,
                "yhat_upper": 2.0,
                "level": 0.8,
                "model_version": "v0",
            }
        )
    )
    try:
        r = retrain(store_url=url, models_dir=str(tmp_path / "m"), history_end=END)
    finally:
        forget_stores()
    # retention ran last, relative to the history's end: the old forecast is gone
    assert r["retention"]["forecasts_deleted"] == 2 and r["retention"]["accuracy_deleted"] == 0
    assert store.read_forecasts(end=END - pd.Timedelta(days=30)).empty
    assert r["judged_on"] == "unseen series" and r["future_rows_ignored"] == 1
    assert (r["trained_series"], r["unseen_series"]) == (5, 3)
    assert r["unseen_series_mase"] is not None and r["trained_series_mase"] is not None
    md = ModelRegistry(tmp_path / "m").metadata(r["version"])
    sample = md["evaluation"]["sample"]
    assert sample["train"] == 5 and sample["holdout"] == 3 and sample["n_series"] == 12
    assert not set(sample["train_ids"]) & set(sample["holdout_ids"])
    assert md["training"]["series"] == 5
    assert md["training"]["calibration"]["series"] == "held-out series"
    assert md["evaluation"]["unseen_series"]["mase"] == pytest.approx(r["unseen_series_mase"])
    assert md["data_report"]["future_rows"] == 1
