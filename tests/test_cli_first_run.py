"""A newcomer's first retrain on too little data (issue 13): `forecast train` says what
happened and what to do and exits non-zero when no champion exists; `forecast predict`
names the saved version to promote; the JSON printed is strict (null, never NaN)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name} in the output")

    start = text.index("{")
    return json.loads(text[start : text.rindex("}") + 1], parse_constant=refuse)


@pytest.fixture
def two_days(harness, tmp_path, monkeypatch):
    from tasks.common import forget_stores

    monkeypatch.setenv("FORECAST_STORE_URL", f"sqlite:///{tmp_path / 'f.db'}")
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(tmp_path / "models"))
    # a budget of a training step or two: the model loses to the baselines whatever the
    # machine's speed and the clock time the demo data ends at (with 10 s, and with 1 s,
    # a quiet machine trained enough to win now and then)
    monkeypatch.setenv("FORECAST_TRAIN_MAX_SECONDS", "0.2")
    monkeypatch.setenv("FORECAST_HIDDEN_SIZE", "16")
    monkeypatch.setenv("FORECAST_NUM_LAYERS", "1")
    yield tmp_path
    forget_stores()


def test_a_first_train_that_loses_to_the_baselines_exits_1_and_says_what_next(two_days):
    from forecast_cli.main import app

    cli = CliRunner()
    res = cli.invoke(app, ["demo-data", "--series", "5", "--days", "2"])
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["train"])
    assert res.exit_code == 1, res.output
    out = _strict_json(res.stdout)
    assert out["promoted"] is False and out["champion"] is None
    # a baseline has no interval: its coverage is null, not NaN
    assert out["comparison"]["naive"]["coverage_80"] is None
    version = out["version"]
    assert f"`forecast promote {version}`" in res.stderr, res.stderr
    assert "more history" in res.stderr

    res = cli.invoke(app, ["predict"])
    assert res.exit_code == 2, res.output
    assert f"`forecast promote {version}`" in res.stderr, res.stderr
    assert "none is promoted" in res.stderr

    res = cli.invoke(app, ["promote", version])
    assert res.exit_code == 0, res.output

    # with a champion, a predict run from an hour before the data's end scores what matured
    import pandas as pd

    from tasks.common import get_store
    from tasks.settings import get_settings

    _, last, _ = get_store(get_settings()).metrics_range()
    origin = (pd.Timestamp(last) - pd.Timedelta("1h")).strftime("%Y-%m-%dT%H:%M")
    res = cli.invoke(app, ["predict", "--as-of", origin])
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["accuracy", "--by", "step", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert all(r["n"] > 0 and r["mae"] >= 0 and 0 <= r["coverage_pct"] <= 100 for r in rows)
    res = cli.invoke(app, ["accuracy", "--by", "", "--mase", "--json"])
    assert res.exit_code == 0, res.output
    (overall,) = json.loads(res.stdout)
    assert overall["mase"] > 0 and overall["n"] == sum(r["n"] for r in rows)
    res = cli.invoke(app, ["accuracy", "--since", "soon"])
    assert res.exit_code == 2 and "--since 'soon'" in res.stderr
    res = cli.invoke(app, ["alerts", "--since", "24h", "--json"])  # none yet: an empty list
    assert res.exit_code == 0 and json.loads(res.stdout) == [], res.output


@pytest.mark.parametrize("kind", ["sqlite-file", "sqlite-folder", "parquet"])
def test_a_mistyped_store_path_is_named_and_nothing_is_created(
    harness, tmp_path, monkeypatch, kind
):
    from forecast_cli.main import app
    from tasks.common import forget_stores

    target = {
        "sqlite-file": tmp_path / "typo.db",
        "sqlite-folder": tmp_path / "no-such-dir" / "forecast.db",
        "parquet": tmp_path / "no-such-lake",
    }[kind]
    url = str(target) if kind == "parquet" else f"sqlite:///{target}"
    monkeypatch.setenv("FORECAST_MODELS_DIR", str(tmp_path / "models"))
    cli = CliRunner()
    for args in (
        ["predict"],
        ["backfill", "--start", "2026-01-01", "--end", "2026-01-01T01:00"],
        ["train"],
        ["accuracy"],
        ["alerts", "--open"],
    ):
        res = cli.invoke(app, ["--store", url, *args])
        assert res.exit_code == 2, (args, res.output)
        assert str(target) in res.stderr and "does not exist" in res.stderr, (args, res.stderr)
        assert not target.exists() and not (tmp_path / "no-such-dir").exists(), args
    forget_stores()


@pytest.mark.slow
def test_a_failing_command_prints_its_error_in_one_line_and_logs_the_traceback(tmp_path):
    """Issue 13.4: no Prefect traceback on the console; the error line last, naming where
    the traceback went (a real process: the console handler is Prefect's own)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        FORECAST_STORE_URL=f"sqlite:///{tmp_path / 'typo.db'}",
        FORECAST_MODELS_DIR=str(tmp_path / "data" / "models"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-m", "forecast_cli.main", "predict"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    console = res.stdout + res.stderr
    assert "Traceback" not in console, console[-3000:]
    last = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert last and "typo.db" in last[-1] and "does not exist" in last[-1], res.stderr[-2000:]
    log = tmp_path / "data" / "logs" / "forecast-cli.log"
    assert str(log) in last[-1] and "Traceback" in log.read_text()
    assert not (tmp_path / "typo.db").exists()


def test_store_and_models_may_follow_the_command(tmp_path, monkeypatch):
    """`forecast demo-data --store URL` works as `forecast --store URL demo-data` (a new
    user types it that way); an option after the command wins over the global one and over
    the environment."""
    from forecast_cli.main import app
    from tasks.common import forget_stores

    for name in ("FORECAST_STORE_URL", "FORECAST_MODELS_URL", "FORECAST_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FORECAST_MODELS_URL", f"sqlite:///{tmp_path / 'env-registry.db'}")
    cli = CliRunner()
    after = tmp_path / "after.db"
    before = tmp_path / "before.db"
    try:
        res = cli.invoke(
            app,
            ["--store", f"sqlite:///{before}", "demo-data", "--series", "2", "--days", "0.05"]
            + ["--store", f"sqlite:///{after}"],
        )
        assert res.exit_code == 0, res.output
        assert after.exists() and not before.exists()
        assert f"sqlite:///{after}" in res.stdout

        res = cli.invoke(app, ["accuracy", "--store", f"sqlite:///{after}", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout) == []

        folder = tmp_path / "models-after"
        res = cli.invoke(app, ["models", "--models", str(folder)])
        assert res.exit_code == 0, res.output
        assert f"no models in {folder}" in res.output
        assert not (tmp_path / "env-registry.db").exists()
    finally:
        forget_stores()
