"""Shards of the series: the assignment is stable and partitions the ids; on every backend
a shard's write replaces only its own series' rows of its slots, and catch-up and reads see
only the shard's series."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest
from storage_helpers import forecasts, metrics, slot

from storage import ConfigError, DataValidationError
from storage.shards import Shard, shard_of, stable_hash

IDS = [f"svc-{i}" for i in range(200)] + ["", "ünï€ode", "a,b", "x" * 300]


def test_stable_hash_is_fixed_across_processes_and_python_versions():
    # a pinned value: a change here would move every series to another shard
    assert stable_hash("svc-0") == 0xA57F2C9F796B5014
    code = (
        "from storage.shards import stable_hash\n"
        "print([stable_hash(s) for s in ['svc-0', 'ünï€ode', '']])"
    )
    env = {"PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([stable_hash(s) for s in ["svc-0", "ünï€ode", ""]])


def test_stable_hash_pinned_values():
    """BLAKE2b-64 of the UTF-8 bytes, big-endian: the documented definition."""
    import hashlib

    for s in ("svc-0", "ünï€ode", ""):
        want = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")
        assert stable_hash(s) == want
    assert shard_of("svc-0", 1) == 0


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_partition_the_series(count):
    shards = [Shard(i, count) for i in range(count)]
    owned = [set(s.select(IDS)) for s in shards]
    assert set().union(*owned) == set(IDS)
    assert sum(len(o) for o in owned) == len(IDS)  # disjoint
    if count > 1:  # and roughly balanced (200 ids: each shard holds some)
        assert all(len(o) > len(IDS) / count / 3 for o in owned)
    import pyarrow as pa

    arr = pa.chunked_array([IDS[:50], IDS[50:] + IDS[:10]])
    for s in shards:
        mask = s.mask(arr)
        assert list(mask) == [s.owns(x) for x in IDS + IDS[:10]]


def test_shard_spec_parsing_and_refusals():
    assert Shard.parse("1/4") == Shard(1, 4) and str(Shard(1, 4)) == "1/4"
    assert Shard.of(None, None) is None and Shard.of(0, 1) is None
    assert Shard.of(2, 3) == Shard(2, 3)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="shard"):
            Shard.parse(bad)
    with pytest.raises(ConfigError, match="give both"):
        Shard.of(1, None)


def _by_shard(ids: list[str], count: int) -> list[list[str]]:
    return [Shard(i, count).select(ids) for i in range(count)]


def test_a_shard_write_replaces_only_its_own_series(make_store):
    store = make_store()
    ids = [f"s{i}" for i in range(12)]
    zero, one = _by_shard(ids, 2)
    assert zero and one
    t = slot(100)
    store.write_forecasts(forecasts(ids, t, model_version="v1"), slots=[t])
    # shard 0 re-runs with a new model and without its first series: that series' old rows
    # go (the shard owns them), shard 1's rows stay untouched
    new = forecasts(zero[1:], t, model_version="v2")
    store.write_forecasts(new, slots=[t], shard=Shard(0, 2))
    out = store.read_forecasts(issued_at=t)
    assert set(out["series_id"]) == set(zero[1:]) | set(one)
    assert set(out.loc[out.series_id.isin(one), "model_version"]) == {"v1"}
    assert set(out.loc[out.series_id.isin(zero), "model_version"]) == {"v2"}
    assert len(out) == 12 * (len(ids) - 1)
    # a shard writing an empty frame empties only its series from the slot
    store.write_forecasts(forecasts([], t), slots=[t], shard=Shard(1, 2))
    assert set(store.read_forecasts(issued_at=t)["series_id"]) == set(zero[1:])
    # the slot series listing: what the sharded parent reports from
    listed = store.issued_series([t, slot(101)])
    assert list(listed["series_id"]) == sorted(zero[1:])
    assert set(listed["issued_at"]) == {t}


def test_two_shards_write_exactly_the_rows_of_one_unsharded_write(make_store):
    store = make_store()
    ids = [f"s{i}" for i in range(10)]
    t1, t2 = slot(200), slot(201)
    frame = pd.concat([forecasts(ids, t1), forecasts(ids, t2, bump=1.0)], ignore_index=True)
    store.write_forecasts(frame, slots=[t1, t2])
    want = store.read_forecasts().drop(columns="created_at")
    store.write_forecasts(frame.iloc[:0], slots=[t1, t2])  # empty the slots
    assert store.read_forecasts().empty
    for k in range(2):
        mine = frame[frame["series_id"].isin(Shard(k, 2).select(ids))]
        store.write_forecasts(mine, slots=[t1, t2], shard=Shard(k, 2))
    got = store.read_forecasts().drop(columns="created_at")
    pd.testing.assert_frame_equal(got, want)


def test_a_shard_refuses_rows_of_another_shards_series(make_store):
    store = make_store()
    ids = [f"s{i}" for i in range(8)]
    zero, one = _by_shard(ids, 2)
    t = slot(300)
    with pytest.raises(DataValidationError, match=rf"series {one[0]!r}, owned by shard 1/2"):
        store.write_forecasts(forecasts(ids, t), slots=[t], shard=Shard(0, 2))
    assert store.read_forecasts().empty  # nothing written
    with pytest.raises(ConfigError, match="needs the slots"):
        store.write_forecasts(forecasts(zero, t), shard=Shard(0, 2))


def test_catch_up_and_reads_see_only_the_shards_series(make_store):
    store = make_store()
    ids = [f"s{i}" for i in range(10)]
    zero, one = _by_shard(ids, 2)
    store.write_metrics(metrics(ids, range(390, 400)))
    t1, t2 = slot(398), slot(399)
    store.write_forecasts(forecasts(ids, t1), slots=[t1])
    store.write_forecasts(forecasts(one, t2), slots=[t2], shard=Shard(1, 2))
    assert store.issued_slots(t1, t2) == [t1, t2]
    assert store.issued_slots(t1, t2, shard=Shard(0, 2)) == [t1]  # t2 lacks shard 0
    assert store.issued_slots(t1, t2, shard=Shard(1, 2)) == [t1, t2]
    recent = store.read_recent(t2, 3, shard=Shard(0, 2))
    assert set(recent["series_id"]) == set(zero) and len(recent) == 3 * len(zero)


# ids a shard's read must hash and match exactly as a whole-window read does
ODD_IDS = [
    *(f"svc-{i}" for i in range(40)),
    "ünï€ode",
    "emoji 😀",
    "a,b",
    'quo"te',
    "it's",
    "back\\slash",
    "new\nline",
    "tab\tid",
    "trailing ",
    "Case",
    "case",
    "%s",
    "x" * 120,
]


def _old_read(store, as_of, n_slots, shard, **kw) -> pd.DataFrame:
    """What a shard read returned before the push-down: the whole window, then the mask."""
    full = store.read_recent(as_of, n_slots, **kw)
    return full[Shard(shard.index, shard.count).mask(pa.array(full["series_id"]))].reset_index(
        drop=True
    )


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@pytest.mark.parametrize("count", [2, 3, 4])
def test_a_shard_read_returns_exactly_the_masked_window(make_store, count):
    store = make_store()
    store.write_metrics(metrics(ODD_IDS, range(380, 400)))
    store.write_metrics(metrics(ODD_IDS[:5], range(100, 104), seed=1))  # the week-ago range
    as_of, extra = slot(399), [(290, 298)]
    full = store.read_recent(as_of, 12, extra_ranges=extra)
    parts = []
    for i in range(count):
        shard = Shard(i, count)
        got = store.read_recent(as_of, 12, extra_ranges=extra, shard=shard)
        _same(got, _old_read(store, as_of, 12, shard, extra_ranges=extra))
        assert set(got["series_id"]) == set(shard.select(ODD_IDS))
        parts.append(got)
    # K shards together read the whole window, each row once
    union = pd.concat(parts).sort_values(["series_id", "ts"], kind="stable")
    _same(union, full)
    # with series_ids, only those of the shard
    some = ["ünï€ode", "a,b", "Case", "case", "svc-1", "svc-2"]
    for i in range(count):
        got = store.read_recent(as_of, 3, series_ids=some, shard=Shard(i, count))
        assert set(got["series_id"]) == set(Shard(i, count).select(some))


def test_a_shard_read_reads_only_its_series_rows(make_store, monkeypatch):
    """The push-down: no backend fetches the whole window for a shard (a SQL store fetches
    only the shard's rows; the Parquet store never calls the whole-window read)."""
    store = make_store()
    store.write_metrics(metrics(ODD_IDS, range(390, 400)))
    shard = Shard(1, 3)
    want = _old_read(store, slot(399), 10, shard)
    fetched: list[int] = []
    monkeypatch.setattr(
        type(store), "_read_metrics", lambda *a, **k: pytest.fail("whole-window read")
    )
    dialect = getattr(store, "dialect", None)
    if dialect is not None:
        real = dialect.fetch

        def counting(conn, stmt, fields):
            tab = real(conn, stmt, fields)
            fetched.append(tab.num_rows)
            return tab

        monkeypatch.setattr(dialect, "fetch", counting)
    got = store.read_recent(slot(399), 10, shard=shard)
    _same(got, want)
    if dialect is not None:
        assert sum(fetched) == len(want) < 10 * len(ODD_IDS)


def test_a_shard_read_in_chunks_of_ids_is_the_same(make_store, monkeypatch):
    """MySQL/MariaDB send the shard's ids in IN lists of bounded size: several chunks read
    the same rows as one (forced here on every SQL store with a tiny bound)."""
    import storage.sqlshards as sql

    store = make_store()
    if not hasattr(store, "dialect"):
        pytest.skip("SQL stores only")
    store.write_metrics(metrics(ODD_IDS, range(390, 400)))
    shard = Shard(0, 2)
    want = store.read_recent(slot(399), 10, shard=shard)
    monkeypatch.setitem(sql.IN_LIST_BYTES, store.dialect.name, 64)
    chunks = list(sql.id_chunks(shard.select(ODD_IDS), 64))
    assert len(chunks) > 3 and sum(chunks, []) == shard.select(ODD_IDS)
    _same(store.read_recent(slot(399), 10, shard=shard), want)
    # a shard's write deletes its old rows in such chunks too: all of them, no other's
    t = slot(399)
    store.write_forecasts(forecasts(ODD_IDS, t), slots=[t])
    mine = shard.select(ODD_IDS)
    store.write_forecasts(forecasts(mine[:3], t, bump=5.0), slots=[t], shard=shard)
    got = store.read_forecasts(t)
    others = [s for s in ODD_IDS if s not in mine]
    assert set(got["series_id"]) == set(mine[:3]) | set(others)


def test_id_chunks_bound_the_bytes_of_each_list():
    from storage.sqlshards import id_chunks as _id_chunks

    ids = ["a" * 10, "ü" * 10, "b", "c" * 30]
    assert list(_id_chunks([], 100)) == [] and list(_id_chunks(ids, None)) == [ids]
    chunks = list(_id_chunks(ids, 50))
    assert sum(chunks, []) == ids
    # each chunk fits (an id longer than the bound alone is its own chunk)
    for c in chunks:
        assert len(c) == 1 or sum(2 * len(s.encode()) + 4 for s in c) <= 50


def test_a_shard_read_is_one_snapshot(make_store, monkeypatch):
    """A write that lands between the shard read's two steps (the window's ids, then the
    owned rows) is not seen: the read returns the state before it, as one read would."""
    store = make_store()
    store.write_metrics(metrics(ODD_IDS, range(390, 400)))
    shard = Shard(0, 2)
    before = store.read_recent(slot(399), 10, shard=shard)
    writer = make_store()  # another connection / handle, same tables
    newcomers = [f"new-{i}" for i in range(40)]
    assert shard.select(newcomers)
    done = []

    def write_once() -> None:
        if not done:
            done.append(True)
            writer.write_metrics(metrics(newcomers, range(390, 400), seed=5))
            writer.write_metrics(metrics(ODD_IDS, range(398, 400), seed=6))  # changed values

    for name in ("select", "owned"):
        real = getattr(Shard, name)

        def hooked(self, ids, _real=real):
            write_once()
            return _real(self, ids)

        monkeypatch.setattr(Shard, name, hooked)
    got = store.read_recent(slot(399), 10, shard=shard)
    assert done
    _same(got, before)
    monkeypatch.undo()
    after = store.read_recent(slot(399), 10, shard=shard)
    assert set(after["series_id"]) == set(shard.select(ODD_IDS + newcomers))


CI_DDL = {
    "sqlite": "series_id TEXT COLLATE NOCASE NOT NULL, ts TEXT NOT NULL, value REAL, "
    "error_rate REAL, PRIMARY KEY (ts, series_id)",
    "mariadb": "series_id VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci "
    "NOT NULL, ts DATETIME(6) NOT NULL, value DOUBLE, error_rate DOUBLE, "
    "PRIMARY KEY (ts, series_id)",
}


def test_a_shard_read_of_a_case_insensitive_user_table_keeps_ids_apart(make_store, backend):
    """A user's metrics table whose ids compare case- and pad-insensitively: 'Case',
    'case' and 'case ' are three series to the hash, and the shard read returns exactly
    the masked whole-window read (DISTINCT and IN would merge them)."""
    if backend not in CI_DDL:
        pytest.skip("a case-insensitive id column: SQLite NOCASE and MariaDB _ci tables")
    store = make_store()
    q = store.dialect.quote
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {q(store.tables.metrics)} ({CI_DDL[backend]})")
    variants = ["Case", "case", "CASE", "case ", "Ünï", "ünï"]
    # one slot pair each (the key (ts, id) would merge them at the same slot)
    for j, v in enumerate(variants):
        store.write_metrics(metrics([v], [386 + 2 * j, 387 + 2 * j], seed=j))
    store.write_metrics(metrics(ODD_IDS[:20], range(386, 400)))
    full = store.read_recent(slot(399), 14)
    assert set(variants) <= set(full["series_id"])
    split = False
    for count in (2, 3, 4):
        parts = []
        for i in range(count):
            shard = Shard(i, count)
            got = store.read_recent(slot(399), 14, shard=shard)
            _same(got, _old_read(store, slot(399), 14, shard))
            parts.append(got)
            split |= 0 < len(set(shard.select(variants))) < len(variants)
        _same(pd.concat(parts).sort_values(["series_id", "ts"], kind="stable"), full)
    assert split  # the variants fell into different shards: the case was exercised
