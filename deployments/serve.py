"""Serve the predict and retrain schedules from one process (`forecast serve`).

With no Prefect API configured (PREFECT_API_URL unset), a local Prefect server is started
on 127.0.0.1, waited on until healthy, used for the schedules, and stopped on exit: one
command runs the whole job on a laptop. With PREFECT_API_URL set, that server is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from deployments import prefect_home
from flows.predict import predict
from flows.retrain import retrain
from tasks.settings import get_settings

log = logging.getLogger("deployments.serve")


def one_at_a_time() -> ConcurrencyLimitConfig:
    """At most one run of a deployment at a time; a run due while one is active is
    cancelled (the next scheduled run catches up its slot)."""
    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def build_deployments(predict_interval: int | None = None, retrain_interval: int | None = None):
    """The two served deployments with their schedules and concurrency limits."""
    settings = get_settings()
    return [
        predict.to_deployment(
            name="predict",
            interval=predict_interval or settings.predict_interval_s,
            concurrency_limit=one_at_a_time(),
            description="Forecast the next hour of every series from the last complete slot.",
            tags=["lstm-forecast"],
        ),
        retrain.to_deployment(
            name="retrain",
            interval=retrain_interval or settings.retrain_interval_s,
            concurrency_limit=one_at_a_time(),
            description="Retrain, compare with the champion and baselines, promote if better.",
            tags=["lstm-forecast"],
        ),
    ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(
    api_url: str, timeout: float = 180.0, proc: subprocess.Popen | None = None
) -> None:
    """Poll `<api>/health` until it answers 200 (or the server process dies)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the local Prefect server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {api_url} not healthy after {timeout:.0f}s ({last})")


@contextlib.contextmanager
def local_prefect_server(home: Path | None = None, timeout: float = 180.0) -> Iterator[str]:
    """Start `prefect server start` on 127.0.0.1 and a free port; yield its API URL; stop it."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": api_url}
    env.pop("PREFECT_API_URL", None)
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(home.resolve())
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log.info(
        "starting a local Prefect server on 127.0.0.1:%d (UI: http://127.0.0.1:%d)", port, port
    )
    # the server's output goes to a file, never to an unread pipe (a full pipe would block
    # a server that runs for days); its tail is quoted if the server fails to start
    log_dir = home if home is not None else Path(tempfile.mkdtemp(prefix="prefect-server-"))
    log_path = log_dir / "prefect-server.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        try:
            wait_healthy(api_url, timeout, proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = log_path.read_bytes()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{exc}; server log {log_path}:\n{tail}") from exc
        log.info("local Prefect server healthy at %s", api_url)
        yield api_url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log_file.close()
        log.info("local Prefect server stopped (its log: %s)", log_path)


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The configured Prefect API, or a local server for the duration of the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    home = prefect_home(get_settings().models_dir)
    with (
        local_prefect_server(home) as url,
        advertised(home, url),
        temporary_settings(updates={PREFECT_API_URL: url}),
    ):
        os.environ["PREFECT_API_URL"] = url  # for subprocesses the runner starts
        try:
            yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)


@contextlib.contextmanager
def advertised(home: Path, url: str) -> Iterator[None]:
    """Record a running server's API URL in `<home>/api-url` (atomically) while the block
    runs, so CLI commands on this machine reuse it (`deployments.use_local_prefect`)."""
    url_file, tmp = home / "api-url", home / ".api-url.tmp"
    tmp.write_text(url + "\n")
    os.replace(tmp, url_file)
    try:
        yield
    finally:
        url_file.unlink(missing_ok=True)


def main(predict_interval: int | None = None, retrain_interval: int | None = None) -> None:
    """Serve both schedules until interrupted."""
    from prefect import serve

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_api() as url:
        log.info("serving predict and retrain against %s", url)
        serve(*build_deployments(predict_interval, retrain_interval))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
