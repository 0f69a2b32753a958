"""Model registry benchmark: saving, loading and promoting one version on each kind.

Kinds: the folder (embedded default), SQLite, PostgreSQL and MariaDB tables (the servers
on 127.0.0.1 when they answer; ``REGISTRY_BENCH_PG_URL`` / ``REGISTRY_BENCH_MARIADB_URL``).
The model is the job's default network (hidden 64, 2 layers, the default features: about
0.2 MB of weights) and, with ``--hidden 256``, a larger one. Each figure is the median of
``--repeat`` runs:

* ``save_s``: `Registry.save` (encode the five files, hash them, write: fsynced files
  and a rename, or one transaction);
* ``load_s``: `Registry.load` of that version (read every file, verify every hash, build
  the network on CPU), what each served predict run does once;
* ``promote_s``: `Registry.promote` (load and verify, then move the pointer);
* ``champion_s``: reading the champion pointer.

    python bench/bench_registry.py [--repeat 10] [--hidden 64 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstm import (  # noqa: E402
    FeatureScaler,
    FeatureSpec,
    Forecaster,
    LSTMConfig,
    LSTMModel,
    ModelRegistry,
    Registry,
    TargetScaler,
)
from lstm.intervals import ConformalIntervals  # noqa: E402
from storage import SqlRegistryBackend  # noqa: E402

PG_URL = os.environ.get(
    "REGISTRY_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get(
    "REGISTRY_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


def forecaster(hidden: int, seed: int = 0) -> Forecaster:
    """The default job's network shape (untrained weights: size is what is measured)."""
    rng = np.random.default_rng(seed)
    spec = FeatureSpec(exog=("error_rate",))
    cfg = LSTMConfig(
        input_size=spec.input_size,
        hidden_size=hidden,
        num_layers=2,
        horizon=spec.horizon,
        future_size=spec.future_size,
        decoder_hidden=hidden,
    )
    model = LSTMModel(cfg).eval()
    fs = FeatureScaler().fit(spec.exog, rng.normal(0.01, 0.005, (200, 1)))
    intervals = ConformalIntervals.fit(
        rng.normal(0, 0.2, (2000, spec.horizon)), rng.normal(3, 1, 2000), n_bins=4
    )
    return Forecaster(spec, model, TargetScaler(), fs, intervals)


def _answers(url: str) -> bool:
    try:
        Registry(SqlRegistryBackend(url, f"probe{uuid.uuid4().hex[:6]}_")).backend.drop_all()
        return True
    except Exception:
        return False


def registries(root: Path, kinds: list[str]) -> dict[str, Registry]:
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    out: dict[str, Registry] = {}
    for kind in kinds:
        if kind == "folder":
            out[kind] = ModelRegistry(root / "models")
        elif kind == "sqlite":
            out[kind] = Registry(SqlRegistryBackend(f"sqlite:///{root / 'registry.db'}", prefix))
        elif kind in ("postgres", "mariadb"):
            url = PG_URL if kind == "postgres" else MARIADB_URL
            if _answers(url):
                out[kind] = Registry(SqlRegistryBackend(url, prefix))
            else:
                print(f"{kind}: not reachable, skipped", file=sys.stderr)
    return out


def _median(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def run_one(reg: Registry, hidden: int, repeat: int) -> dict:
    f = forecaster(hidden)
    save_s, version = _median(lambda: reg.save(f), repeat)
    load_s, _ = _median(lambda: reg.load(version), repeat)
    promote_s, _ = _median(lambda: reg.promote(version, "bench"), repeat)
    champion_s, _ = _median(reg.champion, repeat)
    size = sum(len(b) for b in reg.files(version).values())
    return {
        "kind": reg.kind,
        "hidden": hidden,
        "version_bytes": size,
        "save_s": round(save_s, 4),
        "load_s": round(load_s, 4),
        "promote_s": round(promote_s, 4),
        "champion_s": round(champion_s, 5),
        "repeat": repeat,
    }


def run(repeat: int = 10, hiddens=(64,), kinds=("folder", "sqlite", "postgres", "mariadb")):
    root = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    regs = registries(root, list(kinds))
    results = []
    try:
        for hidden in hiddens:
            for kind, reg in regs.items():
                r = run_one(reg, hidden, repeat)
                results.append(r)
                print(
                    f"{kind:<8} hidden {hidden:>4} ({r['version_bytes'] / 1e6:.2f} MB): "
                    f"save {r['save_s'] * 1e3:7.1f} ms  load {r['load_s'] * 1e3:7.1f} ms  "
                    f"promote {r['promote_s'] * 1e3:7.1f} ms  champion "
                    f"{r['champion_s'] * 1e3:6.2f} ms",
                    flush=True,
                )
    finally:
        for reg in regs.values():
            if isinstance(reg.backend, SqlRegistryBackend):
                reg.backend.drop_all()
                reg.backend.close()
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--hidden", type=int, nargs="*", default=[64])
    ap.add_argument("--kinds", nargs="*", default=["folder", "sqlite", "postgres", "mariadb"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    results = run(args.repeat, args.hidden, args.kinds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
