"""Schedules and the process environment every flow-running process needs.

Importing this package (the CLI does, before anything imports Prefect) sets RUN_ENV as
defaults: Prefect then sends the `lstm` and `storage` libraries' log lines (training
progress, data repairs) to the run's log through its own PREFECT_LOGGING_EXTRA_LOGGERS
handler. Work-pool runs get the same values from prefect.yaml's job_variables.
"""

import os

RUN_ENV = {
    "PREFECT_LOGGING_EXTRA_LOGGERS": "lstm,storage",
    # the libraries also log outside flow runs (the CLI's backtest, a notebook): not an error
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
for _key, _value in RUN_ENV.items():
    os.environ.setdefault(_key, _value)
