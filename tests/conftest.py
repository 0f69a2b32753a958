"""Shared fixtures: the NAB data folder and one Prefect test harness per session."""

from __future__ import annotations

import os

# The storage retry policy is read once, when `tasks` is first imported (every production
# run is a fresh process). Tests scale its time down: 0.2, 0.4, 0.8, 1.6 s stand for the
# production 5, 10, 20, 40 s (tests/test_settings.py checks the production values).
os.environ.setdefault("FORECAST_STORAGE_RETRY_DELAY_S", "0.2")
# A scheduled predict run waits up to FORECAST_DATA_WAIT_SECONDS (90 s in production) for
# late metrics; most tests feed their data up front, so they do not wait. The tests of the
# wait itself set it (tests/flows/test_data_wait.py).
os.environ.setdefault("FORECAST_DATA_WAIT_SECONDS", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from forecast_test_support import IN_CI  # noqa: E402

import deployments  # noqa: E402, F401  (the run environment, set before Prefect is imported)

REPO = Path(__file__).resolve().parents[1]
NAB_DIR = Path(os.environ.get("FORECAST_NAB_DIR", REPO.parent / "shared" / "data" / "nab-tweets"))


@pytest.fixture(scope="session")
def harness():
    """One Prefect test harness (temporary API + SQLite) for every flow test: slow to start."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        yield


@pytest.fixture(scope="session")
def nab_dir() -> Path:
    if not NAB_DIR.is_dir():
        if IN_CI:
            pytest.fail(
                f"NAB data folder {NAB_DIR} missing in CI (expected ../shared/data/nab-tweets)"
            )
        pytest.skip(f"NAB data folder {NAB_DIR} not present (set FORECAST_NAB_DIR)")
    return NAB_DIR
