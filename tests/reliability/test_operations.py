"""Rows 10, 13 and 14: secrets in URLs, a database outage (PostgreSQL and MariaDB), a
restart after downtime."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

import pandas as pd
import pytest
from forecast_test_support import require_mariadb, require_postgres
from reliability_helpers import END, N_SERIES, STEP, FlakyProxy, drop_env_tables, make_env
from typer.testing import CliRunner

from forecast_cli.main import app

SECRET = "Sup3r-S3cret-pw"


def secret_url(port: int = 5432) -> str:
    return f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{port}/test"


def test_r10_database_password_never_appears(
    harness, trained, tmp_path, monkeypatch, caplog, request
):
    require_postgres()
    env = make_env("postgres", trained, tmp_path, monkeypatch)
    request.addfinalizer(lambda: drop_env_tables(env))
    monkeypatch.setenv("FORECAST_STORE_URL", secret_url())  # trust auth: accepted, not needed
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(env.models_dir))
    caplog.set_level(logging.DEBUG)
    cli = CliRunner()
    outputs = []
    res = cli.invoke(app, ["predict", "--as-of", str(END)])
    outputs.append(res.output)
    assert res.exit_code == 0, res.output
    outputs.append(cli.invoke(app, ["models"]).output)
    outputs.append(
        cli.invoke(
            app, ["--store", secret_url(), "demo-data", "--series", "1", "--days", "0.1"]
        ).output
    )
    bad = cli.invoke(app, ["--store", secret_url(port=1), "predict", "--as-of", str(END)])
    outputs.append(bad.output)
    assert bad.exit_code != 0 and "127.0.0.1" in bad.output
    errors = []
    try:
        from tasks.common import get_store
        from tasks.settings import get_settings

        get_store(get_settings(store_url=secret_url(port=1)))
    except Exception as exc:
        errors.append(f"{exc!r} {exc}")
    assert errors, "connecting to a closed port did not fail"

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run_logs = [log.message for log in client.read_logs()]
        artifacts = [str(a.data) for a in client.read_artifacts()]
        params = [str(r.parameters) for r in client.read_flow_runs()]
    haystacks = {
        "CLI output": "\n".join(outputs),
        "python logs": "\n".join(r.getMessage() for r in caplog.records),
        "Prefect run logs": "\n".join(run_logs),
        "artifacts": "\n".join(artifacts),
        "flow-run parameters": "\n".join(params),
        "errors": "\n".join(errors),
    }
    counts = {where: text.count(SECRET) for where, text in haystacks.items()}
    assert counts == dict.fromkeys(haystacks, 0), f"password occurrences: {counts}"
    assert len(run_logs) > 0 and len(artifacts) > 0  # the places searched are not empty


@contextlib.contextmanager
def _password_url(backend: str, port: int):
    """A URL through the proxy on ``port`` whose password is ``SECRET`` (PostgreSQL's trust
    auth ignores it; on MariaDB a user of this test has it and is dropped afterwards)."""
    if backend == "postgres":
        yield f"postgresql+psycopg://postgres:r13-{SECRET}@127.0.0.1:{port}/test"
        return
    import sqlalchemy as sa

    user = f"lstmf_r13_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(require_mariadb())
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'r13-{SECRET}'")
            conn.exec_driver_sql(f"GRANT ALL ON test.* TO '{user}'@'127.0.0.1'")
        yield f"mysql+pymysql://{user}:r13-{SECRET}@127.0.0.1:{port}/test"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        admin.dispose()


# On MariaDB this row once flaked (a run Completed through the 8 s outage): the proxy's
# listening socket outlived down() by up to 0.2 s, the store's TCP probe got through, and
# ConnectorX's pool then waited for the server (up to 30 s) until the proxy was back.
# FlakyProxy.down() now refuses connects at once.
@pytest.mark.parametrize(
    "backend", [pytest.param("postgres"), pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def test_r13_database_down_then_back(backend, harness, trained, tmp_path, monkeypatch):
    """A short outage is ridden out by retries with backoff; a long one fails the run with a
    clear error and the next run catches the slot up. Time is scaled: retry delays of
    0.2, 0.4, 0.8, 1.6 s stand for the production 5, 10, 20, 40 s (75 s in all), so a
    1.5 s outage plays the part of a short blip and an 8 s outage that of 2 minutes."""
    base = require_postgres() if backend == "postgres" else require_mariadb()
    proxy = FlakyProxy(5432 if backend == "postgres" else 3306)
    proxy.up()
    env = make_env(backend, trained, tmp_path, monkeypatch)
    from tasks.common import forget_stores

    with _password_url(backend, proxy.port) as url:
        env.url = url
        forget_stores()
        try:
            _outages(env, proxy)
        finally:
            proxy.down()
            forget_stores()
            env.url = base
            drop_env_tables(env)


def _outages(env, proxy) -> None:
    """A healthy run, a 1.5 s outage ridden out, an 8 s one failing the run, a catch-up."""
    env.predict(END - 3 * STEP)  # healthy run; the pool now holds proxied connections

    proxy.down()
    timer = threading.Timer(1.5, proxy.up)
    timer.start()
    t0 = time.monotonic()
    out = env.predict(END - 2 * STEP)
    assert out["written"] == N_SERIES * 12 and time.monotonic() - t0 >= 1.0
    timer.join()

    proxy.down()
    timer = threading.Timer(8.0, proxy.up)
    timer.start()
    with pytest.raises(Exception) as err:
        env.predict(END - STEP)
    msg = str(err.value)
    assert "127.0.0.1" in msg and str(proxy.port) in msg, f"host not named: {msg}"
    assert SECRET not in msg, f"password in the error: {msg}"
    timer.join()
    out = env.predict(END, catch_up_slots=3)  # the next run catches the missed slot up
    assert [pd.Timestamp(s) for s in out["slots"]] == [END - STEP, END]
    issued = env.store().issued_slots(END - 3 * STEP, END)
    assert issued == [END - 3 * STEP, END - 2 * STEP, END - STEP, END]


def test_r14_restart_after_hours_down_skips_stale_slots_and_catches_up_boundedly(
    harness, trained, tmp_path, monkeypatch
):
    from reliability_helpers import make_metrics

    from lstm.slots import last_complete_slot

    now_slot = last_complete_slot(pd.Timestamp.now(tz="UTC"))
    env = make_env("sqlite", trained, tmp_path, monkeypatch, write_metrics=False)
    frame = make_metrics()
    frame["ts"] = frame["ts"] + (now_slot - END)  # metrics up to the current slot
    env.store().write_metrics(frame)
    from flows.predict import predict

    # 3 hours of runs that Prefect starts late after the restart; those more than
    # max_lateness_slots (3) late skip their slot
    backlog = [pd.Timestamp.now(tz="UTC").floor("5min") - STEP * k for k in range(36, 3, -1)]
    import tasks.common

    for scheduled in backlog:
        monkeypatch.setattr(tasks.common, "scheduled_time", lambda s=scheduled: s)
        out = predict(store_url=env.url, models_dir=str(env.models_dir))
        assert out["status"] == "stale" and out["written"] == 0, out
    assert env.store().read_forecasts().empty
    on_time = now_slot + STEP
    monkeypatch.setattr(tasks.common, "scheduled_time", lambda: on_time)
    out = predict(store_url=env.url, models_dir=str(env.models_dir))
    assert out["status"] == "ok" and pd.Timestamp(out["as_of"]) == now_slot
    assert len(out["slots"]) == 13, "catch-up is bounded to catch_up_slots + the slot itself"
    assert len(env.store().issued_slots()) == 13
