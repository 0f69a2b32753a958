"""`make demo`: the main job end to end on the embedded defaults.

Synthetic metrics -> SQLite (data/forecast.db) -> the retrain flow (champion/challenger)
-> the predict flow -> what was written, where, and the query a consumer runs.
Everything runs through Prefect (a temporary local API in this process).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

SERIES = int(os.environ.get("DEMO_SERIES", "40"))
DAYS = float(os.environ.get("DEMO_DAYS", "14"))


def main() -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("FORECAST_TRAIN_MAX_SECONDS", "60")  # keep the demo short
    store_url = os.environ.setdefault("FORECAST_STORE_URL", "sqlite:///data/forecast.db")
    t0 = time.monotonic()

    import pandas as pd

    from flows.predict import predict
    from flows.retrain import retrain
    from lstm import generate_metrics
    from lstm.slots import last_complete_slot
    from storage import redact_url
    from tasks.common import get_store
    from tasks.settings import get_settings

    settings = get_settings()
    if store_url.startswith("sqlite:///"):
        Path(store_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    if settings.models_url is None:  # a folder registry (a database one needs none)
        settings.models_dir.mkdir(parents=True, exist_ok=True)
    store = get_store(settings)

    end = last_complete_slot(pd.Timestamp.now(tz="UTC"), settings.freq)
    slots = int(pd.Timedelta(days=DAYS) / pd.Timedelta(settings.freq))
    start = end - pd.Timedelta(settings.freq) * (slots - 1)
    print(
        f"1/3 writing {SERIES} synthetic series x {slots} slots ({start:%Y-%m-%d %H:%M} .. "
        f"{end:%Y-%m-%d %H:%M} UTC) to {redact_url(store_url)}",
        flush=True,
    )
    n = store.write_metrics(generate_metrics(SERIES, DAYS, settings.freq, seed=0, start=start))
    print(f"    {n:,} metric rows", flush=True)

    print(
        f"2/3 retrain flow (whole-fit budget {settings.train_max_seconds:g}s; one line per epoch) ...",
        flush=True,
    )
    # the epoch lines come through Prefect's console handler (lstm logs at INFO; see
    # tasks.common.LIBRARY_LOGGERS), so the demo shows progress while it trains
    r = retrain()
    comp = r["comparison"]
    print(
        f"    model {r['version']}: {'PROMOTED' if r['promoted'] else 'not promoted'} ({r['reason']})"
    )
    print(
        f"    held-out MASE (avg 12 steps): lstm {comp['challenger']['MASE']:.3f}, naive "
        f"{comp['naive']['MASE']:.3f}, seasonal naive {comp['seasonal_naive']['MASE']:.3f}"
    )
    if r["champion"] is None:
        print("no champion model: the demo cannot forecast", file=sys.stderr)
        return 1

    print("3/3 predict flow ...", flush=True)
    p = predict(as_of=end.to_pydatetime(), catch_up_slots=0)
    print(
        f"    issued at {p['as_of']}: {p['series_forecast']} series, {p['written']} rows, "
        f"model {p['model_version']}, {p['n_skipped']} skipped, {p['seconds']:.2f}s"
    )

    latest = store.read_latest_forecasts(start=end + pd.Timedelta(settings.freq))
    show = latest[latest.series_id.isin(sorted(latest.series_id.unique())[:2])]
    print("\nForecasts (two series; yhat with its 80% interval):")
    print(
        show[
            ["series_id", "target_ts", "step", "yhat", "yhat_lower", "yhat_upper", "model_version"]
        ].to_string(index=False, float_format=lambda v: f"{v:,.1f}")
    )

    table = settings.forecasts_table
    sql = (
        f"SELECT series_id, target_ts, yhat, yhat_lower, yhat_upper, model_version\n"
        f"  FROM {table}_latest\n WHERE target_ts > '{end:%Y-%m-%d %H:%M:%S}+00:00'\n"
        f" ORDER BY series_id, target_ts;"
    )
    print(
        f"\nWritten to table '{table}' in {redact_url(store_url)}; models in {settings.registry_location()}."
    )
    print("A consumer reads the latest forecast per series and target time from the view:\n")
    print("  " + sql.replace("\n", "\n  "))
    if store_url.startswith("sqlite:///"):
        db = store_url[len("sqlite:///") :]
        with sqlite3.connect(db) as conn:
            count = conn.execute(
                sql.replace(
                    "series_id, target_ts, yhat, yhat_lower, yhat_upper, model_version", "count(*)"
                ).split("ORDER BY")[0]
            ).fetchone()[0]
        print(
            f'\n  -> {count} rows (run it yourself: sqlite3 {db} "SELECT * FROM {table}_latest LIMIT 5")'
        )
    print(
        "\nNext: `.venv/bin/forecast models`, `.venv/bin/forecast serve` (every 5 minutes),"
        " `.venv/bin/forecast backtest --data ../shared/data/nab-tweets`."
    )
    print(f"demo finished in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
