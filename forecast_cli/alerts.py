"""`forecast alerts`: the breach alerts the predict runs keep (storage.alerts)."""

from __future__ import annotations

from typing import Annotated

import typer

from forecast_cli.common import _echo_json, _settings, _since, fail

#: Columns of the table `forecast alerts` prints (all of them with --json).
SHOWN = (
    "series_id",
    "direction",
    "status",
    "started_at",
    "last_breach_at",
    "resolved_at",
    "slots_breached",
    "max_excess",
    "level",
    "model_version",
)


def alerts(
    open_only: Annotated[bool, typer.Option("--open", help="Only alerts still open.")] = False,
    series: Annotated[
        list[str] | None,
        typer.Option("--series", help="Only this series (repeat for several)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only alerts active since: open, or resolved after this (a duration such as "
            "24h, or a timestamp).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON rows instead of a table.")
    ] = False,
) -> None:
    """Breach alerts, newest first: series whose actuals left the forecast's interval for k
    consecutive slots (FORECAST_ALERT_SLOTS), open or resolved, with how far outside (in
    interval widths). Predict runs open, grow and resolve them."""
    from storage import StorageError
    from tasks.alert_tasks import records
    from tasks.common import get_store

    try:
        store = get_store(_settings(), create=False)
        table = store.read_alerts(
            open_only=open_only, series_ids=series or None, since=_since(since)
        )
    except StorageError as exc:
        fail(str(exc))
    if as_json:
        _echo_json(records(table))
        return
    if table.empty:
        what = "open breach alerts" if open_only else "breach alerts"
        typer.echo(f"no {what}: predict runs open one when a series leaves its forecast band")
        return
    shown = table[list(SHOWN)].copy()
    for col in ("started_at", "last_breach_at", "resolved_at"):
        shown[col] = shown[col].dt.strftime("%Y-%m-%d %H:%M").fillna("-")
    typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
