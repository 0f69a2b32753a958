"""Rows 4, 6, 7, 11 and 12: crashes during model saves, hostile and corrupted artifacts,
a worse challenger, reproducibility."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_helpers import END, N_SERIES, STEP, make_metrics, train_small

from lstm import ArtifactError, ModelRegistry, load_forecaster
from lstm.artifacts import SUMS, sha256_file

REPO = Path(__file__).resolve().parents[2]

CRASHING_SAVE = textwrap.dedent(
    """
    import sys, time
    import lstm.artifacts as art
    from lstm import ModelRegistry
    ready, root, stage = sys.argv[1], sys.argv[2], sys.argv[3]
    registry = ModelRegistry(root)
    forecaster = registry.load()
    def hang(*a, **k):
        open(ready, "w").close()
        time.sleep(600)
    if stage == "save":
        art.save_scalers = hang          # weights written, scalers never: killed mid-version
        registry.save(forecaster)
    else:
        real = art.os.replace
        def slow_replace(src, dst):
            if str(dst).endswith("champion.json"):
                hang()
            return real(src, dst)
        art.os.replace = slow_replace    # new pointer written to a temp file, never moved
        registry.promote(sys.argv[4], "crash test")
    """
)


@pytest.mark.parametrize("stage", ["save", "promote"])
def test_r04_crash_while_saving_a_version_or_moving_the_pointer(
    trained, tmp_path, stage, sqlite_env
):
    registry = sqlite_env.registry
    other = registry.save(registry.load())  # a second version to promote
    before = registry.champion()
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SAVE, str(ready), str(registry.root), stage, other],
        cwd=REPO,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, f"child exited early ({proc.returncode})"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = list(registry.versions_dir.glob(".tmp-*")) + list(
        registry.root.glob(".champion.json.*")
    )
    assert leftovers, "the crash left no temporary files: the test did not interrupt a write"
    assert registry.champion() == before
    assert registry.load().spec.window == 12  # the old champion still loads
    assert other in registry.versions() and len(registry.versions()) == 2
    out = sqlite_env.predict(END)  # the next run cleans up after the dead process
    assert out["model_version"] == before
    left = list(registry.versions_dir.glob(".tmp-*")) + list(registry.root.glob(".champion.json.*"))
    assert left == [], f"temp files left after the next run: {left}"


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def rewrite_hashes(folder: Path) -> None:
    md = json.loads((folder / "model_metadata.json").read_text())
    md["files"] = {n: sha256_file(folder / n) for n in md["files"]}
    (folder / "model_metadata.json").write_text(json.dumps(md))
    names = [*md["files"], "model_metadata.json"]
    (folder / SUMS).write_text("".join(f"{sha256_file(folder / n)}  {n}\n" for n in names))


def test_r06_weights_with_a_pickled_payload_are_refused_and_never_run(sqlite_env, tmp_path):
    marker = tmp_path / "payload-ran"
    folder = sqlite_env.registry.path(sqlite_env.version)
    torch.save({"lstm.weight_ih_l0": Payload(marker)}, folder / "model_weights.pt")
    rewrite_hashes(folder)  # even with matching hashes
    with pytest.raises(ArtifactError, match="refused to load weights"):
        load_forecaster(folder)
    with pytest.raises(ArtifactError):
        sqlite_env.predict(END)  # no other champion to fall back to: the run fails clearly
    assert not marker.exists(), "the pickled payload ran"


@pytest.mark.parametrize(
    "name",
    [
        "model_weights.pt",
        "scaler_features.joblib",
        "scaler_target.joblib",
        "model_metadata.json",
        "SHA256SUMS",
    ],
)
@pytest.mark.parametrize("fresh_process", [False, True], ids=["cached", "fresh"])
def test_r07_one_flipped_byte_refused_and_predict_keeps_the_previous_champion(
    sqlite_env, name, fresh_process, caplog
):
    from tasks.model_tasks import clear_model_cache

    registry = sqlite_env.registry
    old = sqlite_env.version
    sqlite_env.predict(END - STEP)  # the old champion is now cached in this process
    new = registry.save(train_small(sqlite_env.frame, seed=9, epochs=1))
    registry.promote(new, "test")
    path = registry.path(new) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        registry.load(new)
    assert name in str(err.value) or (name == SUMS and "SHA-256 mismatch" in str(err.value))
    if fresh_process:
        clear_model_cache()  # no cached model: falls back through the promotion history
    out = sqlite_env.predict(END)
    assert out["model_version"] == old
    rows = sqlite_env.store().read_forecasts(issued_at=END)
    assert set(rows.model_version) == {old} and len(rows) == N_SERIES * 12


def test_r11_a_worse_challenger_leaves_the_champion_and_rows_carry_their_version(
    sqlite_env, monkeypatch
):
    from flows.retrain import retrain
    from lstm import Forecaster, LSTMModel

    real_fit = Forecaster.fit

    def worse_fit(panel, split=None, config=None):
        f = real_fit(panel, split, config)
        torch.manual_seed(123)
        f.model = LSTMModel(f.model.config).eval()  # untrained weights: a genuinely worse model
        return f

    monkeypatch.setattr(Forecaster, "fit", staticmethod(worse_fit))
    monkeypatch.setenv("FORECAST_TRAIN_MAX_SECONDS", "2")
    sqlite_env.predict(END - STEP)
    r = retrain(store_url=sqlite_env.url, models_dir=str(sqlite_env.models_dir))
    assert r["promoted"] is False, r["reason"]
    assert sqlite_env.registry.champion() == sqlite_env.version
    assert r["version"] in sqlite_env.registry.versions()
    sqlite_env.predict(END)
    rows = sqlite_env.store().read_forecasts()
    by_version = rows.groupby("model_version").size().to_dict()
    assert by_version == {sqlite_env.version: len(rows)}, by_version


def test_r12_same_seed_and_data_twice_equal_within_1e_6(tmp_path):
    frame = make_metrics(n_series=4, days=4, seed=8)
    a = train_small(frame, seed=3, epochs=2)
    b = train_small(frame, seed=3, epochs=2)
    fa, _ = a.forecast(frame)
    fb, _ = b.forecast(frame)
    diff = float(np.abs(fa.yhat.to_numpy() - fb.yhat.to_numpy()).max())
    assert diff <= 1e-6, f"max forecast difference {diff:.2e} between two identical trainings"
    older = load_forecaster(REPO / "tests" / "fixtures" / "artifact_v1")
    out, report = older.forecast(frame)
    assert report.n_forecast == 4 and np.isfinite(out.yhat).all()
    reg = ModelRegistry(tmp_path / "m")
    v = reg.save(a)
    fc, _ = reg.load(v).forecast(frame)
    assert float(np.abs(fc.yhat.to_numpy() - fa.yhat.to_numpy()).max()) <= 1e-6
