"""`forecast api` as a real process: it binds 127.0.0.1 by default, starts without a
reachable store (and says so on /healthz), and never prints the store password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from test_prometheus import free_port

from forecast_cli.api_cmd import _loopback

REPO = Path(__file__).resolve().parents[2]


def test_api_process_binds_loopback_and_masks_the_password(tmp_path):
    port = free_port()
    url = "postgresql+psycopg://forecast:s3cretPW@127.0.0.1:9/metrics?connect_timeout=2"
    env = {k: v for k, v in os.environ.items() if k != "FORECAST_STORE_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecast_cli.main", "api", "--port", str(port), "-v"]
        + ["--store", url, "--models", str(tmp_path)],  # after `api`, as users type them
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, status, body = time.monotonic() + 120, None, ""
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    status, body = r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read().decode()
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        assert status == 503 and '"store_reachable":false' in body
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"forecast api on http://127.0.0.1:{port}" in out
    assert "postgresql+psycopg://forecast:***@127.0.0.1:9/metrics" in out
    assert "GET /healthz" in out  # -v: the access log
    assert "s3cretPW" not in out and "s3cretPW" not in body


def test_loopback_hosts():
    assert _loopback("127.0.0.1") and _loopback("localhost") and _loopback("::1")
    assert not _loopback("0.0.0.0") and not _loopback("10.1.2.3")
