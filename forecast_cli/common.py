"""What every `forecast` command shares: logging (one-line errors, tracebacks to a file),
the settings, local folders, the Prefect home, running a flow, strict JSON, failing."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

OUR_LOGGERS = ("lstm", "storage", "deployments", "api", "forecast_cli")


def _setup_logging(verbose: bool, flows: bool = False) -> None:
    """Our packages' logs on stderr.

    flows=True (train, predict, backfill): the run's log is streamed. Prefect's console
    handler on the root logger prints it, our libraries' lines included (they propagate;
    inside a run Prefect also sends them to the run's log in its database).
    Otherwise: INFO with -v, else warnings only, through a handler of our own
    (`logging.basicConfig` would do nothing: importing Prefect already configured the root
    logger).
    """
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not getattr(h, "_forecast_cli", False)]
        if flows:
            logger.setLevel(logging.INFO)
            logger.propagate = True
            continue
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._forecast_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
        logger.propagate = False


def _settings():
    from tasks.settings import get_settings

    return get_settings()


StoreAfter = Annotated[
    str | None,
    typer.Option("--store", help="As the global --store; it may also follow the command."),
]
ModelsAfter = Annotated[
    str | None,
    typer.Option("--models", help="As the global --models; it may also follow the command."),
]


def apply_locations(store: str | None, models: str | None) -> None:
    """`--store` / `--models` become the FORECAST_* settings the flows read (never flow
    parameters: a URL's password must not reach the Prefect UI)."""
    if store:
        os.environ["FORECAST_STORE_URL"] = store
    if models:
        set_registry_env(models)


def locations(command: Callable[..., Any]) -> Callable[..., Any]:
    """Let the global `--store` / `--models` also follow `command`: `forecast predict
    --store URL` works as `forecast --store URL predict` (an option after the command
    wins). Typer reads the wrapper's signature: the command's own options, then these two."""
    sig = inspect.signature(command, eval_str=True)
    extra = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
        for n, a in (("store", StoreAfter), ("models", ModelsAfter))
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, store: str | None = None, models: str | None = None, **kw: Any):
        apply_locations(store, models)
        return command(*args, **kw)

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    return wrapper


def set_registry_env(models: str) -> None:
    """`--models`: a URL (or 'store') becomes FORECAST_MODELS_URL, a folder
    FORECAST_MODELS_DIR; the option wins over whichever of them named another registry."""
    from tasks.settings import STORE_DB, looks_like_url

    if looks_like_url(models) or models.strip() == STORE_DB:
        os.environ["FORECAST_MODELS_URL"] = models
        if looks_like_url(os.environ.get("FORECAST_MODELS_DIR", "")):
            del os.environ["FORECAST_MODELS_DIR"]
    else:
        os.environ["FORECAST_MODELS_DIR"] = models
        os.environ.pop("FORECAST_MODELS_URL", None)


def _ensure_local_dirs(settings, store: bool = True) -> None:
    """Create ./data (or wherever the embedded defaults point) before first use: the
    models folder (a folder registry), and with `store` (only commands that write metrics) the SQLite file's
    folder; a command that only reads must not create an empty database at a typo."""
    url = settings.store_url
    if store and url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if settings.models_url is None:  # a folder registry (a database one needs no folder)
        settings.models_dir.mkdir(parents=True, exist_ok=True)


def _prefect_home() -> None:
    """Before Prefect is imported: reuse `forecast serve`'s server, else its database."""
    from deployments import use_local_prefect

    typer.echo(f"Prefect: {use_local_prefect(_settings().models_dir)}", err=True)


class _OneLine(logging.Formatter):
    """Wraps the console's formatter: the message without its traceback (the traceback
    goes to the CLI's log file). The record is restored, so Prefect's API handler still
    stores the full traceback in the run's log."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _tracebacks_to_file() -> Path:
    """Console lines without tracebacks; every record, tracebacks included, appended to
    `<data>/logs/forecast-cli.log` (next to the models folder)."""
    path = _settings().models_dir.expanduser().resolve().parent / "logs" / "forecast-cli.log"
    root = logging.getLogger()
    for h in root.handlers:
        console = isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        if console and not isinstance(h.formatter, _OneLine):
            h.setFormatter(_OneLine(h.formatter))
    if not any(getattr(h, "_forecast_cli_file", False) for h in root.handlers):
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.setLevel(logging.INFO)
        fh._forecast_cli_file = True  # type: ignore[attr-defined]
        root.addHandler(fh)
    return path


def _run_flow(fn, **params):
    """Run a flow in this process; storage and model errors, and a run that forecast too
    little, become a one-line error (exit code 2)."""
    from lstm import ForecastError
    from storage import StorageError
    from tasks.predict_tasks import ForecastShortfall

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    log_file = _tracebacks_to_file()
    try:
        return fn(**{k: v for k, v in params.items() if v is not None})
    except (ForecastError, StorageError, ValueError, ForecastShortfall) as exc:
        from storage import redact_text

        fail(f"{redact_text(str(exc))} (traceback: {log_file})")
    except RuntimeError as exc:
        if "ephemeral Prefect API" not in str(exc):
            raise
        wait = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
        fail(
            f"the temporary Prefect server did not answer within {wait} s (a busy machine?). "
            "Keep one running instead: `forecast serve` (CLI commands reuse it), or start "
            "`prefect server start` and set PREFECT_API_URL; or raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        )


def _since(value: str | None):
    """`24h`, `7d`, `90min` (that long before now) or a timestamp (UTC); None: everything."""
    import pandas as pd

    if value is None:
        return None
    try:
        return pd.Timestamp.now(tz="UTC") - pd.Timedelta(value)
    except ValueError:
        pass
    try:
        ts = pd.Timestamp(value)
    except ValueError:
        fail(f"--since {value!r}: give a duration (24h, 7d) or a timestamp (2026-12-01T00:00)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _strict(obj):
    """JSON-safe: NaN and infinities become null (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def _echo_json(obj) -> None:
    typer.echo(json.dumps(_strict(obj), indent=2, default=str, allow_nan=False))


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
