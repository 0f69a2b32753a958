"""The breach detector (``storage.breaches``) as pure functions: no store, no Prefect."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from storage.alerts import alerts_table
from storage.breaches import (
    ABOVE,
    BELOW,
    OPEN,
    RESOLVED,
    Alert,
    advance_alerts,
    breach_codes,
    default_alert_slots,
    expected_false_alerts,
)

FREQ_US = 300_000_000
T0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")
K, M = 4, 2


def slot(i: int) -> pd.Timestamp:
    return T0 + i * pd.Timedelta("5min")


def rows(values: dict[str, dict[int, float]], version: str = "v1") -> pd.DataFrame:
    """Scored step-1 rows: the band is [90, 110] at every slot; values[series][slot] = y."""
    recs = [
        {
            "series_id": sid,
            "target_ts": slot(i),
            "y": float(y),
            "yhat_lower": 90.0,
            "yhat_upper": 110.0,
            "model_version": version,
        }
        for sid, ys in values.items()
        for i, y in ys.items()
    ]
    return pd.DataFrame(recs)


def series(pattern: str, start: int = 0) -> dict[int, float]:
    """'.' inside, '+' above (130: 1 width out), '-' below (70), ' ' no scored slot (a gap)."""
    value = {".": 100.0, "+": 130.0, "-": 70.0}
    return {start + i: value[c] for i, c in enumerate(pattern) if c != " "}


def run(frame: pd.DataFrame, known: pd.DataFrame | None = None, k: int = K, m: int = M):
    return advance_alerts(frame, known, k=k, m=m, freq_us=FREQ_US, level=0.8, step=1)


def stored(alerts) -> pd.DataFrame:
    return alerts_table(list(alerts)).to_pandas()


def us(i: int) -> int:
    return slot(i).value // 1000


def test_breach_codes_direction_and_excess_in_widths():
    code, excess = breach_codes(
        np.array([100.0, 130.0, 70.0, 110.0, 90.0, 5.0]),
        np.array([90.0, 90.0, 90.0, 90.0, 90.0, 5.0]),
        np.array([110.0, 110.0, 110.0, 110.0, 110.0, 5.0]),
    )
    assert code.tolist() == [0, 1, -1, 0, 0, 0]  # the bounds themselves are inside
    assert excess[:5].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    code, excess = breach_codes(np.array([6.0]), np.array([5.0]), np.array([5.0]))
    assert code[0] == 1 and math.isfinite(excess[0]) and excess[0] > 1e9  # zero width


def test_k_minus_one_breaches_open_nothing():
    assert run(rows({"a": series("." + "+" * (K - 1) + "...")})).changed == []


def test_k_breaches_open_one_alert_that_grows_and_resolves_after_m_slots_back():
    d = run(rows({"a": series(".+++" + "+" + "++" + "." * (M - 1) + "+" + "." * M)}))
    assert len(d.opened) == 1 and len(d.resolved) == 1 and len(d.changed) == 1
    a = d.opened[0]
    assert (a.series_id, a.direction, a.status) == ("a", ABOVE, RESOLVED)
    assert a.started_at == us(1) and a.opened_at == us(K)
    # 6 breaches, one inside slot (fewer than M), one more breach, then M inside
    assert a.slots_breached == 7 and a.last_breach_at == us(8)
    assert a.resolved_at == us(8 + M) and a.max_excess == pytest.approx(1.0)


def test_max_excess_and_model_version_follow_the_breaches():
    frame = rows({"a": series("++++")})
    frame.loc[2, "y"] = 150.0  # 2 widths above
    frame.loc[3, "model_version"] = "v2"
    (a,) = run(frame).opened
    assert a.max_excess == pytest.approx(2.0) and a.model_version == "v2"


def test_a_direction_switch_resolves_one_alert_and_opens_the_other_from_clean_forecasts():
    d = run(rows({"a": series("++++" + "-" * 7)}))
    by_dir = {a.direction: a for a in d.changed}
    assert set(by_dir) == {ABOVE, BELOW}
    assert by_dir[ABOVE].status == RESOLVED and by_dir[ABOVE].resolved_at == us(3 + M)
    # the step-1 forecasts of slots 4..6 were issued while the above alert was open (its
    # anomaly in their input): they open nothing; slot 7's was issued after it resolved
    assert by_dir[BELOW].status == OPEN and by_dir[BELOW].started_at == us(7)
    assert by_dir[BELOW].opened_at == us(7 + K - 1)
    assert {a.direction for a in run(rows({"a": series("++++" + "-" * 6)})).changed} == {ABOVE}


def test_forecasts_issued_during_an_alert_and_its_quiet_slots_open_nothing():
    """The echo of an anomaly: forecasts made from its values miss the return to normal
    (step 12: up to 12 slots later); they open no alert of either direction."""
    # a rise for 6 slots; the step-12 forecasts issued during it (targets 12..19) are too high
    pattern = "++++++" + "." * 6 + "-" * 8
    d = advance_alerts(
        rows({"a": series(pattern)}), None, k=K, m=M, freq_us=FREQ_US, level=0.8, step=12
    )
    assert [(a.direction, a.status) for a in d.changed] == [(ABOVE, RESOLVED)]
    # step 1: the alert resolves at slot 5; forecasts issued up to 5 + quiet are not trusted
    pattern = "++++" + "." * M + "-" * 8
    for quiet, start in ((0, 4 + M - 1 + 2), (3, 4 + M - 1 + 2 + 3)):
        d = advance_alerts(
            rows({"a": series(pattern)}),
            None,
            k=K,
            m=M,
            freq_us=FREQ_US,
            level=0.8,
            step=1,
            quiet=quiet,
        )
        below = [a for a in d.changed if a.direction == BELOW]
        assert [a.started_at for a in below] == [us(start)], quiet


def test_a_gap_in_the_scored_slots_restarts_the_count():
    # K - 1 breaches, a slot without a scored forecast, K - 1 breaches: no alert
    pattern = "+" * (K - 1) + " " + "+" * (K - 1)
    assert run(rows({"a": series(pattern)})).changed == []
    # a gap while open neither continues nor ends it; the slots back must be consecutive
    (a,) = run(rows({"a": series("+" * K + ". " + "." * (M - 1) + " +")})).changed
    assert a.status == OPEN and a.slots_breached == K + 1 and a.last_breach_at == us(K + M + 2)
    (b,) = run(rows({"a": series("+" * K + "  " + "." * M)})).changed
    assert b.status == RESOLVED and b.resolved_at == us(K + 2 + M - 1)


def test_other_series_are_judged_on_their_own():
    d = run(rows({"a": series("++++"), "b": series("+++.+++"), "c": series("....")}))
    assert [a.series_id for a in d.changed] == ["a"]


def test_running_again_with_the_stored_state_changes_nothing():
    frame = rows({"a": series("...++++++" + "." * M), "b": series("..----")})
    first = run(frame)
    assert {(a.series_id, a.status) for a in first.changed} == {("a", RESOLVED), ("b", OPEN)}
    again = run(frame, stored(first.changed))
    assert again.changed == [] and again.opened == [] and again.resolved == []


def test_a_replayed_window_inside_a_resolved_alert_opens_nothing():
    d = run(rows({"a": series("++++++" + "." * M)}))
    (a,) = d.resolved
    # a later call whose rows start in the middle of that run (a re-run of an old slot)
    again = run(rows({"a": series("++++", start=2)}), stored(d.changed))
    assert again.changed == []
    # a new run after the resolution is a new alert
    later = run(rows({"a": series("++++", start=20)}), stored(d.changed))
    assert [x.started_at for x in later.opened] == [us(20)]


def _incremental(values: dict[str, dict[int, float]], n: int, k: int, m: int):
    """One call per slot, each given the k - 1 slots before it too (what a predict run does),
    the stored state carried over like the store carries it."""
    frame = rows(values)
    known: dict[tuple, dict] = {}
    for i in range(n):
        window = frame[(frame.target_ts >= slot(i - k + 1)) & (frame.target_ts <= slot(i))]
        since = us(i - k + 1 - 1)  # what the store reads: quiet (0) + step (1) slots earlier
        keep = [a for a in known.values() if a["status"] == OPEN or a["resolved_at"] >= since]
        d = run(window, stored(Alert(**a) for a in keep), k=k, m=m)
        for a in d.changed:
            known[(a.series_id, a.direction, a.started_at)] = asdict(a)
    return sorted(known.values(), key=lambda a: (a["series_id"], a["direction"], a["started_at"]))


@pytest.mark.parametrize("seed", range(4))
def test_slot_by_slot_equals_one_pass_over_the_whole_history(seed):
    rng = np.random.default_rng(seed)
    n, k, m = 200, 3, 2
    values = {}
    for sid in ("a", "b", "c"):
        pattern = "".join(rng.choice(list(".+- "), p=[0.45, 0.25, 0.2, 0.1], size=n))
        values[sid] = series(pattern)
    whole = run(rows(values), k=k, m=m)
    one_pass = sorted(
        (asdict(a) for a in whole.changed),
        key=lambda a: (a["series_id"], a["direction"], a["started_at"]),
    )
    assert len(one_pass) > 5  # the random history holds alerts to compare
    assert _incremental(values, n, k, m) == one_pass


def test_false_alarm_arithmetic_and_the_default_k():
    # 80 %: p = 0.1 per side; 288 slots a day
    assert expected_false_alerts(0.8, 6, 288) == pytest.approx(2 * 288 * 0.9 * 1e-6)
    assert default_alert_slots(0.8, 288) == 6
    assert default_alert_slots(0.95, 288) == 4
    assert default_alert_slots(0.8, 24) == 5  # hourly data: fewer slots a day
    assert expected_false_alerts(0.8, 5, 288) > 0.001 >= expected_false_alerts(0.8, 6, 288)
