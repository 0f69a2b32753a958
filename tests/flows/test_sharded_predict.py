"""Sharded predict as direct flow calls (the flow a work pool's shard runs execute): two
shards write exactly the rows of one unsharded run, a re-run of one shard leaves the other's
rows untouched, catch-up looks at the shard's own series, and a shard whose series all lack
their as-of metrics fails while the other shard's rows are complete."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import open_job
from flow_helpers import END
from typer.testing import CliRunner

from flows.predict import predict
from storage import Shard

STEP = pd.Timedelta("5min")
KEY = ["series_id", "issued_at", "step"]
COLS = [*KEY, "yhat", "model_version"]


@pytest.fixture(scope="module", params=["parquet", "postgres"])
def job(request, harness, tmp_path_factory):
    """A trained model, promoted even if it lost to the baselines (these tests compare
    rows, not accuracy; a loaded machine trains fewer epochs in the time budget)."""
    from lstm import ModelRegistry

    for j in open_job(request.param, tmp_path_factory):
        reg = ModelRegistry(j.models_dir)
        if reg.champion() is None:
            reg.promote(j.retrain["version"], reason="test")
        yield j


def run(job, as_of, **kw):
    return predict(
        as_of=as_of.to_pydatetime(),
        store_url=job.url,
        models_dir=str(job.models_dir),
        **{"catch_up_slots": 0, **kw},
    )


def rows(job, issued_at=None, with_created=False) -> pd.DataFrame:
    df = job.store().read_forecasts(issued_at=issued_at)
    cols = [*COLS, "created_at"] if with_created else COLS
    return df[cols].sort_values(KEY).reset_index(drop=True)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want) and len(want) > 0
    for c in ("series_id", "issued_at", "step", "model_version"):
        assert got[c].tolist() == want[c].tolist(), c
    # to 1e-6 relative: the model computes in float32, and a batch of other series (a
    # shard's instead of all) rounds a few values differently by about one float32 ulp
    # (observed: 3e-8 relative); bitwise equality holds for every other column
    np.testing.assert_allclose(got["yhat"], want["yhat"], rtol=1e-6, atol=0)


def test_two_shards_write_exactly_the_rows_of_one_unsharded_run(job):
    as_of = END - 30 * STEP
    whole = run(job, as_of)
    want = rows(job, as_of)
    job.store().write_forecasts(want.iloc[:0], slots=[as_of])  # empty the slot
    assert rows(job, as_of).empty
    outs = [run(job, as_of, shard=k, shards=2) for k in range(2)]
    assert [o["shard"] for o in outs] == ["0/2", "1/2"]
    assert sum(o["series_forecast"] for o in outs) == whole["series_forecast"]
    assert all(o["series_forecast"] > 0 for o in outs)
    assert_same_rows(rows(job, as_of), want)

    # re-running shard 1 touches only shard 1's rows: shard 0's keep even their created_at
    before = rows(job, as_of, with_created=True)
    zero = before[before["series_id"].isin(Shard(0, 2).select(before["series_id"].unique()))]
    run(job, as_of, shard=1, shards=2)
    after = rows(job, as_of, with_created=True)
    mine = after[after["series_id"].isin(zero["series_id"].unique())].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, zero.reset_index(drop=True))
    assert_same_rows(after[COLS], want)


def test_catch_up_of_a_shard_looks_at_its_own_series(job):
    missed, now = END - 20 * STEP, END - 19 * STEP
    run(job, missed)  # every series has forecasts at `missed`
    store = job.store()
    ids = rows(job, missed)["series_id"].unique()
    store.write_forecasts(rows(job, missed).iloc[:0], slots=[missed], shard=Shard(1, 2))
    # shard 1's series lost their rows of `missed`: shard 1 catches it up, shard 0 does not
    zero = run(job, now, shard=0, shards=2, catch_up_slots=1)
    one = run(job, now, shard=1, shards=2, catch_up_slots=1)
    assert zero["slots"] == [str(now)]
    assert one["slots"] == [str(missed), str(now)]
    assert sorted(rows(job, missed)["series_id"].unique()) == sorted(ids)


def test_a_failed_shard_keeps_the_other_shards_rows_and_a_retry_completes_the_slot(job):
    """A shard whose series' metrics of the slot are missing fails (too few forecasts);
    the other shard's rows are complete; once the metrics arrive, a re-run of the failed
    shard alone completes the slot with the rows of an unsharded run."""
    as_of = END - 10 * STEP
    store = job.store()
    run(job, as_of)
    want = rows(job, as_of)
    store.write_forecasts(want.iloc[:0], slots=[as_of])
    ids = sorted(want["series_id"].unique())
    late = Shard(1, 2).select(ids)
    # the late metrics: shard 1's rows of the as-of slot are held back (moved aside)
    held = job.frame[job.frame["series_id"].isin(late) & (job.frame["ts"] == as_of)]
    _delete_metrics(store, late, as_of)
    ok = run(job, as_of, shard=0, shards=2)
    assert ok["series_forecast"] == len(ids) - len(late)
    from tasks.predict_tasks import ForecastShortfall

    with pytest.raises(ForecastShortfall, match=r"forecast 0 of \d+ series"):
        run(job, as_of, shard=1, shards=2)
    got = rows(job, as_of)
    assert sorted(got["series_id"].unique()) == Shard(0, 2).select(ids)
    assert_same_rows(
        got, want[want["series_id"].isin(Shard(0, 2).select(ids))].reset_index(drop=True)
    )
    store.write_metrics(held)  # the metrics arrive
    run(job, as_of, shard=1, shards=2)
    assert_same_rows(rows(job, as_of), want)


def _delete_metrics(store, ids, ts) -> None:
    """Remove metrics rows (the test's stand-in for metrics that have not arrived)."""
    if store.backend == "parquet":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from storage.parquetpaths import HOUR_US

        us = ts.value // 1000
        path = store._paths.hour_path(store.tables.metrics, us // HOUR_US)
        tab = pq.read_table(path)
        at = pc.equal(tab["ts"].cast(pa.int64()), us)
        drop = pc.and_(pc.is_in(tab["series_id"], value_set=pa.array(ids)), at)
        store._files.write([(path, tab.filter(pc.invert(drop)))], 0)
        return
    import sqlalchemy as sa

    t = sa.Table(store.tables.metrics, sa.MetaData(), autoload_with=store.engine)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.series_id.in_(ids), t.c.ts == ts.to_pydatetime()))


def test_cli_predict_takes_a_shard(job, monkeypatch):
    from forecast_cli.main import app

    monkeypatch.setenv("FORECAST_CATCH_UP_SLOTS", "0")
    cli = CliRunner()
    base = ["--store", job.url, "--models", str(job.models_dir), "predict"]
    res = cli.invoke(app, [*base, "--as-of", (END - 40 * STEP).isoformat(), "--shard", "1/2"])
    assert res.exit_code == 0, res.output
    assert '"shard": "1/2"' in res.stdout
    res = cli.invoke(app, [*base, "--shard", "2/2"])
    assert res.exit_code == 2 and "--shard" in res.stderr and "0 <= shard < shards" in res.stderr
