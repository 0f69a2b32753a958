"""The `forecast` command line: everything a user does by hand."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from forecast_cli.alerts import alerts
from forecast_cli.api_cmd import api as api_command
from forecast_cli.common import (
    _echo_json,
    _ensure_local_dirs,
    _prefect_home,
    _run_flow,
    _settings,
    _setup_logging,
    _since,
    apply_locations,
    fail,
    locations,
)
from forecast_cli.models import export, models, promote

app = typer.Typer(
    help="Forecast 5-minute request metrics with a global LSTM: backtest, train, predict, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

app.command("api")(locations(api_command))

DEMO_BLOCK_ROWS = 1_000_000


@app.callback()
def main_options(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="FORECAST_STORE_URL",
            show_envvar=True,
            help="Where metrics and forecasts live: a SQLAlchemy URL or a Parquet folder. "
            "Default: sqlite:///data/forecast.db",
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Model registry: a folder, or a database URL (sqlite:///models.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db) or 'store' "
            "(the store's database). Default: env FORECAST_MODELS_URL, else "
            "FORECAST_MODELS_DIR, else data/models",
        ),
    ] = None,
) -> None:
    """Global options: where the store and the model registry live."""
    # Flows read these through the settings object (env FORECAST_*), so a URL with a
    # password never becomes a flow-run parameter visible in the Prefect UI.
    apply_locations(store, models)
    ctx.obj = {"store": store, "models": models}


@app.command()
def backtest(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Long CSV/Parquet file, or a folder of timestamp,value CSVs (one per series).",
        ),
    ],
    freq: Annotated[str, typer.Option(help="Grid of the series.")] = "5min",
    horizon: Annotated[int, typer.Option(min=1, help="Steps to forecast from each origin.")] = 12,
    id_col: Annotated[str, typer.Option("--id-col", help="Series id column.")] = "series_id",
    time_col: Annotated[
        str, typer.Option("--time-col", help="Timestamp column (folder mode: 'timestamp').")
    ] = "ts",
    target_col: Annotated[str, typer.Option("--target-col", help="Target column.")] = "value",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full report as JSON here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG comparing the models here.")
    ] = None,
    max_seconds: Annotated[
        float,
        typer.Option(
            "--max-seconds",
            help="Wall-clock budget of the whole fit: feature ranking, early stopping (half), "
            "interval calibration and the refit on train + validation.",
        ),
    ] = 300.0,
    seed: Annotated[
        int, typer.Option(help="Random seed (same seed, same data -> same result).")
    ] = 0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log training progress.")
    ] = False,
) -> None:
    """Run the accuracy protocol (../shared/BENCHMARK_PROTOCOL.md): LSTM vs Naive and
    SeasonalNaive on a 70/10/20 split with rolling 12-step origins; print a table."""
    _setup_logging(verbose)
    from dataclasses import replace

    from lstm import (
        ColumnNames,
        ForecastConfig,
        ForecastError,
        load_dataset,
        plot_metrics_comparison,
        regularize,
    )
    from lstm.backtest import format_table, report_json, run_backtest

    try:
        df, cols = load_dataset(data, ColumnNames(id_col, time_col, target_col))
        panel, prep = regularize(df, freq, cols, strict=True)
        cfg = ForecastConfig()
        cfg = replace(cfg, train=replace(cfg.train, max_seconds=max_seconds, seed=seed))
        typer.echo(
            f"backtest on {data}: {panel.n_series} series, training (budget {max_seconds:g}s) ...",
            err=True,
        )
        report = run_backtest(
            df, freq, horizon, cols, cfg, dataset=data.name, panel=panel, prep=prep
        )
    except ForecastError as exc:
        fail(str(exc))
    typer.echo(format_table(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report_json(report))
        typer.echo(f"report written to {json_out}", err=True)
    if plot is not None:
        plot_metrics_comparison(
            {name: m["avg"] for name, m in report["models"].items()},
            plot,
            title=f"{report['dataset']}: avg over {horizon} steps",
        )
        typer.echo(f"plot written to {plot}", err=True)


@app.command("demo-data")
@locations
def demo_data(
    series: Annotated[int, typer.Option("--series", help="Number of series.")] = 50,
    days: Annotated[
        float, typer.Option("--days", help="Days of 5-minute history, ending now.")
    ] = 14,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Write synthetic request metrics (daily/weekly seasonality, bursts, error_rate) into
    the configured store, ending at the last complete 5-minute slot. Streams: the rows are
    generated and written a block of slots at a time, so memory stays bounded (100,000
    series x 30 days fit on a laptop)."""
    import time

    import pandas as pd

    from lstm import MetricsGenerator
    from lstm.slots import last_complete_slot
    from storage import StorageError
    from tasks.common import get_store

    settings = _settings()
    _ensure_local_dirs(settings)
    if series < 1 or days <= 0:
        fail(f"--series must be >= 1 and --days > 0 (got {series} and {days:g})")
    end = last_complete_slot(pd.Timestamp.now(tz="UTC"), settings.freq)
    slots = int(pd.Timedelta(days=days) / pd.Timedelta(settings.freq))
    start = end - pd.Timedelta(settings.freq) * (slots - 1)
    typer.echo(f"generating {series} series x {slots} slots ({start} .. {end}) ...", err=True)
    gen = MetricsGenerator(series, days, settings.freq, seed, start=start)
    # blocks of whole hours, about a million rows each (at most a day)
    block = max(12, min(288, (DEMO_BLOCK_ROWS // series) // 12 * 12))
    n, t0, shown = 0, time.monotonic(), 0.0
    try:
        store = get_store(settings)
        for frame in gen.blocks(block):
            n += store.write_metrics(frame)
            done = n / (series * slots)
            if done - shown >= 0.1 and done < 1:
                shown = done
                typer.echo(f"  {done:.0%} ({n:,} rows, {time.monotonic() - t0:.0f}s)", err=True)
    except StorageError as exc:
        fail(str(exc))
    typer.echo(
        f"wrote {n} metric rows to {store.describe()['url']} (table {settings.metrics_table})"
    )


@app.command()
@locations
def train(
    history_days: Annotated[
        float | None, typer.Option(help="Days of history to train on (default 30).")
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-seconds",
            help="Wall-clock budget of the whole fit (ranking, early stopping, calibration, "
            "refit); default FORECAST_TRAIN_MAX_SECONDS (600).",
        ),
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="Relative MASE gain needed to replace the champion.")
    ] = None,
    history_end: Annotated[
        datetime | None,
        typer.Option(
            "--history-end",
            help="Last slot of the history (UTC); default: the last complete slot now.",
        ),
    ] = None,
) -> None:
    """Run the retrain flow: train a challenger on a sample of series, compare it with the
    champion and the baselines on the most recent day of series it never saw, register it,
    promote it if it wins."""
    _prefect_home()
    from flows.retrain import retrain

    _setup_logging(False, flows=True)
    _ensure_local_dirs(_settings(), store=False)
    result = _run_flow(
        retrain,
        history_days=history_days,
        train_max_seconds=max_seconds,
        promotion_margin=margin,
        history_end=history_end,
    )
    _echo_json(result)
    if result.get("champion") is None:
        fail(
            f"no champion: version {result['version']} was registered but not promoted "
            f"({result['reason']}). Next: `forecast promote {result['version']}` to forecast "
            "with it anyway, or train on more history (--history-days; the model needs "
            "several days of 5-minute metrics to beat the baselines)",
            code=1,
        )


@app.command()
@locations
def predict(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of", help="Forecast origin slot (UTC); default: the last complete slot."
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="Only shard INDEX/COUNT of the series (0/4: first of four)."),
    ] = None,
) -> None:
    """Run the predict flow once: forecast the next hour of every series and upsert it."""
    from storage import ConfigError, Shard

    try:
        part = Shard.parse(shard) if shard is not None else None
    except ConfigError as exc:
        fail(f"--shard: {exc}")
    _prefect_home()
    from flows.predict import predict as predict_flow

    _setup_logging(False, flows=True)
    where = {} if part is None else {"shard": part.index, "shards": part.count}
    result = _run_flow(predict_flow, as_of=as_of, **where)
    _echo_json(result)


@app.command()
@locations
def backfill(
    start: Annotated[datetime, typer.Option("--start", help="First forecast origin (UTC).")],
    end: Annotated[datetime, typer.Option("--end", help="Last forecast origin (UTC).")],
    batch_slots: Annotated[
        int | None, typer.Option(help="Slots per batch (default: sized to memory).")
    ] = None,
) -> None:
    """Write the forecasts predict would have written for every slot in [start, end]."""
    _prefect_home()
    from flows.backfill import backfill as backfill_flow

    _setup_logging(False, flows=True)
    result = _run_flow(backfill_flow, start=start, end=end, batch_slots=batch_slots)
    _echo_json(result)


@app.command()
@locations
def accuracy(
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Comma-separated groups: series_id, model_version, step, level ('' for one row).",
        ),
    ] = "model_version",
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only targets after this: a duration (24h, 7d) or a timestamp."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON rows instead of a table.")
    ] = False,
    mase: Annotated[
        bool,
        typer.Option(
            "--mase",
            help="Add MASE (each series' MAE over its one-step naive error on the same "
            "actuals); reads the scored rows, so bound it with --since on a big store.",
        ),
    ] = False,
) -> None:
    """Live accuracy of the forecasts already scored against their actuals: n, MAE, WAPE
    and interval coverage (and MASE with --mase), per group (what the predict runs score
    every 5 minutes)."""
    from lstm.evaluation import scored_mase
    from lstm.slots import freq_to_ns
    from storage import StorageError
    from tasks.common import get_store

    groups = tuple(g.strip() for g in by.split(",") if g.strip())
    try:
        settings = _settings()
        store = get_store(settings, create=False)
        table = store.read_accuracy(start=_since(since), by=groups)
        if mase and not table.empty:
            rows = store.read_accuracy_rows(start=_since(since))
            extra = scored_mase(rows, groups, freq_to_ns(settings.freq))
            if groups:
                table = table.merge(extra, on=list(groups), how="left")
            else:
                table = table.assign(mase=extra["mase"].iloc[0])
    except StorageError as exc:
        fail(str(exc))
    if as_json:
        _echo_json(table.to_dict(orient="records"))
        return
    if table.empty:
        typer.echo("no scored forecasts yet: predict runs score a forecast once its actual arrives")
        return
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


app.command("alerts")(locations(alerts))
app.command()(locations(models))
app.command()(locations(promote))
app.command()(locations(export))


@app.command()
@locations
def serve(
    predict_interval: Annotated[
        int | None, typer.Option(help="Seconds between predict runs (default 300).")
    ] = None,
    retrain_interval: Annotated[
        int | None, typer.Option(help="Seconds between retrains (default 86400).")
    ] = None,
) -> None:
    """Serve the predict and retrain schedules from this process. Without PREFECT_API_URL,
    a local Prefect server is started on 127.0.0.1 and stopped on exit."""
    from deployments.serve import main as serve_main

    _setup_logging(True)
    serve_main(predict_interval=predict_interval, retrain_interval=retrain_interval)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
