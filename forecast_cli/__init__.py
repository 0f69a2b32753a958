"""The `forecast` command line and `make demo`."""

import deployments  # noqa: F401  (sets the run environment before Prefect is imported)
