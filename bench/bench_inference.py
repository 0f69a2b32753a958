"""Inference kernel: forecasts per second of `batch_predict` (the product's batch path, from
the long frame a store returns to the forecasts frame, intervals on) against the seed-style
path (`real_time_predict` once per series) and the model's bare forward pass, on the same
model and windows.

    python -m bench.bench_inference '{"series": 10000}'     # one size, isolated process
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from bench.common import AS_OF, bench_forecaster, median_time, peak_rss_mb, recent_frame

LOOP_SAMPLE = 1500  # series timed on the per-series path (its rate does not depend on N)


def run_one(n_series: int, repeat: int = 3) -> dict:
    from lstm import batch_predict, real_time_predict
    from lstm.features import encode
    from lstm.prepare import prepare_windows

    forecaster = bench_forecaster()
    spec = forecaster.spec
    frame = recent_frame(n_series, spec)
    rss_before = peak_rss_mb()

    batch_s, (out, _) = median_time(
        lambda: batch_predict(forecaster, data_list=frame, as_of=AS_OF), repeat
    )
    assert len(out) == n_series * spec.horizon

    raw, _, _ = prepare_windows(frame, spec, [AS_OF], exog_fill=forecaster.feature_scaler.mean)
    enc = encode(raw, spec, forecaster.target_scaler, forecaster.feature_scaler)
    forward_s, _ = median_time(lambda: forecaster._forward(enc), repeat)

    k = min(n_series, LOOP_SAMPLE)
    ids = frame["series_id"].unique()[:k]
    sub = frame[frame["series_id"].isin(ids)].sort_values(["series_id", "ts"])
    inputs = []
    for _, g in sub.groupby("series_id", sort=False):
        # a dense history ending at as_of, long enough for the one-week lag (the seed path's input)
        n = spec.history_needed + spec.window
        full = np.zeros(n)
        pos = (pd.DatetimeIndex(g["ts"]).as_unit("ns").asi8 // spec.freq_ns) - (
            AS_OF.value // spec.freq_ns - (n - 1)
        )
        ok = pos >= 0
        full[pos[ok]] = g["value"].to_numpy()[ok]
        err = np.full(spec.window, g["error_rate"].iloc[-1])
        inputs.append({"value": full.tolist(), "ts": [AS_OF], "error_rate": err.tolist()})

    def loop() -> None:
        for d in inputs:
            real_time_predict(forecaster, data_dict=d)

    # median of passes like the batch figure: one pass of the loop varies by 30 % run to run
    loop_s, _ = median_time(loop, repeat)

    return {
        "series": n_series,
        "batch_s": batch_s,
        "batch_per_s": n_series / batch_s,
        "forward_only_s": forward_s,
        "forward_only_per_s": n_series / forward_s,
        "loop_series_timed": k,
        "loop_per_s": k / loop_s,
        "ratio": (n_series / batch_s) / (k / loop_s),
        "batch_over_forward": batch_s / forward_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_batch_mb": rss_before,
    }


if __name__ == "__main__":
    args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"series": 10000}
    print(json.dumps(run_one(int(args["series"]), int(args.get("repeat", 3)))))
