"""The storage benchmark runs end to end at a toy size (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_storage.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_storage", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_run_at_toy_size(bench):
    report = bench.run(quick=True, sizes=(40,), backends=("parquet", "sqlite"), repeats=2)
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert [r["backend"] for r in report["results"]] == ["parquet", "sqlite"]
    for r in report["results"]:
        assert r["rows_read"] == 40 * 36
        assert r["rows_written"] == 40 * 12
        assert r["read_s"] > 0 and r["write_s"] > 0 and r["runs"] == 2
    text = bench.table(report)
    assert "| parquet | 40 | 1,440 |" in text
    json.dumps(report)  # serialisable for bench/run.py


def test_bench_cli_writes_json(bench, tmp_path):
    out = tmp_path / "r.json"
    assert bench.main(["--sizes", "20", "--backends", "parquet", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["results"][0]["n_series"] == 20
