"""The export package runs on its own: predict.py (a copy of lstm/standalone.py) forecasts
what the library forecasts, the README example runs as written, and requirements.txt names
only public dependencies (the fresh-venv proof is in test_export_venv.py)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lstm_helpers import export, random_forecaster, readme_example
from typer.testing import CliRunner

import lstm.standalone as standalone_module
from forecast_cli.main import app
from lstm import (
    FeatureSpec,
    Forecaster,
    ModelRegistry,
    load_forecaster,
    real_time_predict,
)
from lstm.export import load_export

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: what the standalone code may import besides the standard library
ALLOWED_IMPORTS = {"numpy", "torch"}


def import_predict(folder: Path):
    spec = importlib.util.spec_from_file_location(f"predict_{folder.name}", folder / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["trained", "random", "v1"])
def forecaster(request) -> Forecaster:
    if request.param == "trained":
        return request.getfixturevalue("small_forecaster")
    if request.param == "random":
        return random_forecaster()
    return load_forecaster(FIXTURES / "artifact_v1")  # no lags in the window, no naive skip


def inputs(spec: FeatureSpec, n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    last = pd.Timestamp("2026-01-10 17:35", tz="UTC")
    ts = pd.date_range(end=last, periods=n, freq=pd.Timedelta(spec.freq_ns, "ns"))
    slot = np.arange(n)
    data = {
        "value": (50 + 30 * np.sin(2 * np.pi * slot / 288) + rng.poisson(5, n)).tolist(),
        "ts": list(ts),
    }
    for j, name in enumerate(spec.exog):
        data[name] = rng.normal(0.01 * (j + 1), 0.004, spec.window + 3).tolist()
    return data


def test_standalone_predicts_what_the_library_predicts(forecaster, tmp_path):
    folder = export(forecaster, tmp_path / "pkg")
    predict = import_predict(folder)
    model = predict.load(folder)
    spec = forecaster.spec
    for n in (spec.window, spec.window + 100, spec.history_needed + spec.window):
        data = inputs(spec, n, seed=n)
        want = real_time_predict(forecaster, data_dict=data)
        for ts in (data["ts"], data["ts"][-1].isoformat(), data["ts"][-1].to_pydatetime()):
            got = model.predict({**data, "ts": ts})
            np.testing.assert_allclose(got["forecast"], want["forecast"], rtol=1e-5, atol=1e-6)
            assert got["target_ts"] == want["target_ts"]
            assert got["issued_at"] == want["issued_at"]
            assert got["intervals"].keys() == want["intervals"].keys()
            for lv, band in want["intervals"].items():
                for side in ("lower", "upper"):
                    np.testing.assert_allclose(
                        got["intervals"][lv][side], band[side], rtol=1e-5, atol=1e-6
                    )


def test_standalone_matches_the_batch_path(small_forecaster, synth_frame, tmp_path):
    """Forecaster.forecast over a history frame (the production path) gives the same numbers."""
    model = import_predict(folder := export(small_forecaster, tmp_path / "pkg")).load(folder)
    frame, _ = small_forecaster.forecast(synth_frame)
    for sid, hist in synth_frame.groupby("series_id"):
        data = {"value": hist.value.tolist(), "ts": list(hist.ts), "error_rate": hist.error_rate}
        got = model.predict({**data, "error_rate": data["error_rate"].tolist()})
        want = frame[frame.series_id == sid].sort_values("step")
        np.testing.assert_allclose(got["forecast"], want.yhat, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            got["intervals"]["80"]["lower"], want.yhat_lower, rtol=1e-5, atol=1e-6
        )


def test_package_files_and_requirements(small_forecaster, tmp_path):
    folder = export(small_forecaster, tmp_path / "pkg")
    assert (folder / "predict.py").read_bytes() == Path(standalone_module.__file__).read_bytes()
    reqs = [
        line
        for line in (folder / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [r.split("==")[0] for r in reqs] == ["torch", "numpy"]
    assert all(re.fullmatch(r"[a-z]+==\d+(\.\d+)+", r) for r in reqs), reqs  # no +cpu label
    md = json.loads((folder / "model_metadata.json").read_text())
    scalers = {
        "scaler_features": small_forecaster.feature_scaler,
        "scaler_target": small_forecaster.target_scaler,
    }
    for name, scaler in scalers.items():
        assert json.loads((folder / f"{name}.json").read_text()) == scaler.to_dict()
        assert f"{name}.json" in md["files"] and f"{name}.pkl" in md["files"]
    assert "predict.py" in md["files"]
    assert load_export(folder).feature_scaler.to_dict() == small_forecaster.feature_scaler.to_dict()


def test_standalone_refuses_a_tampered_file(small_forecaster, tmp_path):
    folder = export(small_forecaster, tmp_path / "pkg")
    predict = import_predict(folder)
    sf = json.loads((folder / "scaler_features.json").read_text())
    sf["mean"] = [m + 1 for m in sf["mean"]]
    (folder / "scaler_features.json").write_text(json.dumps(sf))
    with pytest.raises(ValueError, match="scaler_features.json: SHA-256"):
        predict.load(folder)


def test_standalone_names_missing_features(small_forecaster, tmp_path):
    folder = export(small_forecaster, tmp_path / "pkg")
    model = import_predict(folder).load(folder)
    data = inputs(small_forecaster.spec, 20)
    del data["error_rate"]
    with pytest.raises(ValueError, match=r"Missing features: \['error_rate'\]"):
        model.predict(data)


def test_standalone_imports_only_numpy_torch_and_the_standard_library():
    tree = ast.parse(Path(standalone_module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    tops = {n.split(".")[0] for n in names} - {"__future__"}
    assert tops - set(sys.stdlib_module_names) <= ALLOWED_IMPORTS, tops


@pytest.mark.parametrize("which", ["trained", "random"])
def test_readme_example_runs_as_written(which, small_forecaster, tmp_path):
    """The example, run in the package folder, needs no project module nor pandas/sklearn/
    joblib (the fresh-venv test proves the same without them installed)."""
    forecaster = small_forecaster if which == "trained" else random_forecaster()
    folder = export(forecaster, tmp_path / "pkg")
    code = readme_example(folder)
    for name in forecaster.spec.exog:
        assert repr(name) in code
    check = (
        "\nimport sys\n"
        "bad = {m.split('.')[0] for m in sys.modules} & "
        "{'lstm', 'storage', 'tasks', 'pandas', 'sklearn', 'joblib'}\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code + check],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    first = out.stdout.splitlines()[0]
    assert first.startswith("2026-01-05T12:00:00+00:00 [")
    assert len(out.stdout.splitlines()) == 1 + len(forecaster.levels)


def test_cli_export_writes_a_package_that_predicts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    forecaster = random_forecaster()
    version = ModelRegistry(tmp_path / "models").save(forecaster, metrics={"MASE": 0.9})
    res = CliRunner().invoke(app, ["--models", "models", "export", version, "pkg"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert Path(info["files"]["predict"]).is_file()
    model = import_predict(tmp_path / "pkg").load(tmp_path / "pkg")
    data = inputs(forecaster.spec, 300)
    np.testing.assert_allclose(
        model.predict(data)["forecast"],
        real_time_predict(forecaster, data_dict=data)["forecast"],
        rtol=1e-5,
    )
