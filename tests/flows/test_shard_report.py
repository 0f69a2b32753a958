"""The sharded parent's pure parts: shard-run parameters (no secrets passed on, no
scoring), the per-shard report and the failure naming the shard that stayed failed."""

from __future__ import annotations

import pandas as pd
import pytest

from storage import Shard
from tasks.shard_tasks import (
    ShardResult,
    ShardsFailed,
    check_shards,
    count_series,
    report_text,
    shard_parameters,
)


def test_shard_parameters_leave_unset_values_to_the_worker():
    base = {"as_of": "2026-01-01T00:00:00+00:00", "store_url": None, "catch_up_slots": 3}
    assert shard_parameters(base, Shard(1, 4)) == {
        "as_of": "2026-01-01T00:00:00+00:00",
        "catch_up_slots": 3,
        "shard": 1,
        "shards": 4,
        "score": False,
    }


def test_report_counts_series_per_shard_and_names_the_failed_one():
    ids = [f"s{i}" for i in range(20)]
    results = [ShardResult(Shard(0, 2), ["r0"], state="COMPLETED")]
    results.append(ShardResult(Shard(1, 2), ["r1", "r1b"], state="FAILED", message="boom"))
    written = pd.DataFrame({"issued_at": pd.Timestamp("2026-01-01", tz="UTC"), "series_id": ids})
    count_series(written, results)
    assert [r.series_written for r in results] == [len(Shard(k, 2).select(ids)) for k in (0, 1)]
    text = report_text(results)
    assert "shard 0/2: COMPLETED after 1 attempt(s)" in text
    assert "shard 1/2: FAILED after 2 attempt(s)" in text and "(boom)" in text
    with pytest.raises(ShardsFailed, match=r"1 of 2 shard\(s\) failed \(1/2\)"):
        check_shards(results)
    check_shards(results[:1])  # all completed: no error
    assert results[1].as_dict()["attempts"] == 2
