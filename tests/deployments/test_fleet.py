"""Sharded predict on a real fleet: a local Prefect server, a process work pool, the
deployments of prefect.yaml (`prefect deploy`), two `prefect worker start` processes in
different working directories, PostgreSQL as the store. A model is trained on the pool
(the retrain deployment), then the predict-sharded parent fans 2 shards out on the pool:
the rows equal an unsharded run's. Then one shard is made to fail (its series' metrics of
the slot are missing): the other shard's rows are complete, the parent ends Failed naming
the shard, and a retry of that shard alone completes the slot.

Starts processes for ~3 minutes: runs when CI=true (required there) or with
FORECAST_TEST_FLEET=1; skipped with the reason elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from forecast_test_support import IN_CI, require_postgres

REPO = Path(__file__).resolve().parents[2]
#: The workers' model registry: "store", tables in the store's PostgreSQL database, so the
#: workers share nothing on disk (None: a folder under the test's temporary directory that
#: both workers reach).
REGISTRY: str | None = "store"
N_SERIES, DAYS = 8, 9
END = pd.Timestamp("2026-03-02 12:00", tz="UTC")
STEP = pd.Timedelta("5min")
KEY = ["series_id", "issued_at", "step"]
PARENT = """
import json, sys
from flows.predict_sharded import predict_sharded
try:
    print("RESULT " + json.dumps(predict_sharded(shards=2, as_of=sys.argv[1])))
except Exception as exc:  # the parent ended Failed: print its reason
    print("FAILED " + str(exc).replace(chr(10), " "))
"""

pytestmark = pytest.mark.slow
if not (IN_CI or os.environ.get("FORECAST_TEST_FLEET") == "1"):
    pytestmark = [
        pytest.mark.slow,
        pytest.mark.skip(
            reason="starts a Prefect server and two workers (~3 min): runs when CI=true "
            "(required there) or FORECAST_TEST_FLEET=1"
        ),
    ]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class Fleet:
    def __init__(self, root: Path, api: str, env: dict[str, str], logs: list[Path]) -> None:
        self.root, self.api, self.env, self.logs = root, api, env, logs
        self.t0 = time.monotonic()
        self.phases: list[tuple[str, float]] = []
        self.workers: list[subprocess.Popen] = []

    def wait_idle(self, timeout: float = 90) -> None:
        """Until no worker has a flow-run process left. A run's state is final before its
        worker reaps the process and frees its one slot (--limit 1); a worker whose slot is
        still taken when the shard runs are scheduled leaves both to the other worker."""
        deadline = time.monotonic() + timeout
        while busy := [w.pid for w in self.workers if _children(w.pid)]:
            assert time.monotonic() < deadline, f"workers {busy} still run a flow-run process"
            time.sleep(0.5)
        time.sleep(2)  # the worker frees its slot after reaping; it polls every second

    def mark(self, phase: str) -> None:
        """Note how long the test took to reach here (printed with -s)."""
        self.phases.append((phase, round(time.monotonic() - self.t0, 1)))
        print(f"fleet: {phase} at {self.phases[-1][1]} s", flush=True)

    def cli(self, *args: str, timeout: float = 180) -> str:
        """A command with the fleet's environment (from the repository root)."""
        res = subprocess.run(
            args, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert res.returncode == 0, f"{args}: {res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        return res.stdout

    def run_deployments(self, *calls: tuple[str, dict]) -> list:
        """Create flow runs of deployments at once and wait for all; their final runs."""
        from prefect import get_client
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            made = [run_deployment(n, parameters=p, timeout=0, as_subflow=False) for n, p in calls]
            deadline = time.monotonic() + 240
            with get_client(sync_client=True) as client:
                while True:
                    runs = [client.read_flow_run(fr.id) for fr in made]
                    if all(r.state and r.state.is_final() for r in runs):
                        return runs
                    assert time.monotonic() < deadline, [r.state for r in runs]
                    time.sleep(1)

    def parent(self, as_of: pd.Timestamp) -> tuple[str, str]:
        """Run the predict-sharded parent (in a process of its own, not on the pool: the
        workers each take one run at a time, so the two shard runs land on both)."""
        out = self.cli(sys.executable, "-c", PARENT, as_of.isoformat(), timeout=300)
        line = [x for x in out.splitlines() if x.startswith(("RESULT ", "FAILED "))][-1]
        kind, _, rest = line.partition(" ")
        return kind, rest

    def store(self):
        from storage import TableNames, open_store

        e = self.env
        tables = TableNames(
            e["FORECAST_METRICS_TABLE"], e["FORECAST_FORECASTS_TABLE"], e["FORECAST_ACCURACY_TABLE"]
        )
        return open_store(e["FORECAST_STORE_URL"], tables=tables)

    def rows(self, issued_at) -> pd.DataFrame:
        with self.store() as s:
            df = s.read_forecasts(issued_at=issued_at)
        return df[[*KEY, "yhat", "model_version"]].sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from deployments.serve import local_prefect_server
    from lstm import generate_metrics

    pg = require_postgres()
    root = tmp_path_factory.mktemp("fleet")
    suffix = uuid.uuid4().hex[:8]
    registry = pg if REGISTRY == "store" else REGISTRY or str(root / "registry")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FORECAST_"))}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_LOGGING_EXTRA_LOGGERS="lstm,storage",
        FORECAST_PROJECT_DIR=str(REPO),
        FORECAST_STORE_URL=pg,
        FORECAST_MODELS_DIR=registry,
        FORECAST_MODELS_TABLE_PREFIX=f"mr{suffix}_",
        FORECAST_METRICS_TABLE=f"fm_{suffix}",
        FORECAST_FORECASTS_TABLE=f"ff_{suffix}",
        FORECAST_ACCURACY_TABLE=f"fa_{suffix}",
        FORECAST_TRAIN_MAX_SECONDS="5",
        FORECAST_HIDDEN_SIZE="16",
        FORECAST_NUM_LAYERS="1",
        FORECAST_CATCH_UP_SLOTS="0",
        FORECAST_DATA_WAIT_SECONDS="0",
        FORECAST_STORAGE_RETRY_DELAY_S="0.2",
    )
    with local_prefect_server(root / "prefect-home", timeout=240) as api:
        env["PREFECT_API_URL"] = api
        fleet = Fleet(root, api, env, [])
        fleet.mark("server up")
        slots = int(pd.Timedelta(days=DAYS) / STEP)
        frame = generate_metrics(N_SERIES, DAYS, seed=21, start=END - STEP * (slots - 1))
        with fleet.store() as s:
            s.write_metrics(frame)
        fleet.frame = frame
        prefect = [sys.executable, "-m", "prefect"]
        fleet.cli(*prefect, "work-pool", "create", "forecast-pool", "--type", "process")
        fleet.cli(
            *prefect,
            "--no-prompt",
            "deploy",
            "-n",
            "predict-sharded",
            "-n",
            "predict-shard",
            "-n",
            "retrain",
            timeout=240,
        )
        fleet.mark("pool and deployments")
        try:
            for name in ("w1", "w2"):  # different working directories, nothing shared there
                cwd = root / name
                cwd.mkdir()
                log = cwd / "worker.log"
                fleet.logs.append(log)
                fleet.workers.append(
                    subprocess.Popen(
                        [*prefect, "worker", "start", "--pool", "forecast-pool"]
                        + ["--name", name, "--limit", "1", "--type", "process"],
                        cwd=cwd,
                        env=env,
                        stdout=open(log, "wb"),  # noqa: SIM115 - the process holds it
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            yield fleet
        finally:
            for w in fleet.workers:
                w.terminate()
            for w in fleet.workers:
                try:
                    w.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    w.kill()
            with fleet.store() as s:
                s.drop_all()
            if REGISTRY:
                from storage import SqlRegistryBackend

                SqlRegistryBackend(pg, prefix=f"mr{suffix}_").drop_all()


def same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want) > 0
    for c in ("series_id", "issued_at", "step", "model_version"):
        assert got[c].tolist() == want[c].tolist(), c
    # 1e-6 relative: float32 batches of other series round about one ulp differently
    np.testing.assert_allclose(got["yhat"], want["yhat"], rtol=1e-6, atol=0)


def test_two_workers_run_the_shards_and_write_the_rows_of_an_unsharded_run(fleet):
    from storage import Shard

    # train on the pool; promote the version even if it lost to the baselines (rows are
    # compared here, not accuracy)
    (trained,) = fleet.run_deployments(("retrain/retrain", {"history_end": END.isoformat()}))
    assert trained.state.is_completed(), trained.state
    version = trained.name.removeprefix("retrain-")
    fleet.cli(sys.executable, "-m", "forecast_cli.main", "promote", version)
    fleet.mark("trained on the pool")

    a, b = END - 30 * STEP, END - 20 * STEP
    runs = fleet.run_deployments(
        ("predict/predict-shard", {"as_of": a.isoformat()}),  # unsharded, for the reference
        ("predict/predict-shard", {"as_of": b.isoformat()}),
    )
    assert all(r.state.is_completed() for r in runs), [r.state for r in runs]
    want_a, want_b = fleet.rows(a), fleet.rows(b)
    fleet.mark("unsharded reference runs")
    assert set(want_a["model_version"]) == {version} and want_a["series_id"].nunique() == N_SERIES
    with fleet.store() as s:
        s.write_forecasts(want_a.iloc[:0], slots=[a, b])  # empty both slots
    fleet.wait_idle()

    kind, out = fleet.parent(a)
    assert kind == "RESULT", out
    result = json.loads(out)
    assert [r["state"] for r in result["shards"]] == ["COMPLETED", "COMPLETED"]
    ids = sorted(want_a["series_id"].unique())
    assert [r["series_written"] for r in result["shards"]] == [
        len(Shard(k, 2).select(ids)) for k in range(2)
    ]
    same_rows(fleet.rows(a), want_a)
    fleet.mark("sharded parent")
    run_ids = [i for r in result["shards"] for i in r["flow_run_ids"]]
    ran_on = [sum(i in log.read_text(errors="replace") for i in run_ids) for log in fleet.logs]
    assert all(n >= 1 for n in ran_on), ran_on  # both workers ran a shard

    # kill one shard: shard 1's series have no metrics at b (the collector is late for
    # them), so its run fails (too few forecasts), and fails again when re-submitted
    late = Shard(1, 2).select(ids)
    held = fleet.frame[fleet.frame["series_id"].isin(late) & (fleet.frame["ts"] == b)]
    import sqlalchemy as sa

    with fleet.store() as s:
        t = sa.Table(s.tables.metrics, sa.MetaData(), autoload_with=s.engine)
        with s.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.series_id.in_(late), t.c.ts == b.to_pydatetime()))
    kind, out = fleet.parent(b)
    fleet.mark("parent with a failing shard")
    assert kind == "FAILED", out
    assert "1 of 2 shard(s) failed (1/2)" in out and "shard 1/2: FAILED after 2 attempt(s)" in out
    assert "shard 0/2: COMPLETED after 1 attempt(s)" in out and "forecast 0 of" in out, out
    zero = Shard(0, 2).select(ids)
    same_rows(fleet.rows(b), want_b[want_b["series_id"].isin(zero)].reset_index(drop=True))

    # the metrics arrive; a retry of shard 1 alone completes the slot
    with fleet.store() as s:
        s.write_metrics(held)
    (retry,) = fleet.run_deployments(
        ("predict/predict-shard", {"as_of": b.isoformat(), "shard": 1, "shards": 2})
    )
    assert retry.state.is_completed(), retry.state
    same_rows(fleet.rows(b), want_b)
    fleet.mark("retried shard")
