"""`forecast api`: the read-only HTTP API (api/) served by uvicorn."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from forecast_cli.common import _settings, _setup_logging, fail


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api(
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to bind. Default 127.0.0.1: only this machine can connect."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every request (access log).")
    ] = False,
) -> None:
    """Serve the read-only HTTP API: GET /forecasts/latest, /series/{id}/forecast,
    /healthz, /metrics (Prometheus), POST /predict (the champion) and /docs. Nothing is
    written to the store."""
    import torch
    import uvicorn
    from prometheus_client import disable_created_metrics

    from api import create_app
    from storage import redact_url
    from tasks.settings import SettingsError

    _setup_logging(True)
    try:
        settings = _settings()
    except SettingsError as exc:
        fail(str(exc))
    torch.set_num_threads(settings.predict_threads)
    disable_created_metrics()  # no `_created` twin of every counter in /metrics
    if not _loopback(host):
        typer.echo(
            f"warning: binding {host}: the API has no authentication; anyone who can reach "
            "this port can read every forecast (put it behind your ingress or a firewall)",
            err=True,
        )
    typer.echo(
        f"forecast api on http://{host}:{port} (docs: /docs), store "
        f"{redact_url(settings.store_url)}, models {settings.models_dir}",
        err=True,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info" if verbose else "warning",
        access_log=verbose,
    )
