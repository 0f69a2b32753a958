"""Retrain at scale: wall time and peak RSS of the retrain flow for N series x 30 days of
5-minute history (SQLite store), and the accuracy the same training reaches under the
backtest protocol (70/10/20, rolling origins), so speed is never bought with accuracy.

    python -m bench.bench_retrain '{"series": 1000, "root": "/tmp/b"}'
    python -m bench.bench_retrain '{"series": 100, "root": "/tmp/b", "protocol_full_data": true}'
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.common import AS_OF, STEP, peak_rss_mb

DAYS = 30


def synthetic(n_series: int) -> pd.DataFrame:
    from lstm import generate_metrics

    slots = int(pd.Timedelta(days=DAYS) / STEP)
    return generate_metrics(n_series, DAYS, seed=1, start=AS_OF - STEP * (slots - 1))


def run_one(n_series: int, root: str, protocol_full_data: bool = False) -> dict:
    from flows.retrain import retrain
    from tasks.common import get_store
    from tasks.settings import get_settings

    work = Path(root) / f"retrain-{n_series}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # the product's own settings (FORECAST_* environment, else the defaults)
    budget = get_settings().train_max_seconds
    frame = synthetic(n_series)
    url = f"sqlite:///{work / 'forecast.db'}"
    get_store(get_settings(store_url=url)).write_metrics(frame)
    t0 = time.perf_counter()
    r = retrain(store_url=url, models_dir=str(work / "models"), history_end=AS_OF)
    wall = time.perf_counter() - t0
    rss = peak_rss_mb()
    result = {
        "series": n_series,
        "days": DAYS,
        "wall_s": wall,
        "train_max_seconds": budget,
        "peak_rss_mb": rss,
        "holdout_mase": r["comparison"]["challenger"]["MASE"],
        "holdout_naive_mase": r["comparison"]["naive"]["MASE"],
        "promoted": r["promoted"],
    }
    # the protocol on the same data and the product's training configuration
    from lstm.backtest import run_backtest
    from tasks.model_tasks import forecast_config

    cfg = forecast_config(get_settings())
    t0 = time.perf_counter()
    rep = run_backtest(frame, config=cfg, dataset=f"synthetic-{n_series}")
    result.update(
        mase=rep["models"]["lstm"]["avg"]["MASE"],
        mase_step1=rep["models"]["lstm"]["step1"]["MASE"],
        naive_mase=rep["models"]["naive"]["avg"]["MASE"],
        protocol_fit_s=rep["models"]["lstm"]["fit_s"],
        protocol_wall_s=time.perf_counter() - t0,
    )
    if protocol_full_data:  # every training window every epoch (no per-epoch sampling)
        full = replace(cfg, train=replace(cfg.train, max_windows_per_epoch=None, max_seconds=None))
        rep = run_backtest(frame, config=full, dataset=f"synthetic-{n_series}-full")
        result.update(
            full_data_mase=rep["models"]["lstm"]["avg"]["MASE"],
            full_data_fit_s=rep["models"]["lstm"]["fit_s"],
        )
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(
        json.dumps(run_one(int(args["series"]), args["root"], bool(args.get("protocol_full_data"))))
    )
