"""prefect.yaml and the served deployments: entrypoints import, parameters validate,
schedules and the one-at-a-time concurrency limit are what the README promises."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from deployments.serve import advertised, build_deployments, local_prefect_server, one_at_a_time

ROOT = Path(__file__).resolve().parents[2]


def load_yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def entry(ep: str):
    path, name = ep.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


@pytest.mark.parametrize("dep", load_yaml()["deployments"], ids=lambda d: d["name"])
def test_every_entrypoint_imports_and_its_parameters_validate(dep):
    from prefect import Flow
    from prefect.exceptions import ParameterTypeError

    fn = entry(dep["entrypoint"])
    assert isinstance(fn, Flow)
    params = dict(dep.get("parameters") or {})
    if dep["name"] == "backfill":  # no default range: a run without one is refused
        with pytest.raises(ParameterTypeError, match="start"):
            fn.validate_parameters(params)
        params = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}
    if dep["name"] == "predict-shard":  # what predict-sharded gives each shard run
        params = {"as_of": "2026-01-01T00:00:00Z", "shard": 1, "shards": 2, "score": False}
    validated = fn.validate_parameters(params)
    assert set(validated) >= set(params)
    if dep["name"] == "predict-shard":  # K shard runs at once: no one-at-a-time limit
        assert "concurrency_limit" not in dep
    else:
        assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert dep["work_pool"]["name"] == "forecast-pool"


def test_yaml_schedules():
    deps = {d["name"]: d for d in load_yaml()["deployments"]}
    assert set(deps) == {"predict", "predict-sharded", "predict-shard", "retrain", "backfill"}
    assert deps["predict"]["schedules"] == [{"interval": 300}]
    # the sharded variant: shard count a parameter, its schedule off until chosen instead
    assert deps["predict-sharded"]["parameters"] == {"shards": 2}
    assert deps["predict-sharded"]["schedules"] == [{"interval": 300, "active": False}]
    assert deps["predict-shard"]["schedules"] == []
    assert deps["retrain"]["schedules"][0]["cron"] == "15 3 * * *"
    assert deps["backfill"]["schedules"] == []


def test_bad_parameters_are_rejected_by_the_flow_signature():
    from prefect.exceptions import ParameterTypeError, SignatureMismatchError

    with pytest.raises((ParameterTypeError, SignatureMismatchError)):
        entry("flows/retrain.py:retrain").validate_parameters({"history_days": "thirty"})
    with pytest.raises((ParameterTypeError, SignatureMismatchError)):
        entry("flows/predict.py:predict").validate_parameters({"no_such_parameter": 1})


def test_served_deployments_have_schedules_and_concurrency_limits(monkeypatch):
    monkeypatch.setenv("FORECAST_PREDICT_INTERVAL_S", "120")
    predict, retrain = build_deployments(retrain_interval=7200)
    assert predict.name == "predict" and retrain.name == "retrain"
    assert predict.schedules[0].schedule.interval.total_seconds() == 120
    assert retrain.schedules[0].schedule.interval.total_seconds() == 7200
    for d in (predict, retrain):
        assert d.concurrency_limit == 1
        assert d.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert one_at_a_time().limit == 1


@pytest.mark.slow
def test_local_prefect_server_starts_on_loopback_and_stops(tmp_path):
    import urllib.request

    from test_prefect_home import _choose

    home = tmp_path / "prefect"
    with local_prefect_server(home, timeout=240) as url, advertised(home, url):
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
            assert resp.status == 200
        # a CLI command started now on this machine reuses this server
        assert _choose(tmp_path / "models")["api"] == url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/health", timeout=3)
    assert not (home / "api-url").exists()


PICKLED_RUN = """
import sys, cloudpickle
flows = cloudpickle.loads(sys.stdin.buffer.read())
ts = "2026-06-01T12:00:00+00:00"
params = {"predict": {"as_of": ts}, "backfill": {"start": ts, "end": ts}, "retrain": {"history_days": 2},
          "predict-sharded": {"shards": 3, "as_of": ts}}
for f in flows:
    print(f.name, sorted(f.validate_parameters(params[f.name])))
"""


def test_flows_shipped_by_value_still_validate_their_parameters():
    """`flow.serve()` runs each flow in a spawned process that receives the flow by value
    (cloudpickle): its annotations must resolve there, or every served run fails with
    "PredictModel is not fully defined"."""
    import subprocess
    import sys

    import cloudpickle

    flows = [entry(d["entrypoint"]) for d in load_yaml()["deployments"]]
    proc = subprocess.run(
        [sys.executable, "-c", PICKLED_RUN],
        input=cloudpickle.dumps(flows),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode()
    assert "predict ['as_of'" in out and "backfill [" in out and "retrain [" in out, out


@pytest.mark.parametrize("dep", load_yaml()["deployments"], ids=lambda d: d["name"])
def test_work_pool_runs_get_the_run_environment(dep):
    """A worker's flow-run process imports Prefect before our code: the run environment
    (library logs to the run log) must come from the deployment's job variables."""
    from deployments import RUN_ENV

    env = dep["work_pool"]["job_variables"]["env"]
    assert {k: env[k] for k in RUN_ENV} == RUN_ENV


@pytest.mark.parametrize("dep", load_yaml()["deployments"], ids=lambda d: d["name"])
def test_no_deployment_carries_a_store_url_or_secret(dep):
    """Secrets come from the worker's environment or a Secret block, never parameters."""
    params = dep.get("parameters") or {}
    env = dep["work_pool"]["job_variables"]["env"]
    assert not {"store_url", "models_dir", "models_url"} & set(params)
    secret = ("FORECAST_STORE_URL", "FORECAST_MODELS_DIR", "FORECAST_MODELS_URL")
    assert not [k for k in env if k in secret]


def test_prefect_yaml_documents_the_registry_url_for_a_pool():
    """Several workers need a registry they all reach: the file says how to set
    FORECAST_MODELS_URL (the store's database) and where its secret comes from."""
    text = (ROOT / "prefect.yaml").read_text()
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert "FORECAST_MODELS_URL" in comments and "FORECAST_MODELS_URL: store" in comments
    assert "FORECAST_STORE_SECRET_BLOCK" in comments and "Secret block" in comments
