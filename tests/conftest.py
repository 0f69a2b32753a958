"""Shared fixtures: paths, and a small forecaster trained once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAB_DIR = Path(os.environ.get("FORECAST_NAB_DIR", REPO.parent / "shared" / "data" / "nab-tweets"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def nab_dir() -> Path:
    if not NAB_DIR.is_dir():
        if IN_CI:
            pytest.fail(
                f"NAB data folder {NAB_DIR} missing in CI (expected ../shared/data/nab-tweets)"
            )
        pytest.skip(f"NAB data folder {NAB_DIR} not present (set FORECAST_NAB_DIR)")
    return NAB_DIR
