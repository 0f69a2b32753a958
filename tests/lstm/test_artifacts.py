import json
import os
import pickle
import tomllib
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

from lstm import (
    ArtifactError,
    ModelRegistry,
    load_forecaster,
    load_production_model,
    load_scalers,
    real_time_predict,
    save_model_metadata,
    save_model_weights,
    save_scalers,
)
from lstm.artifacts import DISTRIBUTION, SUMS, library_versions, sha256_file
from lstm.export import load_export
from lstm.files import safe_unpickle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MARKER_ENV = "LSTM_FORECAST_PAYLOAD_MARKER"


class Payload:
    """Unpickling this runs os.system: the attack a weights or scaler file could carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def registry(tmp_path, small_forecaster):
    reg = ModelRegistry(tmp_path / "models")
    version = reg.save(small_forecaster, metrics={"MASE": 0.9})
    return reg, version


def rewrite_hashes(folder: Path) -> None:
    """What an attacker who can write the folder would do: make every hash match."""
    md_path = folder / "model_metadata.json"
    md = json.loads(md_path.read_text())
    md["files"] = {n: sha256_file(folder / n) for n in md["files"]}
    md_path.write_text(json.dumps(md))
    names = [*md["files"], "model_metadata.json"]
    (folder / SUMS).write_text("".join(f"{sha256_file(folder / n)}  {n}\n" for n in names))


def test_registry_round_trip_predicts_identically(registry, small_forecaster, synth_frame):
    reg, version = registry
    loaded = reg.load(version)
    a, _ = small_forecaster.forecast(synth_frame)
    b, _ = loaded.forecast(synth_frame)
    pd.testing.assert_frame_equal(a, b)
    md = reg.metadata(version)
    assert md["version"] == version and md["evaluation_metrics"] == {"MASE": 0.9}
    assert set(md["files"]) == {
        "model_weights.pt",
        "scaler_features.json",
        "scaler_target.json",
    }
    assert md["format_version"] == 2
    assert md["library_versions"]["torch"] == torch.__version__
    assert md["features"]["window"] == 12 and md["intervals"]["levels"] == [0.8, 0.95]


@pytest.mark.parametrize(
    "name",
    [
        "model_weights.pt",
        "scaler_features.json",
        "scaler_target.json",
        "model_metadata.json",
        "SHA256SUMS",
    ],
)
def test_one_flipped_byte_in_any_file_is_refused_naming_it(registry, name):
    reg, version = registry
    path = reg.path(version) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        reg.load(version)
    msg = str(err.value)
    if name == "SHA256SUMS":
        assert "SHA-256 mismatch" in msg or "malformed" in msg
    else:
        assert name in msg and "SHA-256 mismatch" in msg


def test_pickled_payload_in_weights_never_runs(registry, tmp_path):
    reg, version = registry
    folder = reg.path(version)
    marker = tmp_path / "pwned-weights"
    torch.save({"lstm.weight_ih_l0": Payload(marker)}, folder / "model_weights.pt")
    rewrite_hashes(folder)
    with pytest.raises(ArtifactError, match="refused to load weights"):
        reg.load(version)
    assert not marker.exists()


def test_registry_versions_hold_no_pickle(registry):
    reg, version = registry
    folder = reg.path(version)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "SHA256SUMS",
        "model_metadata.json",
        "model_weights.pt",
        "scaler_features.json",
        "scaler_target.json",
    ]
    for name in ("scaler_features.json", "scaler_target.json"):
        assert isinstance(json.loads((folder / name).read_text()), dict)


def test_pickled_payload_in_format_1_scalers_never_runs(tmp_path):
    """Format-1 artifacts (scalers written with joblib) still load, through an unpickler
    that refuses every class: a payload with matching hashes never runs."""
    import shutil

    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "artifact_v1", folder)
    marker = tmp_path / "pwned-scalers"
    joblib.dump(Payload(marker), folder / "scaler_target.joblib")
    rewrite_hashes(folder)
    with pytest.raises(ArtifactError, match="refusing to unpickle"):
        load_forecaster(folder)
    assert not marker.exists()
    # the seed-level loader refuses it too, even without hashes
    with pytest.raises(ArtifactError):
        load_scalers(folder / "scaler_features.joblib", folder / "scaler_target.joblib")
    assert not marker.exists()


def test_champion_pointer_promote_and_rollback(tmp_path, small_forecaster):
    reg = ModelRegistry(tmp_path / "m")
    assert reg.champion() is None
    with pytest.raises(ArtifactError, match="no champion"):
        reg.load()
    v1 = reg.save(small_forecaster)
    v2 = reg.save(small_forecaster)
    assert reg.versions() == sorted([v1, v2])
    reg.promote(v1, "first")
    reg.promote(v2, "better")
    assert reg.champion() == v2
    reg.promote(v1, "rollback")
    assert reg.champion() == v1
    history = json.loads((tmp_path / "m" / "champion.json").read_text())["history"]
    assert [h["reason"] for h in history] == ["first", "better", "rollback"]
    with pytest.raises(ArtifactError):
        reg.promote("../../etc")


def test_crashed_save_leaves_no_version_and_is_cleaned(tmp_path, small_forecaster, monkeypatch):
    reg = ModelRegistry(tmp_path / "m")
    v1 = reg.save(small_forecaster)
    reg.promote(v1)
    import lstm.artifacts as art

    real_write = art.atomic_write_bytes

    def boom(path, data):
        if Path(path).name == "scaler_target.json":
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(art, "atomic_write_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        reg.save(small_forecaster)
    monkeypatch.undo()
    assert reg.versions() == [v1]
    assert not list((tmp_path / "m" / "versions").glob(".*"))
    assert reg.load().spec == small_forecaster.spec


def test_seed_file_api_round_trip(tmp_path, small_forecaster):
    w = save_model_weights(small_forecaster.model, tmp_path / "w.pt")
    paths = save_scalers(small_forecaster.feature_scaler, small_forecaster.target_scaler, tmp_path)
    md = save_model_metadata(
        small_forecaster,
        small_forecaster.feature_scaler,
        small_forecaster.target_scaler,
        {"metrics": {"mae": 1.0}},
        model_path=w,
        metadata_path=tmp_path / "md.json",
    )
    assert md["files"]["w.pt"] == sha256_file(w)
    model, md2 = load_production_model(w, tmp_path / "md.json")
    fs, ts = load_scalers(paths["features_scaler_path"], paths["target_scaler_path"])
    for p, q in zip(model.parameters(), small_forecaster.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert (
        fs.to_dict() == small_forecaster.feature_scaler.to_dict()
        and ts == small_forecaster.target_scaler
    )
    assert md2["evaluation_metrics"] == {"mae": 1.0}


def test_export_package_loads_and_predicts(registry, tmp_path, synth_frame):
    reg, version = registry
    info = reg.export(version, tmp_path / "pkg")
    names = sorted(p.name for p in (tmp_path / "pkg").iterdir())
    assert names == [
        "README.md",
        "model_metadata.json",
        "model_weights.pth",
        "predict.py",
        "requirements.txt",
        "scaler_features.json",
        "scaler_features.pkl",
        "scaler_target.json",
        "scaler_target.pkl",
    ]
    assert "torch==" in (tmp_path / "pkg" / "requirements.txt").read_text()
    assert version in (tmp_path / "pkg" / "README.md").read_text()
    again = load_export(info["export_dir"])
    a, _ = reg.load(version).forecast(synth_frame)
    b, _ = again.forecast(synth_frame)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ArtifactError, match="not empty"):
        reg.export(version, tmp_path / "pkg")


def test_checked_in_v1_artifact_still_loads_and_predicts():
    forecaster = load_forecaster(FIXTURES / "artifact_v1")
    history = pd.read_csv(FIXTURES / "artifact_v1_history.csv", parse_dates=["ts"])
    expected = pd.read_csv(
        FIXTURES / "artifact_v1_expected.csv", parse_dates=["issued_at", "target_ts"]
    )
    got, report = forecaster.forecast(history)
    assert report.n_forecast == 4
    np.testing.assert_allclose(got.yhat.to_numpy(), expected.yhat.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.yhat_upper.to_numpy(), expected.yhat_upper.to_numpy(), rtol=1e-5)
    s = history[history.series_id == history.series_id.iloc[0]]
    single = real_time_predict(
        forecaster,
        data_dict={
            "value": s.value.tolist(),
            "ts": s.ts.tolist(),
            "error_rate": s.error_rate.tolist(),
        },
    )
    assert len(single["forecast"]) == 12


def test_no_globals_unpickler_accepts_plain_values(tmp_path):
    p = tmp_path / "plain.joblib"
    joblib.dump({"a": [1.0, 2.0], "b": "x", "c": None, "d": True}, p)
    assert safe_unpickle(p.read_bytes(), p.name) == {
        "a": [1.0, 2.0],
        "b": "x",
        "c": None,
        "d": True,
    }
    with pytest.raises(ArtifactError, match="refusing to unpickle"):
        safe_unpickle(pickle.dumps(np.zeros(2)), "array.pkl")


def test_versions_are_read_from_this_projects_distribution():
    """library_versions reads the distribution pyproject.toml names (not PyPI's unrelated
    lstm-forecast), under the metadata key older models used."""
    pyproject = tomllib.loads((FIXTURES.parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == DISTRIBUTION != "lstm-forecast"
    assert set(library_versions()) == set(
        json.loads((FIXTURES / "artifact_v1" / "model_metadata.json").read_text())[
            "library_versions"
        ]
    )
