"""Each benchmark script still runs (toy sizes; the figures themselves live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture(autouse=True)
def _restore_environ():
    """Benchmarks name their tables through FORECAST_* variables (bench_predict_flow's
    set_tables): restore the environment, so no later test or subprocess inherits them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_inference_benchmark_runs_and_reports_rates():
    from bench.bench_inference import run_one

    r = run_one(300, repeat=1)
    assert r["series"] == 300 and r["loop_series_timed"] == 300
    for key in ("batch_per_s", "loop_per_s", "forward_only_per_s", "ratio", "peak_rss_mb"):
        assert r[key] > 0, key
    assert r["forward_only_per_s"] > r["batch_per_s"] * 0.5  # the forward pass is part of the batch


def test_predict_flow_benchmark_runs(harness, tmp_path, monkeypatch):
    from bench.bench_predict_flow import run_one

    r = run_one("sqlite", 40, str(tmp_path), repeat=2)
    assert r["series"] == 40 and r["runs"] == 2
    assert r["body_s"] >= r["read_s"] + r["write_s"]
    for key in ("read_s", "features_s", "model_s", "write_s", "score_s", "peak_rss_mb"):
        assert r[key] >= 0, key


def test_calibrate_benchmark_runs(tmp_path):
    from bench.bench_calibrate import run
    from tasks.common import forget_stores

    try:
        r = run("sqlite", 30, str(tmp_path), repeat=1)
    finally:
        forget_stores()
    # 30 series < the 2000-score window: no slot holds it, the read reaches back
    assert r["series"] == 30 and r["window_slots"] == 2016
    assert r["scores_read"] == 30 * sum(k - 1 for k in range(1, 14))  # origin -k: k-1 steps
    assert r["whole_slot_rows"] == 30 * 12 and r["calibrate_s"] > 0


@pytest.mark.slow
def test_retrain_benchmark_runs(harness, tmp_path, monkeypatch):
    from bench.bench_retrain import run_one

    monkeypatch.setenv("FORECAST_TRAIN_MAX_SECONDS", "3")
    monkeypatch.setenv("FORECAST_HIDDEN_SIZE", "16")
    r = run_one(4, str(tmp_path))
    assert r["series"] == 4 and r["wall_s"] > 0 and r["mase"] > 0 and r["naive_mase"] > 0


@pytest.mark.slow
def test_api_benchmark_runs():
    from bench.bench_api import main

    r = main({"series": 20, "requests": 3, "seconds": 1})
    assert r["series"] == 20 and r["scored_rows"] > 0
    for key in ("metrics_uncached", "metrics_cached_5s", "healthz", "latest_one_series"):
        assert r[key]["n"] == 3 and r[key]["p99_ms"] >= r[key]["p50_ms"] > 0, key
    assert r["latest_one_series"]["bytes"] > 0 and r["predict_per_s_1_client"] > 0


def test_run_py_writes_the_documented_json(tmp_path):
    from bench.run import main

    out = tmp_path / "b.json"
    result = main(["--only", "batch", "--sizes", "200", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    row = data["batch_vs_loop"]["200"]
    assert {"batch_per_s", "loop_per_s", "ratio", "forward_only_per_s"} <= set(row)
    assert {"cores", "cpu"} <= set(data["machine"]) and isinstance(data["commit"], str)


@pytest.mark.slow
def test_served_predict_benchmark_runs(tmp_path):
    """A served deployment against its own local Prefect server (no harness)."""
    from bench.bench_served import run_one

    r = run_one("sqlite", 30, str(tmp_path), repeat=1)
    assert r["series"] == 30 and r["runs"] == 1
    assert 0 < r["body_s"] <= r["run_s"] <= r["trigger_to_done_s"], r


def test_registry_benchmark_runs_on_the_folder_and_sqlite():
    from bench.bench_registry import run

    rows = run(repeat=1, hiddens=(8,), kinds=("folder", "sqlite"))
    assert [r["kind"] for r in rows] == ["folder", "sqlite"]
    for r in rows:
        assert r["version_bytes"] > 0
        assert min(r["save_s"], r["load_s"], r["promote_s"], r["champion_s"]) >= 0


def test_common_medians():
    from bench.common import flow_medians, medians

    rows = [{"a": 1.0, "b": 5.0}, {"a": 3.0, "b": 4.0}, {"a": 2.0, "b": 9.0}]
    assert medians(rows) == {"a": 2.0, "b": 5.0} and medians(rows, ["b"]) == {"b": 5.0}
    runs = [{"seconds": s, "timings": {"read_s": s / 2}} for s in (4.0, 2.0, 6.0)]
    assert flow_medians(runs) == {"body_s": 4.0, "read_s": 2.0}


def test_shard_read_benchmark_runs(tmp_path):
    from bench.bench_shard_read import run

    r = run("parquet", 300, str(tmp_path), [1, 2])
    reads = {(x["shards"], x["mode"]): x for x in r["reads"]}
    assert set(reads) == {(1, "whole"), (2, "mask"), (2, "pushdown")}
    # both ways of reading a shard return the same number of rows, about half the window
    assert reads[2, "mask"]["rows"] == reads[2, "pushdown"]["rows"]
    assert 0 < reads[2, "pushdown"]["rows"] < reads[1, "whole"]["rows"]
    assert all(x["read_s"] > 0 and x["peak_rss_mb"] > 0 for x in reads.values())


@pytest.mark.slow
def test_sharded_benchmark_runs(tmp_path):
    from bench.bench_sharded import run

    r = run("parquet", 60, str(tmp_path), [2], repeat=1)
    two = r["by_shards"][2]
    assert two["runs"] == 2 and len(two["shard_peak_rss_mb_each"]) == 2
    for key in ("slot_wall_s", "shard_body_s", "shard_read_s", "shard_startup_s"):
        assert two[key] > 0, key


@pytest.mark.postgres
def test_pg_copy_benchmark_runs_both_formats():
    from forecast_test_support import require_postgres

    require_postgres()
    import storage.dialect_postgres as pgd
    from bench.bench_pg_copy import run

    r = run(50, 1)
    assert r["rows"] == 600 and set(r["runs"]) == {"binary", "csv"}
    assert all(len(v) == 1 and v[0] > 0 for v in r["runs"].values())
    assert r["ratio"] == r["binary_s"] / r["csv_s"]
    assert pgd.COPY_BINARY is True  # the switch is restored for the rest of the process
