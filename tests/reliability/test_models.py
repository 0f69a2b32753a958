"""Rows 4, 6, 7, 11 and 12: crashes during model saves, hostile and corrupted artifacts,
a worse challenger, reproducibility."""

from __future__ import annotations

import json
import os
import shutil
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
    import os, sys, time
    from pathlib import Path
    import lstm.artifacts as art
    from lstm import ModelRegistry
    ready, root, stage, other, go = sys.argv[1:6]
    registry = ModelRegistry(root)
    forecaster = registry.load()
    def hang():
        open(ready, "w").close()
        while not os.path.exists(go):  # killed here, or released by the test
            time.sleep(0.05)
    if stage == "save":
        real_write = art.atomic_write_bytes
        def slow_write(path, data):
            if Path(path).name == "scaler_target.json":
                hang()                   # weights written, scalers not yet: mid-version
            real_write(path, data)
        art.atomic_write_bytes = slow_write
        print(registry.save(forecaster), flush=True)
    else:
        real = os.replace
        def slow_replace(src, dst):
            if str(dst).endswith("champion.json"):
                hang()                   # new pointer in a temp file, not yet moved
            return real(src, dst)
        os.replace = slow_replace
        registry.promote(other, "crash test")
    """
)


def start_save(registry, tmp_path, stage: str, other: str) -> tuple[subprocess.Popen, Path]:
    """A child process saving a version (or moving the pointer), held mid-write."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASHING_SAVE,
            str(ready),
            str(registry.root),
            stage,
            other,
            str(go),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, f"child exited early ({proc.returncode})"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, go


def temp_entries(registry) -> list[Path]:
    return list(registry.versions_dir.glob(".*.tmp")) + list(registry.root.glob(".*.tmp"))


@pytest.mark.parametrize("stage", ["save", "promote"])
def test_r04_crash_while_saving_a_version_or_moving_the_pointer(
    trained, tmp_path, stage, sqlite_env
):
    registry = sqlite_env.registry
    other = registry.save(registry.load())  # a second version to promote
    before = registry.champion()
    proc, _ = start_save(registry, tmp_path, stage, other)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = temp_entries(registry)
    assert leftovers, "the crash left no temporary files: the test did not interrupt a write"
    assert registry.champion() == before
    assert registry.load().spec.window == 12  # the old champion still loads
    assert other in registry.versions() and len(registry.versions()) == 2
    out = sqlite_env.predict(END)  # fresh leftovers may be a save in progress: kept
    assert out["model_version"] == before
    assert sorted(temp_entries(registry)) == sorted(leftovers)
    old = time.time() - registry.temp_max_age_s - 60
    for path in leftovers:
        os.utime(path, (old, old))
    sqlite_env.predict(END)  # once older than the bound, the next run removes them
    assert temp_entries(registry) == [], "temp files left after the bound"


def test_r17_cleanup_from_another_process_namespace_keeps_a_save_in_progress(
    trained, tmp_path, sqlite_env
):
    """A cleanup started where the writer's process id means nothing (another container
    sharing the models folder: here a new PID namespace) must not remove a running save."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux `unshare` to start a process in a new PID namespace")
    registry = sqlite_env.registry
    proc, go = start_save(registry, tmp_path, "save", "-")
    in_progress = temp_entries(registry)
    assert in_progress, "the save is not in progress"
    cleanup = (
        "import sys; from lstm import ModelRegistry; print(ModelRegistry(sys.argv[1]).cleanup())"
    )
    out = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-c",
            cleanup,
            str(registry.root),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0 and "Operation not permitted" in out.stderr:
        proc.kill()
        pytest.skip("this machine does not allow new PID namespaces (unshare needs root)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "0", "the cleanup removed something"
    go.touch()  # let the save finish
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, "the save in progress failed"
    version = stdout.strip().splitlines()[-1]
    assert version in registry.versions()
    assert registry.load(version).spec.window == 12


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
        "scaler_features.json",
        "scaler_target.json",
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
    import tasks.retrain_tasks
    from flows.retrain import retrain
    from lstm import LSTMModel, fit_forecaster

    real_fit = fit_forecaster

    def worse_fit(panel, split=None, config=None, calibration=None):
        f = real_fit(panel, split, config, calibration)
        torch.manual_seed(123)
        f.model = LSTMModel(f.model.config).eval()  # untrained weights: a genuinely worse model
        return f

    monkeypatch.setattr(tasks.retrain_tasks, "fit_forecaster", worse_fit)
    monkeypatch.setenv("FORECAST_TRAIN_MAX_SECONDS", "2")
    sqlite_env.predict(END - STEP)
    r = retrain(store_url=sqlite_env.url, models_dir=str(sqlite_env.models_dir), history_end=END)
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


@pytest.mark.parametrize("bad", [5, ["v1"], None, {"v": 1}], ids=["int", "list", "null", "dict"])
def test_r07b_a_malformed_champion_pointer_falls_back_with_a_logged_reason(sqlite_env, bad, caplog):
    """Issue 12.8: `champion.json` whose version is an int, a list, null or an object is
    not a TypeError: the run forecasts with the last verifiable champion of the promotion
    history and logs why."""
    import logging

    from tasks.model_tasks import clear_model_cache

    registry = sqlite_env.registry
    pointer = registry.root / "champion.json"
    data = json.loads(pointer.read_text())
    assert data["history"], "the fixture promoted a champion"
    data["version"] = bad
    pointer.write_text(json.dumps(data))
    clear_model_cache()
    with pytest.raises(ArtifactError, match="malformed"):
        registry.champion()
    caplog.set_level(logging.WARNING)
    out = sqlite_env.predict(END)
    assert out["model_version"] == sqlite_env.version
    assert out["series_forecast"] == N_SERIES
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "malformed" in logged, logged


def test_r07c_forecast_freq_not_matching_the_models_grid_fails_with_the_setting_named(
    sqlite_env, monkeypatch
):
    """Issue 12.8: FORECAST_FREQ=10min with a 5-minute model is an error naming the setting,
    not a green run with 0 rows."""
    from tasks.model_tasks import clear_model_cache

    monkeypatch.setenv("FORECAST_FREQ", "10min")
    clear_model_cache()
    from storage import ConfigError

    with pytest.raises(ConfigError, match="FORECAST_FREQ='10min' does not match the grid"):
        sqlite_env.predict(END)
    assert sqlite_env.store().read_forecasts(issued_at=END).empty
