"""A real Prometheus scrapes a real `forecast api` process and serves the forecast gauges
back through its HTTP query API with the store's values. Required when CI=true (`.ci/run`
installs Debian's `prometheus` package); skipped with the reason elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from api_helpers import FREQ, forecast_rows, make_registry, metric_rows, predict_body
from forecast_test_support import IN_CI

from lstm.slots import last_complete_slot
from storage import open_store

REPO = Path(__file__).resolve().parents[2]
N_SERIES = 4


@pytest.fixture
def prom_tools() -> tuple[str, str]:
    found = shutil.which("prometheus"), shutil.which("promtool")
    if not all(found):
        why = "prometheus/promtool not installed (apt-get install prometheus)"
        if IN_CI:
            pytest.fail(f"{why}: required when CI=true (.ci/run installs it)")
        pytest.skip(f"{why}; required only when CI=true")
    return found  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what: str, fn, timeout: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            out = fn()
            if out:
                return out
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def value_of(sid: int, step: int) -> float:
    """The same for every origin, so the gauge is known whichever slot is current."""
    return 1000.0 * (sid + 1) + step + 0.015625


@pytest.fixture
def demo_api(tmp_path):
    """A demo store (forecasts for the slots around now, written directly), a tiny model
    as champion, and `forecast api` on a free port as a real subprocess."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    newest = last_complete_slot(pd.Timestamp.now(tz="UTC"))
    store = open_store(url)
    store.write_metrics(metric_rows(N_SERIES, [newest - k * FREQ for k in range(24)]))
    # origins up to two slots ahead: the band exists whichever slot is current meanwhile
    frame = forecast_rows(N_SERIES, [newest + (2 - k) * FREQ for k in range(15)])
    sid = frame["series_id"].str.split("-").str[1].astype(int)
    frame["yhat"] = [value_of(s, st) for s, st in zip(sid, frame["step"], strict=True)]
    frame["yhat_lower"], frame["yhat_upper"] = frame["yhat"] - 100.5, frame["yhat"] + 200.25
    store.write_forecasts(frame)
    make_registry(tmp_path / "models")
    port = free_port()
    log = tmp_path / "api.log"
    env = {**os.environ, "FORECAST_API_CACHE_S": "0", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "forecast_cli.main", "--store", url]
            + ["--models", str(tmp_path / "models"), "api", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("forecast api", lambda: get(f"{base}/healthz")[0] == 200, 120, proc, log)
        yield {"base": base, "store": store, "port": port, "log": log}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        store.close()


def test_prometheus_scrapes_the_forecast_band(prom_tools, demo_api, tmp_path):
    prometheus, promtool = prom_tools
    base = demo_api["base"]
    status, text = get(f"{base}/metrics")
    assert status == 200
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()

    # the API process answers /predict and /healthz too (a real uvicorn server)
    req = urllib.request.Request(
        f"{base}/predict",
        data=json.dumps(predict_body()).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback
        assert len(json.loads(r.read())["steps"]) == 12

    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: forecast\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{demo_api['port']}']\n"
    )
    plog = tmp_path / "prometheus.log"
    with plog.open("w") as out:
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
            + [f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    papi = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for("prometheus", lambda: get(f"{papi}/-/ready")[0] == 200, 60, prom, plog)

        def query(q: str) -> list[dict]:
            status, body = get(f"{papi}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
            assert status == 200, body
            return json.loads(body)["data"]["result"]

        def full_band():
            got = query('lstm_forecast_yhat{job="forecast"}')
            return got if len(got) == N_SERIES * 12 else None

        result = wait_for("the forecast gauges in Prometheus", full_band, 60, prom, plog)
        current = pd.Timestamp.now(tz="UTC").floor(FREQ)
        stored = demo_api["store"].read_forecasts(start=current, end=current)
        expected = {
            (r.series_id, str(r.step)): (r.yhat, r.yhat_lower, r.yhat_upper)
            for r in stored.itertuples()
        }
        assert len(expected) == N_SERIES * 12
        for i, name in enumerate(("yhat", "yhat_lower", "yhat_upper")):
            got = result if name == "yhat" else query(f'lstm_forecast_{name}{{job="forecast"}}')
            values = {
                (s["metric"]["series_id"], s["metric"]["step"]): float(s["value"][1]) for s in got
            }
            assert values == {k: v[i] for k, v in expected.items()}, name
            # stamped at the scrape, never in the future
            assert all(s["value"][0] <= time.time() + 1 for s in got)
        (up,) = query('up{job="forecast"}')
        assert up["value"][1] == "1"
        (series,) = query("lstm_forecast_last_run_series_forecast")
        assert float(series["value"][1]) == N_SERIES
    finally:
        prom.terminate()
        prom.wait(timeout=30)
