"""Does a sampled retrain lose accuracy? (issue 18) On one synthetic store of N series x 30
days, the backtest protocol (70/10/20, rolling origins, MASE over every series) is run twice
with the same training schedule: once training on all N series, once on the product's
stratified sample of `sample` series (lstm.sampling, as the retrain flow draws it). The
sampled run also reports its MASE on the series it trained on and on those it never saw.

    python -m bench.bench_sampled '{"series": 1000, "sample": 200}'

Both runs get the same fixed schedule (`epochs`, `windows_per_epoch`; no wall-clock budget),
so the comparison measures the data, not how loaded the machine was.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import pandas as pd

from bench.common import AS_OF, STEP, peak_rss_mb

DAYS = 30


def run(
    n_series: int, sample: int, epochs: int = 15, windows_per_epoch: int = 60_000, seed: int = 0
) -> dict:
    from lstm import generate_metrics
    from lstm.backtest import run_backtest
    from lstm.sampling import profile_series, stratified_sample
    from lstm.slots import freq_to_ns
    from tasks.model_tasks import forecast_config
    from tasks.settings import get_settings

    slots = int(pd.Timedelta(days=DAYS) / STEP)
    frame = generate_metrics(n_series, DAYS, seed=1, start=AS_OF - STEP * (slots - 1))
    # profile on the day before the test period starts (the protocol tests the last 20%)
    test_start = AS_OF - STEP * int(slots * 0.2)
    recent = frame[(frame.ts > test_start - pd.Timedelta("1D")) & (frame.ts <= test_start)]
    picked = stratified_sample(profile_series(recent, freq_to_ns("5min")), sample, 0, seed)

    cfg = forecast_config(get_settings())
    cfg = replace(
        cfg,
        train=replace(
            cfg.train,
            max_seconds=None,
            epochs=epochs,
            max_windows_per_epoch=windows_per_epoch,
            seed=seed,
        ),
    )
    out: dict = {"series": n_series, "sample": len(picked.train), "strata": picked.strata}
    for name, ids in (("full", None), ("sampled", picked.train)):
        t0 = time.perf_counter()
        rep = run_backtest(frame, config=cfg, dataset=f"synthetic-{n_series}", train_ids=ids)
        lstm = rep["models"]["lstm"]
        out[name] = {
            "mase": lstm["avg"]["MASE"],
            "mase_step1": lstm["step1"]["MASE"],
            "by_sample": lstm.get("by_sample"),
            "epochs_run": lstm["training"]["epochs_run"],
            "fit_s": lstm["fit_s"],
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        out["naive_mase"] = rep["models"]["naive"]["avg"]["MASE"]
    out["mase_gap"] = out["sampled"]["mase"] - out["full"]["mase"]
    by = out["sampled"]["by_sample"]
    out["unseen_minus_trained"] = by["unseen"]["MASE"] - by["trained"]["MASE"]
    out["schedule"] = {"epochs": epochs, "windows_per_epoch": windows_per_epoch, "seed": seed}
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    args["n_series"] = args.pop("series")
    print(json.dumps(run(**args), default=str))
