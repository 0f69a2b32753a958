"""Rows 1, 2, 3, 5 and 16 of the reliability table: forecast writes under repetition,
concurrency, failure, a killed process, concurrent readers and a day of runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from reliability_helpers import END, N_SERIES, STEP, make_env

KEY = ["series_id", "issued_at", "step"]


def dup_keys(df: pd.DataFrame) -> int:
    return int(df.duplicated(KEY).sum())


def test_r01_same_slot_three_times_no_duplicates(env):
    counts = []
    for _ in range(3):
        env.predict(END)
        df = env.store().read_forecasts()
        counts.append(len(df))
        assert dup_keys(df) == 0, f"{dup_keys(df)} duplicate keys after {len(counts)} runs"
    assert counts == [N_SERIES * 12] * 3, f"row counts after each run: {counts}"


def test_r02_two_predict_runs_for_one_slot_at_the_same_time(env):
    results, errors = [], []

    def run():
        try:
            results.append(env.predict(END - STEP))
        except Exception as exc:  # a clean refusal is allowed; a corrupt table is not
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    df = env.store().read_forecasts(issued_at=END - STEP)
    assert dup_keys(df) == 0, f"{dup_keys(df)} duplicate keys"
    assert len(results) + len(errors) == 2
    assert len(results) >= 1, f"both runs failed: {errors}"
    for exc in errors:  # refused cleanly: a storage error naming the conflict, not a crash
        assert "lock" in str(exc).lower() or "conflict" in str(exc).lower(), repr(exc)
    assert len(df) == N_SERIES * 12, f"{len(df)} rows for the slot, expected {N_SERIES * 12}"


@pytest.mark.parametrize("at", ["first", "last"])
def test_r03a_exception_half_way_through_a_write_keeps_the_old_rows(env, at):
    """`first`: the first fault point of the write (SQLite: after the first chunk of rows;
    PostgreSQL: rows staged, upsert not run; Parquet: temp file written). `last`: every row
    already upserted inside the transaction (or the file written), just before the commit
    (or the rename)."""
    env.predict(END)
    old = env.store().read_forecasts(issued_at=END)
    import storage.parquet
    import storage.sql

    reached = []

    def boom(label):
        reached.append(label)
        if at == "first" or label in ("before_commit", "before_replace"):
            raise RuntimeError(f"injected failure at {label}")

    # a retrain changes the model: the rewrite would change every value
    new_version = retrain_new_version(env)
    module = storage.parquet if env.backend == "parquet" else storage.sql
    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError, match="injected failure"):
        mp.setattr(module, "_fault_point", boom)
        env.predict(END)
    assert at == "first" or reached[-1] in ("before_commit", "before_replace"), reached
    now = env.store().read_forecasts(issued_at=END)
    pd.testing.assert_frame_equal(now, old, obj=f"rows after a failure at {reached[-1]}")
    assert set(now.model_version) == {env.version} != {new_version}


def retrain_new_version(env) -> str:
    from reliability_helpers import train_small

    from tasks.model_tasks import clear_model_cache

    v = env.registry.save(train_small(env.frame, seed=5, epochs=1))
    env.registry.promote(v, "test")
    clear_model_cache()
    return v


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import pandas as pd
    import storage.parquet, storage.sql
    from tasks.settings import get_settings
    from tasks.common import get_store
    ready = sys.argv[1]
    def hang(label):
        if label in ("before_commit", "before_replace"):
            open(ready, "w").close()
            time.sleep(600)
    storage.sql._fault_point = hang
    storage.parquet._fault_point = hang
    store = get_store(get_settings(store_url=sys.argv[2]))
    df = store.read_forecasts(issued_at=pd.Timestamp(sys.argv[3]))
    df["yhat"] = df["yhat"] + 1000.0
    df["model_version"] = "half-written"
    store.write_forecasts(df.drop(columns=["created_at"]))
    """
)


def test_r03b_killed_process_half_way_through_a_write_keeps_the_old_rows(env, tmp_path):
    env.predict(END)
    old = env.store().read_forecasts(issued_at=END)
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(ready), env.url, str(END)],
        env={**os.environ},
        cwd=Path(__file__).resolve().parents[2],
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, f"writer exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "writer never reached the commit point"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    now = env.store().read_forecasts(issued_at=END)
    pd.testing.assert_frame_equal(now, old)
    assert "half-written" not in set(now.model_version)
    env.predict(END)  # the next run writes normally over whatever the killed one left
    assert dup_keys(env.store().read_forecasts()) == 0


def test_r05_parquet_readers_see_one_whole_version_during_rewrites(
    harness, trained, tmp_path, monkeypatch
):
    env = make_env("parquet", trained, tmp_path, monkeypatch)
    store = env.store()
    env.predict(END)
    base = store.read_forecasts(issued_at=END).drop(columns=["created_at"])
    stop = threading.Event()
    bad, reads, writes, crashed = [], [0], [0], []

    def writer():
        try:
            while not stop.is_set():
                k = writes[0] + 1
                store.write_forecasts(base.assign(model_version=f"w{k}", yhat=base.yhat + k))
                writes[0] = k
        except Exception as exc:  # a thread's exception would otherwise only be a warning
            crashed.append(("writer", exc))

    def reader():
        try:
            while not stop.is_set():
                df = store.read_forecasts(issued_at=END)
                reads[0] += 1
                versions = set(df.model_version)
                if len(df) != len(base) or len(versions) != 1:
                    bad.append((len(df), versions))
        except Exception as exc:
            crashed.append(("reader", exc))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    assert not crashed, f"a read or write failed: {crashed}"
    assert reads[0] > 10 and writes[0] > 10, f"only {reads[0]} reads and {writes[0]} rewrites"
    assert not bad, f"{len(bad)} of {reads[0]} reads saw a mixed or partial slot: {bad[:3]}"
    print(f"r05: {reads[0]} reads during {writes[0]} rewrites, 0 mixed")


@pytest.mark.soak
def test_r16_a_day_of_five_minute_runs_no_memory_growth(sqlite_env):
    """288 predict runs (24 h of slots) against one store: RSS growth and table size."""
    import gc

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    slots = [END - STEP * (287 - k) for k in range(288)]
    rss = []
    for slot in slots:
        sqlite_env.predict(slot)
        if len(rss) % 24 == 0:
            gc.collect()
        rss.append(rss_mb())
    df = sqlite_env.store().read_forecasts()
    assert len(df) == 288 * N_SERIES * 12 and dup_keys(df) == 0
    warm, last = rss[49], rss[-1]
    growth = last - warm
    print(
        f"r16: 288 runs, {len(df)} rows, RSS run 50 {warm:.0f} MiB -> run 288 {last:.0f} MiB ({growth:+.1f})"
    )
    assert growth < 60, (
        f"RSS grew {growth:.1f} MiB between run 50 ({warm:.0f} MiB) and run 288 ({last:.0f} MiB)"
    )


def test_r20_a_rerun_slot_holds_only_the_rerun_rows_through_the_flow(env):
    """Row 20 through the predict flow: a series forecast in the first run of a slot and
    skipped in the re-run (its metric at as_of deleted, as a collector's correction) keeps
    no rows of the first run; every row of the slot carries the re-run's model version."""
    first = env.predict(END)
    assert first["series_forecast"] == N_SERIES
    before = env.store().read_forecasts(issued_at=END)
    assert "svc-1" in set(before.series_id)
    _delete_metric(env, "svc-1", END)  # a collector's correction: the re-run must skip it
    second = env.predict(END)
    assert "svc-1" in second["skipped"], second["skipped"]
    rows = env.store().read_forecasts(issued_at=END)
    assert "svc-1" not in set(rows.series_id), "the first run's rows survived the re-run"
    assert len(rows) == (N_SERIES - 1) * 12 and dup_keys(rows) == 0
    latest = env.store().read_latest_forecasts(start=END + STEP)
    assert "svc-1" not in set(latest[latest.issued_at == END].series_id)


def _delete_metric(env, series_id: str, ts: pd.Timestamp) -> None:
    """Remove a series' newest metrics row (at `ts`, the data's end) behind the store's
    back, as an operator's DELETE would: by max(ts), so no timestamp encoding is assumed."""
    assert env.frame.ts.max() == ts
    if env.backend == "parquet":
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        files = [f for f in Path(env.url).rglob("*.parquet") if env.tables["metrics"] in f.parts]
        newest = max(files, key=lambda f: pc.max(pq.read_table(f, columns=["ts"])["ts"]).value)
        tab = pq.read_table(newest)
        last = pc.max(tab["ts"])
        hit = pc.and_(pc.equal(tab["series_id"], series_id), pc.equal(tab["ts"], last))
        assert pc.sum(hit).as_py() == 1
        pq.write_table(tab.filter(pc.invert(hit)), newest)
        return
    import sqlalchemy as sa

    engine = sa.create_engine(env.url)
    m = sa.table(env.tables["metrics"], sa.column("series_id"), sa.column("ts"))
    newest = sa.select(sa.func.max(m.c.ts)).where(m.c.series_id == series_id).scalar_subquery()
    with engine.begin() as conn:
        n = conn.execute(sa.delete(m).where(m.c.series_id == series_id, m.c.ts == newest)).rowcount
    engine.dispose()
    assert n == 1, f"deleted {n} rows for {series_id} at {ts}"
