"""The flows and the CLI with a database registry (issue 15.1): retrain registers into and
predict loads from `sqlite:///...` tables, with no model folder anywhere; `forecast
models`, `promote` and `export` work on the URL; a tampered champion row is refused and
predict keeps forecasting with the previous champion."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
from flow_helpers import END, N_SERIES, make_metrics
from typer.testing import CliRunner

from forecast_cli.main import app
from lstm.artifacts import WEIGHTS

STEP = pd.Timedelta("5min")


@pytest.fixture(scope="module")
def sql_job(harness, tmp_path_factory):
    """Metrics in a SQLite store, a first model trained into a SQLite registry (given as
    the flow's models_dir, the old name); the working folder is a fresh temp folder."""
    root = tmp_path_factory.mktemp("sql-registry")
    suffix = uuid.uuid4().hex[:8]
    env = {
        "FORECAST_TRAIN_MAX_SECONDS": "20",
        "FORECAST_HIDDEN_SIZE": "32",
        "FORECAST_NUM_LAYERS": "1",
        "FORECAST_METRICS_TABLE": f"m_{suffix}",
        "FORECAST_FORECASTS_TABLE": f"f_{suffix}",
        "FORECAST_ACCURACY_TABLE": f"a_{suffix}",
        "FORECAST_MODELS_DIR": str(root / "local"),  # must stay empty
    }
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    mp.delenv("FORECAST_MODELS_URL", raising=False)
    from flows.retrain import retrain
    from tasks.common import forget_stores, get_store
    from tasks.settings import get_settings

    url = f"sqlite:///{root / 'forecast.db'}"
    registry_url = f"sqlite:///{root / 'registry.db'}"
    get_store(get_settings(store_url=url)).write_metrics(make_metrics())
    result = retrain(store_url=url, models_dir=registry_url, history_end=END)
    if not result["promoted"]:
        # a first model trained under a wall-clock budget on a busy machine may not beat
        # the baselines: promote it by hand, as `forecast train` tells a user to
        res = CliRunner().invoke(app, ["--models", registry_url, "promote", result["version"]])
        assert res.exit_code == 0, res.output
    yield {"root": root, "url": url, "registry": registry_url, "retrain": result, "env": env}
    forget_stores()
    mp.undo()


def registry_of(job):
    from tasks.common import get_registry
    from tasks.settings import get_settings

    return get_registry(get_settings(models_dir=job["registry"]))


def test_retrain_registers_into_the_database_and_predict_loads_from_it(sql_job, monkeypatch):
    from flows.predict import predict
    from tasks.common import get_store
    from tasks.model_tasks import clear_model_cache
    from tasks.settings import get_settings

    r = sql_job["retrain"]
    assert r["champion"] == (r["version"] if r["promoted"] else None), r
    reg = registry_of(sql_job)
    assert reg.kind == "sqlite" and reg.versions() == [r["version"]]
    assert reg.champion() == r["version"]
    assert reg.metadata(r["version"])["decision"]["promote"] is r["promoted"]
    with sa.create_engine(sql_job["registry"]).connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
    assert {"model_versions", "model_files", "model_champion", "model_promotions"} <= names
    assert not (sql_job["root"] / "local").exists(), "a database registry left local files"
    clear_model_cache()  # a fresh process: loaded (and verified) from the table
    monkeypatch.setenv("FORECAST_MODELS_URL", sql_job["registry"])  # the new name, from env
    as_of = END - 6 * STEP
    out = predict(as_of=as_of.to_pydatetime(), store_url=sql_job["url"], catch_up_slots=0)
    assert out["series_forecast"] == N_SERIES and out["model_version"] == r["version"]
    rows = get_store(get_settings(store_url=sql_job["url"])).read_forecasts(issued_at=as_of)
    assert len(rows) == N_SERIES * 12 and set(rows.model_version) == {r["version"]}


def test_cli_models_promote_and_export_on_a_registry_url(sql_job, monkeypatch, tmp_path):
    for k, v in sql_job["env"].items():
        monkeypatch.setenv(k, v)
    cli = CliRunner()
    first = sql_job["retrain"]["version"]
    listing = cli.invoke(app, ["--models", sql_job["registry"], "models"])
    assert listing.exit_code == 0, listing.output
    assert f"* {first}" in listing.output
    # a second version (the champion re-saved), promoted and rolled back from the CLI
    reg = registry_of(sql_job)
    second = reg.save(reg.load(first), note="re-saved")
    res = cli.invoke(app, ["--models", sql_job["registry"], "promote", second])
    assert res.exit_code == 0 and f"{first} -> {second}" in res.output, res.output
    res = cli.invoke(app, ["--models", sql_job["registry"], "promote", first])
    assert res.exit_code == 0 and reg.champion() == first
    assert [e["version"] for e in reg.history()][-3:] == [first, second, first]
    res = cli.invoke(app, ["--models", sql_job["registry"], "export", first, str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p" / "predict.py").exists()
    res = cli.invoke(app, ["--models", sql_job["registry"], "promote", "no-such-version"])
    assert res.exit_code == 2 and "does not exist" in res.output
    typo = f"sqlite:///{tmp_path / 'typo.db'}"
    res = cli.invoke(app, ["--models", typo, "models"])
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "typo.db").exists()


def test_a_tampered_champion_row_is_refused_and_predict_keeps_the_previous_one(sql_job, caplog):
    from flows.predict import predict
    from tasks.model_tasks import clear_model_cache

    reg = registry_of(sql_job)
    old = reg.champion()
    new = reg.save(reg.load(old), note="to be tampered with")
    reg.promote(new, "test")
    f = reg.backend.t["files"]
    with reg.backend.engine.begin() as conn:
        cond = (f.c.version == new) & (f.c.name == WEIGHTS)
        data = bytearray(conn.execute(sa.select(f.c.data).where(cond)).scalar_one())
        data[len(data) // 2] ^= 0x01
        conn.execute(sa.update(f).where(cond).values(data=bytes(data)))
    clear_model_cache()
    as_of = END - 3 * STEP
    out = predict(
        as_of=as_of.to_pydatetime(),
        store_url=sql_job["url"],
        models_dir=sql_job["registry"],
        catch_up_slots=0,
    )
    assert out["model_version"] == old and out["series_forecast"] == N_SERIES
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"champion {new} refused" in logged and "SHA-256 mismatch" in logged, logged
    reg.promote(old, "restore")  # leave the module's registry as the other tests expect
