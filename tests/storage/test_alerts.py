"""Breach alerts on every store (Parquet, SQLite, PostgreSQL, MariaDB): ``update_alerts``
after each scoring, the ``read_alerts`` contract, and retention of resolved alerts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from storage_helpers import FREQ, slot
from storage_pg import unique_tables

from storage import ConfigError

SERIES = ["a", "b", "c"]
N = 40  # slots of metrics and forecasts
K, M = 6, 3
COLUMNS = [
    "series_id",
    "level",
    "direction",
    "started_at",
    "last_breach_at",
    "slots_breached",
    "max_excess",
    "model_version",
    "status",
    "resolved_at",
]


def band_forecasts(issued: range, horizon: int = 3) -> pd.DataFrame:
    """Every series forecast 100 in [90, 110] (80 %) at every step, issued at each slot."""
    recs = [
        {
            "series_id": sid,
            "issued_at": slot(i),
            "target_ts": slot(i + s),
            "step": s,
            "yhat": 100.0,
            "yhat_lower": 90.0,
            "yhat_upper": 110.0,
            "level": 0.8,
            "model_version": "v1" if i < 20 else "v2",
        }
        for i in issued
        for sid in SERIES
        for s in range(1, horizon + 1)
    ]
    return pd.DataFrame(recs)


def actuals() -> pd.DataFrame:
    """100 (inside) everywhere except: a is 150 (2 widths above) at slots 10..17; c is 50
    (2 widths below) from slot 30 on; b never leaves the band."""
    y = {sid: np.full(N + 4, 100.0) for sid in SERIES}
    y["a"][10:18] = 150.0
    y["a"][13] = 170.0  # 3 widths
    y["c"][30:] = 50.0
    return pd.DataFrame(
        {
            "series_id": np.repeat(SERIES, N + 4),
            "ts": [slot(i) for _ in SERIES for i in range(N + 4)],
            "value": np.concatenate([y[s] for s in SERIES]),
        }
    )


def filled(make_store, **kw):
    store = make_store(**kw)
    store.write_metrics(actuals())
    store.write_forecasts(band_forecasts(range(N)))
    return store


def run_slots(store, slots, scored: bool = False, **kw):
    """What predict runs do, one slot at a time: score the slot, then update the alerts
    (``scored``: every slot was scored before, in one write, which is quicker)."""
    slots = list(slots)
    if scored:
        store.score_forecasts(slot(slots[-1]), lookback_slots=len(slots))
    out = []
    for i in slots:
        if not scored:
            store.score_forecasts(slot(i), lookback_slots=1)
        out.append(store.update_alerts(slot(i), k=K, m=M, level=0.8, **kw))
    return out


def test_an_alert_opens_once_grows_and_resolves(make_store):
    store = filled(make_store)
    changes = run_slots(store, range(1, 26))
    opened = {i + 1: c.opened for i, c in enumerate(changes) if len(c.opened)}
    resolved = {i + 1: c.resolved for i, c in enumerate(changes) if len(c.resolved)}
    # a's step-1 forecasts breach from slot 10: the 6th breach (slot 15) opens it, once
    assert list(opened) == [15] and list(opened[15]["series_id"]) == ["a"]
    assert list(resolved) == [20]  # slots 18, 19, 20 back inside: resolved at the third
    open_during = [len(c.open) for c in changes]
    assert open_during[13] == 0 and open_during[14:19] == [1] * 5 and open_during[19] == 0
    (a,) = store.read_alerts().to_dict(orient="records")
    assert a["direction"] == "above" and a["status"] == "resolved"
    assert a["started_at"] == slot(10) and a["last_breach_at"] == slot(17)
    assert a["resolved_at"] == slot(20) and a["slots_breached"] == 8
    assert a["max_excess"] == pytest.approx(3.0) and a["level"] == pytest.approx(0.8)
    assert a["model_version"] == "v1"


def test_re_running_and_re_scoring_the_same_slots_opens_nothing_more(make_store):
    store = filled(make_store)
    run_slots(store, range(1, 17))
    before = store.read_alerts()
    for again in (run_slots(store, [15, 16]), run_slots(store, range(10, 17))):
        assert all(c.opened.empty and c.resolved.empty and c.written == 0 for c in again)
    pd.testing.assert_frame_equal(store.read_alerts(), before)
    # and after the resolution, re-running an old slot inside the alert reopens nothing
    run_slots(store, range(17, 26))
    resolved = store.read_alerts()
    assert list(resolved["status"]) == ["resolved"]
    for c in run_slots(store, [15, 16, 17]):
        assert c.opened.empty and c.written == 0
    pd.testing.assert_frame_equal(store.read_alerts(), resolved)


def test_read_alerts_contract_filters_and_order(make_store):
    store = filled(make_store)
    changes = run_slots(store, range(1, N), scored=True)
    assert [len(c.opened) for c in changes].count(1) == 2
    alerts = store.read_alerts()
    assert list(alerts.columns) == COLUMNS
    assert list(alerts["series_id"]) == ["c", "a"]  # newest first
    assert str(alerts["started_at"].dtype) == "datetime64[us, UTC]"
    assert str(alerts["resolved_at"].dtype) == "datetime64[us, UTC]"
    assert alerts["slots_breached"].dtype == np.int64
    assert alerts["max_excess"].dtype == np.float64 and alerts["level"].dtype == np.float64
    c, a = alerts.to_dict(orient="records")
    assert c["direction"] == "below" and c["status"] == "open" and pd.isna(c["resolved_at"])
    assert c["started_at"] == slot(30) and c["slots_breached"] == N - 1 - 30 + 1
    assert c["model_version"] == "v2" and c["max_excess"] == pytest.approx(2.0)
    assert a["status"] == "resolved"
    assert list(store.read_alerts(open_only=True)["series_id"]) == ["c"]
    assert list(store.read_alerts(series_ids=["a", "b"])["series_id"]) == ["a"]
    assert list(store.read_alerts(series_ids="c")["series_id"]) == ["c"]
    assert store.read_alerts(series_ids=[]).empty
    # since: alerts active at or after it (open, or resolved then or later)
    assert list(store.read_alerts(since=slot(20))["series_id"]) == ["c", "a"]
    assert list(store.read_alerts(since=slot(21))["series_id"]) == ["c"]
    empty = store.read_alerts(open_only=True, series_ids=["b"])
    assert empty.empty and list(empty.columns) == COLUMNS
    # the open alert goes on growing; what a run returns is what is stored
    (c2,) = store.update_alerts(slot(N), k=K, m=M).open.to_dict(orient="records")
    assert c2 == c  # slot N has no scored forecast yet: nothing changed


def test_only_the_judged_step_and_level_count(make_store):
    store = filled(make_store)
    # judged on the step-2 forecasts of the same target slots, a opens at slot 15 too
    changes = run_slots(store, range(1, 26), scored=True, step=2)
    assert [i + 1 for i, c in enumerate(changes) if len(c.opened)] == [15]
    store2 = filled(make_store, tables_=unique_tables())
    store2.score_forecasts(slot(25), lookback_slots=25)
    for i in range(1, 26):  # the stored interval is 80 %: judged at 95 % nothing is seen
        assert store2.update_alerts(slot(i), k=K, m=M, level=0.95).written == 0
    assert store2.read_alerts().empty


def test_update_alerts_arguments_are_checked(make_store):
    store = make_store()
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        store.update_alerts(slot(1), k=0)
    with pytest.raises(ConfigError, match="level"):
        store.update_alerts(slot(1), k=3, level=1.5)
    with pytest.raises(ConfigError, match="as_of"):
        store.update_alerts(slot(1) + FREQ / 2, k=3)
    assert store.update_alerts(slot(1), k=3).written == 0  # an empty store: nothing to judge


def test_retention_deletes_alerts_resolved_before_the_accuracy_cutoff(make_store):
    store = filled(make_store)
    run_slots(store, range(1, N), scored=True)
    assert len(store.read_alerts()) == 2
    # accuracy kept for 1 hour: a's alert (resolved at slot 20) is older than that at slot
    # 40 + 1 h; c's is open and stays however old
    out = store.apply_retention(30, 1 / 24, now=slot(N) + pd.Timedelta("1h") + 3 * FREQ)
    assert out["alerts_deleted"] == 1
    assert list(store.read_alerts()["series_id"]) == ["c"]
    assert (
        store.apply_retention(30, 1 / 24, now=slot(N) + pd.Timedelta("2h"))["alerts_deleted"] == 0
    )
    assert store.describe()["rows"]["alerts"] == 1
