"""The proof that an export package runs on its own: a fresh virtual environment (no system
site-packages, nothing of this project), `pip install -r requirements.txt` with pip as it is
configured (the Makefile's way: `torch==<version>` resolves to the CPU build on disk), then
the README example, run from the package folder. About 25 s, most of it installing torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from lstm_helpers import export, random_forecaster, readme_example

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_export_installs_and_runs_in_a_fresh_venv(tmp_path):
    folder = export(random_forecaster(), tmp_path / "pkg")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        made = run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
        assert made.returncode == 0, made.stderr
        py = str(venv / "bin" / "python")
        assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
        # where would pip take torch from? Never let a test download a multi-GB build.
        plan = run(
            [py, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "--no-deps"]
            + ["-r", "requirements.txt"],
            folder,
            env,
        )
        assert plan.returncode == 0, plan.stderr[-3000:]
        urls = {
            item["metadata"]["name"]: item["download_info"]["url"]
            for item in json.loads(plan.stdout)["install"]
        }
        assert set(urls) == {"torch", "numpy"}, urls
        if not (urls["torch"].startswith("file:") and "cpu" in urls["torch"]):
            pytest.skip(f"no local CPU build of torch; pip would download {urls['torch']}")
        installed = run(
            [py, "-m", "pip", "install", "--quiet", "-r", "requirements.txt"], folder, env
        )
        assert installed.returncode == 0, installed.stderr[-3000:]
        listed = run([py, "-m", "pip", "list", "--format", "json"], folder, env)
        names = {p["name"].lower() for p in json.loads(listed.stdout)}
        assert {"torch", "numpy"} <= names
        assert not names & {
            "lstm-forecast",
            "lstm-forecast-sre",
            "pandas",
            "scikit-learn",
            "joblib",
        }
        absent = run([py, "-c", "import lstm"], folder, env)
        assert "ModuleNotFoundError" in absent.stderr  # the project is not importable here

        out = run([py, "-c", readme_example(folder)], folder, env, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = out.stdout.splitlines()
        assert lines[0].startswith("2026-01-05T12:00:00+00:00 [") and len(lines) == 3, lines
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~1 GB
