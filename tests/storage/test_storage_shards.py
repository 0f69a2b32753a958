"""Shards of the series: the assignment is stable and partitions the ids; on every backend
a shard's write replaces only its own series' rows of its slots, and catch-up and reads see
only the shard's series."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
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
