"""Shared pieces of the benchmarks: machine facts, subprocess isolation, synthetic inputs."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
AS_OF = pd.Timestamp("2026-06-01 12:00", tz="UTC")
STEP = pd.Timedelta("5min")


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pandas": pd.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_time(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def medians(rows: Sequence[Mapping[str, float]], keys: Iterable[str] | None = None) -> dict:
    """The median of each of ``keys`` (every key of the first row when None) over ``rows``."""
    return {k: statistics.median(r[k] for r in rows) for k in (keys or rows[0])}


def flow_medians(runs: Sequence[Mapping]) -> dict:
    """Of predict flow summaries: the median body (``seconds``) as ``body_s`` and the
    median of each step's timing (``read_s``, ``forecast_s``, ...)."""
    return {
        "body_s": statistics.median(r["seconds"] for r in runs),
        **medians([r["timings"] for r in runs]),
    }


def run_isolated(module: str, args: dict, timeout: float = 3600) -> dict:
    """Run `python -m <module> '<json args>'` in a fresh process (clean peak RSS); the child
    prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_forecaster(seed: int = 0):
    """The product's default architecture, fitted briefly on synthetic data: real scalers,
    real intervals, default window/lags; its weights do not affect speed."""
    from dataclasses import replace

    from lstm import ForecastConfig, fit_forecaster, generate_metrics, regularize

    panel, _ = regularize(generate_metrics(n_series=8, days=9, seed=seed))
    cfg = ForecastConfig()
    cfg = replace(cfg, train=replace(cfg.train, epochs=1, max_windows_per_epoch=4096, seed=seed))
    return fit_forecaster(panel, config=cfg)


def recent_frame(n_series: int, spec, as_of: pd.Timestamp = AS_OF, seed: int = 0) -> pd.DataFrame:
    """Exactly the rows one predict run reads for n_series series: the window and the lag
    ranges (what `store.read_recent` returns), with realistic counts."""
    rng = np.random.default_rng(seed)
    last, ranges = spec.read_ranges([as_of.value // spec.freq_ns])
    back = np.concatenate([np.arange(lo, hi + 1) for lo, hi in ranges])
    slots = last - back
    level = np.exp(rng.uniform(np.log(5), np.log(5000), n_series))
    n_slots = len(slots)
    values = rng.poisson(np.repeat(level, n_slots)).astype(np.float64)
    width = len(str(n_series))
    ids = np.array([f"svc-{i:0{width}d}" for i in range(n_series)], dtype=object)
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, n_slots),
            "ts": pd.DatetimeIndex(np.tile(slots, n_series) * spec.freq_ns, tz="UTC"),
            "value": values,
            "error_rate": rng.uniform(0, 0.05, n_series * n_slots),
        }
    )
