# lstm-forecast: every target that needs the virtual environment creates it first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The CPU build of torch lies on this machine's disk; install it before the project so the
# project's torch range is already satisfied and pip never pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
# The distribution was called lstm-forecast before (PyPI gives that name to another project):
# setup removes that entry from an older .venv, then installs lstm-forecast-sre from here.

.PHONY: setup demo test test-soak bench bench-quick lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip uninstall --quiet --yes lstm-forecast 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m forecast_cli.demo

test: setup
	$(BIN)/python -m pytest -q -m "not soak"

test-soak: setup
	$(BIN)/python -m pytest -q -m soak

bench: setup
	$(BIN)/python bench/run.py --json bench/results/latest.json

bench-quick: setup
	$(BIN)/python bench/run.py --quick --json bench/results/quick.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
