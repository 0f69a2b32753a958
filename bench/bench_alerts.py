"""Breach alerts measured (the figures of README "Breach alerts"): how often the rules of
``storage.breaches`` alert by chance, and how fast they catch a real departure, per
forecast step and k, on data the model was not trained on.

    python -m bench.bench_alerts                       # NAB tweets + synthetic, ~5 minutes
    python -m bench.bench_alerts --json out.json
    python -m bench.bench_alerts --store sqlite:////tmp/a.db --series 10000   # its cost

For each dataset: train on the protocol's train part (70/10/20 split of every series), then
forecast from *every* slot of the test part (stride 1, what the 5-minute predict run does)
and judge each step's scored forecasts. *False alerts* are alerts on the untouched data, per
series and day of test data. *Detection*: in a copy of the test part, half of the series
get one level shift of 12 slots (an hour: x3 or x0.3, at a random slot); an injected shift
is caught when an alert of that series starts inside it; the delay is from the shift's
first slot to the slot that opened the alert (k slots is the least possible).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lstm import generate_metrics
from lstm.config import ForecastConfig
from lstm.fit import fit_forecaster
from lstm.panel import Panel, load_dataset, regularize
from lstm.windows import protocol_split, test_origins
from storage.breaches import advance_alerts, breach_codes, expected_false_alerts

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab-tweets"
STEPS = (1, 6, 12)
KS = (3, 4, 6)
EXCESS = (0.0, 0.5, 1.0)
M = 3
LEVEL = 0.8
SHIFT = 12  # slots an injected level shift lasts


def inject(panel: Panel, split, rng: np.random.Generator) -> tuple[Panel, list[tuple]]:
    """Half of the series get one level shift of SHIFT slots in their test part."""
    y = panel.y.copy()
    shifts = []
    for i in range(0, panel.n_series, 2):
        lo = panel.offsets[i] + split.test_start[i] + 24
        hi = panel.offsets[i + 1] - SHIFT - 24
        if hi <= lo:
            continue
        at = int(rng.integers(lo, hi))
        factor = 3.0 if rng.random() < 0.5 else 0.3
        y[at : at + SHIFT] *= factor
        shifts.append((str(panel.ids[i]), int(panel.slot[at]), factor))
    return replace(panel, y=y), shifts


def step_rows(panel: Panel, arrays, raw, step: int) -> pd.DataFrame:
    ids = panel.ids[raw.series]
    rows = pd.DataFrame(
        {
            "series_id": ids,
            "slot": raw.origin_slot + step,
            "y": raw.target[:, step - 1],
            "yhat_lower": arrays.lower[LEVEL][:, step - 1],
            "yhat_upper": arrays.upper[LEVEL][:, step - 1],
            "model_version": "bench",
        }
    )
    rows = rows[np.isfinite(rows["y"])]
    rows["target_ts"] = pd.to_datetime(rows["slot"] * panel.freq_ns, utc=True)
    return rows


def judge(rows: pd.DataFrame, k: int, freq_us: int, step: int, e: float) -> list:
    return advance_alerts(
        rows, None, k=k, m=M, freq_us=freq_us, level=LEVEL, step=step, min_excess=e, quiet=12
    ).changed


def measure(name: str, panel: Panel, max_seconds: float, seed: int = 0) -> dict:
    split = protocol_split(panel)
    cfg = ForecastConfig()
    cfg = replace(cfg, train=replace(cfg.train, max_seconds=max_seconds, seed=seed))
    t0 = time.monotonic()
    forecaster = fit_forecaster(panel, split, cfg)
    fit_s = time.monotonic() - t0
    origins = test_origins(panel, split, cfg.window, cfg.horizon, stride=1)
    arrays, raw = forecaster.predict_panel(panel, origins)
    shifted, shifts = inject(panel, split, np.random.default_rng(seed))
    s_arrays, s_raw = forecaster.predict_panel(shifted, origins)
    freq_us = panel.freq_ns // 1000
    per_day = 86_400_000_000 / freq_us
    out: dict = {"series": int(panel.n_series), "fit_s": round(fit_s, 1), "steps": {}}
    for step in STEPS:
        rows = step_rows(panel, arrays, raw, step)
        code = np.sign(rows["y"] - rows["yhat_upper"]).clip(0) - np.sign(
            rows["yhat_lower"] - rows["y"]
        ).clip(0)
        days = len(rows) / per_day
        srows = step_rows(shifted, s_arrays, s_raw, step)
        _, excess = breach_codes(rows["y"], rows["yhat_lower"], rows["yhat_upper"])
        rec: dict = {
            "series_days": round(days, 1),
            "p_above": round(float((code > 0).mean()), 4),
            "p_below": round(float((code < 0).mean()), 4),
            # one side, more than e widths out: what k consecutive such slots are made of
            "p_one_side_beyond": {e: round(float((excess > e).mean()) / 2, 5) for e in EXCESS},
            "k": {},
        }
        for k in KS:
            for e in EXCESS:
                false = judge(rows, k, freq_us, step, e)
                caught, delays, echo = 0, [], 0
                found = judge(srows, k, freq_us, step, e)
                for sid, at, _ in shifts:
                    lo, hi = at * freq_us, (at + SHIFT) * freq_us
                    mine = [a for a in found if a.series_id == sid]
                    hits = [a for a in mine if lo <= a.started_at < hi]
                    # alerts of the shifted series starting in the 2 h after it: its echo
                    echo += sum(hi <= a.started_at < hi + 24 * freq_us for a in mine)
                    if hits:
                        caught += 1
                        delays.append((min(a.opened_at for a in hits) - lo) // freq_us + 1)
                rec["k"][f"{k}/{e}"] = {
                    "false_per_series_day": round(len(false) / days, 4),
                    "iid_arithmetic": round(expected_false_alerts(LEVEL, k, per_day), 5),
                    "caught": f"{caught}/{len(shifts)}",
                    "echo": echo,
                    "median_delay_slots": float(np.median(delays)) if delays else None,
                }
        out["steps"][step] = rec
        print(name, step, json.dumps(rec), flush=True)
    return out


def store_cost(url: str, n_series: int, breach_share: float = 0.2) -> dict:
    """Seconds of one ``update_alerts`` (the predict run's alert step, default rule) on a
    store holding the scored rows of every step for the 6 slots it reads, ``n_series``
    series, ``breach_share`` of the rows 1.5 widths above the band; the rows are written directly
    (not timed)."""
    from storage import open_store
    from storage.columns import ACCURACY_SCHEMA
    from storage.timeutil import us_array

    store = open_store(url)
    as_of = pd.Timestamp("2026-03-02 12:00", tz="UTC")
    slots = [as_of - pd.Timedelta("5min") * i for i in range(6)]
    rng = np.random.default_rng(0)
    ids = np.array([f"svc-{i:07d}" for i in range(n_series)], dtype=object)
    for target in slots:
        for step in range(1, 13):
            y = np.where(rng.random(n_series) < breach_share, 140.0, 100.0)
            n = n_series
            tab = pa.table(
                {
                    "series_id": ids,
                    "issued_at": us_array(
                        np.full(n, (target - step * pd.Timedelta("5min")).value // 1000)
                    ),
                    "step": np.full(n, step),
                    "target_ts": us_array(np.full(n, target.value // 1000)),
                    "model_version": np.full(n, "bench", dtype=object),
                    "y": y,
                    "yhat": np.full(n, 100.0),
                    "yhat_lower": np.full(n, 90.0),
                    "yhat_upper": np.full(n, 110.0),
                    "level": np.full(n, LEVEL),
                    "abs_error": np.abs(y - 100.0),
                    "covered": y <= 110.0,
                    "scored_at": us_array(np.full(n, as_of.value // 1000)),
                },
                schema=ACCURACY_SCHEMA,
            )
            store._write_accuracy(tab)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        store.update_alerts(as_of, 1, k=6, m=3, level=LEVEL, step=12, min_excess=1.0, quiet=12)
        times.append(time.perf_counter() - t0)
    if hasattr(store, "drop_all"):
        store.drop_all()
    store.close()
    return {"series": n_series, "update_alerts_s": round(float(np.median(times)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=NAB)
    ap.add_argument("--series", type=int, default=40, help="synthetic series")
    ap.add_argument("--days", type=float, default=20, help="synthetic days")
    ap.add_argument("--max-seconds", type=float, default=90)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--store", help="only time update_alerts on this store URL")
    args = ap.parse_args()
    if args.store:
        print(json.dumps(store_cost(args.store, args.series)))
        return
    report = {}
    if args.data.is_dir():
        df, cols = load_dataset(args.data)
        panel, _ = regularize(df, "5min", cols)
        report["nab"] = measure("nab", panel, args.max_seconds)
    frame = generate_metrics(args.series, args.days, seed=7, spikes_per_day=0.0)
    panel, _ = regularize(frame, "5min")
    report["synthetic"] = measure("synthetic", panel, args.max_seconds)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
