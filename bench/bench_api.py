"""`forecast api` latency at fleet scale: a real `forecast api` process (uvicorn) on a
SQLite store holding 10,000 series (12 origins x 12 steps of forecasts = 1.44M rows, the
last hour of metrics, the matured forecasts scored), timed from a keep-alive HTTP client.

    python -m bench.bench_api '{"series": 10000, "requests": 200}'

Prints one JSON line: p50/p99 of /forecasts/latest (one series, the default 1,000-row page,
every series' next hour), /metrics (recomputed on every scrape, and cached as by default),
/healthz, and /predict throughput (one client, and four concurrent ones).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from bench.common import ROOT, STEP, commit, machine


def build_store(root: Path, n_series: int) -> tuple[str, Path]:
    from lstm import ModelRegistry
    from lstm.slots import last_complete_slot
    from storage import open_store

    sys.path.insert(0, str(ROOT / "tests" / "api"))
    from api_helpers import tiny_forecaster  # a tiny model: /predict cost is the API's

    url = f"sqlite:///{root / 'store.db'}"
    store = open_store(url)
    newest = last_complete_slot(pd.Timestamp.now(tz="UTC"))
    ids = np.array([f"svc-{i:05d}" for i in range(n_series)], dtype=object)
    rng = np.random.default_rng(0)
    level = np.exp(rng.uniform(np.log(5), np.log(5000), n_series))
    slots = [newest - k * STEP for k in range(12)]
    store.write_metrics(
        pd.DataFrame(
            {
                "series_id": np.tile(ids, len(slots)),
                "ts": np.repeat(pd.DatetimeIndex(slots), n_series),
                "value": rng.poisson(np.tile(level, len(slots))).astype(float),
                "error_rate": rng.uniform(0, 0.05, n_series * len(slots)),
            }
        )
    )
    for issued in slots:  # one predict run's write per origin, as the job does
        steps = np.arange(1, 13)
        yhat = np.repeat(level, 12) * (1 + 0.01 * np.tile(steps, n_series))
        store.write_forecasts(
            pd.DataFrame(
                {
                    "series_id": np.repeat(ids, 12),
                    "issued_at": issued,
                    "target_ts": issued + np.tile(steps, n_series) * STEP,
                    "step": np.tile(steps, n_series),
                    "yhat": yhat,
                    "yhat_lower": yhat * 0.8,
                    "yhat_upper": yhat * 1.25,
                    "level": 0.8,
                    "model_version": "bench",
                }
            ),
            slots=[issued],
        )
    scored = store.score_forecasts(newest, 288)
    store.close()
    reg = ModelRegistry(root / "models")
    reg.promote(reg.save(tiny_forecaster()), "bench")
    return url, root / "models", scored


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(client: httpx.Client, n: int, method: str, path: str, **kw) -> dict:
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.request(method, path, **kw)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        size = len(r.content)
    times.sort()
    return {
        "n": n,
        "p50_ms": round(1000 * statistics.median(times), 2),
        "p99_ms": round(1000 * times[min(n - 1, int(0.99 * n))], 2),
        "bytes": size,
    }


def predict_body() -> dict:
    ts = pd.Timestamp.now(tz="UTC").floor("5min")
    return {
        "requests_target": [100.0 + 3 * i for i in range(12)],
        "error_rate": [0.01] * 12,
        "ts": ts.isoformat(),
    }


def throughput(base: str, workers: int, seconds: float) -> float:
    body = predict_body()

    def loop(_: int) -> int:
        n, end = 0, time.perf_counter() + seconds
        with httpx.Client(base_url=base, timeout=30) as c:
            while time.perf_counter() < end:
                assert c.post("/predict", json=body).status_code == 200
                n += 1
        return n

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(loop, range(workers)))
    return round(total / (time.perf_counter() - t0), 1)


def serve(url: str, models: Path, env_extra: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **env_extra, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecast_cli.main", "--store", url, "--models", str(models)]
        + ["api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code in (200, 503):
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("forecast api did not start")


def main(args: dict) -> dict:
    n_series, n = int(args.get("series", 10_000)), int(args.get("requests", 200))
    seconds = float(args.get("seconds", 10))  # of each /predict throughput run
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        url, models, scored = build_store(Path(tmp), n_series)
        setup_s = time.perf_counter() - t0
        out: dict = {"series": n_series, "scored_rows": scored, "setup_s": round(setup_s, 1)}
        for label, cache in (("uncached", "0"), ("cached_5s", "5")):
            proc, base = serve(url, models, {"FORECAST_API_CACHE_S": cache})
            try:
                with httpx.Client(base_url=base, timeout=60) as c:
                    c.get("/metrics")  # warm-up (imports, first queries)
                    out[f"metrics_{label}"] = timed(c, n, "GET", "/metrics")
                    if label == "uncached":
                        out["healthz"] = timed(c, n, "GET", "/healthz")
                        out["latest_one_series"] = timed(
                            c,
                            n,
                            "GET",
                            "/forecasts/latest",
                            params={"series_id": f"svc-{n_series // 2:05d}"},
                        )
                        out["latest_page_1000"] = timed(c, n, "GET", "/forecasts/latest")
                        out["latest_all_next_hour"] = timed(
                            c,
                            max(5, n // 20),
                            "GET",
                            "/forecasts/latest",
                            params={"limit": 1_000_000},
                        )
                        c.post("/predict", json=predict_body())
                if label == "uncached":
                    out["predict_per_s_1_client"] = throughput(base, 1, seconds)
                    out["predict_per_s_4_clients"] = throughput(base, 4, seconds)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    out.update(machine=machine(), commit=commit())
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
