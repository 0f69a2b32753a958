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
    monkeypatch.setenv("FORECAST_TRAIN_MAX_SECONDS", "10")
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
