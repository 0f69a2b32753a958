"""Every benchmark figure of the job into one JSON file, comparable across commits.

    python bench/run.py --json bench/results/latest.json           # full: up to 100,000 series
    python bench/run.py --quick --json bench/results/quick.json    # up to 10,000 series, minutes
    python bench/run.py --only batch --json out.json               # one part

Each measurement runs in its own process (clean peak RSS). Output keys: batch_vs_loop,
predict_flow, retrain, machine, commit (series counts as string keys).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import commit, machine, run_isolated  # noqa: E402

PARTS = ("batch", "predict", "served", "retrain")


def pg_available() -> bool:
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:5432/test", connect_args={"connect_timeout": 3}
        )
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", type=Path, required=True, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="stop at 10,000 series (a few minutes)")
    ap.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    ap.add_argument("--sizes", type=int, nargs="*", help="override the series counts")
    args = ap.parse_args(argv)
    parts = args.only or list(PARTS)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    result: dict = {"machine": machine(), "commit": commit(), "quick": args.quick}
    root = Path(tempfile.mkdtemp(prefix="lstm-forecast-bench-"))

    if "batch" in parts:
        result["batch_vs_loop"] = {}
        for n in sizes:
            r = run_isolated("bench.bench_inference", {"series": n})
            result["batch_vs_loop"][str(n)] = r
            print(
                f"batch_predict {n:>7} series: {r['batch_per_s']:>10,.0f}/s  loop {r['loop_per_s']:>7,.0f}/s "
                f"(x{r['ratio']:,.0f})  forward-only {r['forward_only_per_s']:>10,.0f}/s "
                f"(batch/forward {r['batch_over_forward']:.2f})  peak {r['peak_rss_mb']:,.0f} MiB",
                flush=True,
            )

    if "predict" in parts:
        backends = ["sqlite", "parquet"] + (["postgres"] if pg_available() else [])
        result["predict_flow"] = {b: {} for b in backends}
        for n in sizes:
            for b in backends:
                r = run_isolated(
                    "bench.bench_predict_flow",
                    {"backend": b, "series": n, "root": str(root)},
                    timeout=7200,
                )
                result["predict_flow"][b][str(n)] = r
                print(
                    f"predict {b:<8} {n:>7} series: body {r['body_s']:.2f}s (read {r['read_s']:.2f}, "
                    f"features {r['features_s']:.2f}, model {r['model_s']:.2f}, write {r['write_s']:.2f}, "
                    f"score {r['score_s']:.2f})  peak {r['peak_rss_mb']:,.0f} MiB",
                    flush=True,
                )

    if "served" in parts:  # Prefect's own overhead: a served deployment on a local server
        result["served"] = {}
        for b in ["sqlite", "parquet"] + (["postgres"] if pg_available() else []):
            n = 10_000
            r = run_isolated(
                "bench.bench_served", {"backend": b, "series": n, "root": str(root)}, timeout=7200
            )
            result["served"].setdefault(b, {})[str(n)] = r
            print(
                f"served predict {b:<8} {n:>7} series: run {r['run_s']:.2f}s (body {r['body_s']:.2f}s), "
                f"trigger to done {r['trigger_to_done_s']:.2f}s",
                flush=True,
            )

    if "retrain" in parts:
        result["retrain"] = {}
        for n in [100] if args.quick else [100, 1_000]:
            r = run_isolated(
                "bench.bench_retrain",
                {"series": n, "root": str(root), "protocol_full_data": n == 100 and not args.quick},
                timeout=4 * 3600,
            )
            result["retrain"][str(n)] = r
            print(
                f"retrain {n:>5} series x 30 days: {r['wall_s']:.0f}s, peak {r['peak_rss_mb']:,.0f} MiB, "
                f"protocol MASE {r['mase']:.3f} (naive {r['naive_mase']:.3f})",
                flush=True,
            )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
