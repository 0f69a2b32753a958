"""Schedules and the process environment every flow-running process needs.

Importing this package (the CLI does, before anything imports Prefect) sets RUN_ENV as
defaults: Prefect then sends the `lstm` and `storage` libraries' log lines (training
progress, data repairs) to the run's log through its own PREFECT_LOGGING_EXTRA_LOGGERS
handler. Work-pool runs get the same values from prefect.yaml's job_variables.
"""

import os
from pathlib import Path

RUN_ENV = {
    "PREFECT_LOGGING_EXTRA_LOGGERS": "lstm,storage",
    # the libraries also log outside flow runs (the CLI's backtest, a notebook): not an error
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
for _key, _value in RUN_ENV.items():
    os.environ.setdefault(_key, _value)


def prefect_home(models_dir: os.PathLike[str] | str) -> Path:
    """The one Prefect home of a deployment on one machine: next to the models folder
    (`data/prefect` by default). `forecast serve` runs its server there and records its API
    URL in `api-url`; CLI commands reuse that server while it runs, else their temporary
    server opens the same database, so every run shows in the same UI."""
    return Path(models_dir).expanduser().resolve().parent / "prefect"


def use_local_prefect(models_dir: os.PathLike[str] | str) -> str:
    """Point this process at the machine's one Prefect home, before Prefect is imported:
    the running `forecast serve` server if its `api-url` answers, else PREFECT_HOME. A
    configured PREFECT_API_URL (or an already imported Prefect) is left alone. Returns what
    was chosen, for the CLI to say."""
    import sys
    import urllib.request

    if os.environ.get("PREFECT_API_URL"):
        return f"the configured Prefect API {os.environ['PREFECT_API_URL']}"
    if "prefect" in sys.modules:
        return "the Prefect settings of this process"
    home = prefect_home(models_dir)
    url_file = home / "api-url"
    if url_file.is_file():
        url = url_file.read_text().strip()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310 - loopback URL we wrote
                if resp.status == 200:
                    os.environ["PREFECT_API_URL"] = url
                    return f"the running `forecast serve` server at {url}"
        except OSError:
            pass  # a stale file: serve is not running
    os.environ.setdefault("PREFECT_HOME", str(home))
    # Prefect waits 20 s for its temporary server by default: too little on a loaded
    # 2-core machine (the first start also migrates the database)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    home.mkdir(parents=True, exist_ok=True)
    return f"a temporary Prefect server on the database in {home}"
