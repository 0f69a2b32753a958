"""Live recalibration at one origin (lstm.livecal): scored rows in, stretched intervals out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm.livecal import (
    LiveCalibration,
    newest_per_step,
    recalibrate,
    recalibrate_batch,
    score_order,
)

Z80 = 1.2815515655446004


def _frame(n_series: int = 3, horizon: int = 2, level: float = 0.8) -> pd.DataFrame:
    steps = np.tile(np.arange(1, horizon + 1), n_series)
    return pd.DataFrame(
        {
            "series_id": np.repeat([f"s{i}" for i in range(n_series)], horizon),
            "step": steps,
            "level": level,
            "yhat": 10.0,
            "yhat_lower": 10.0 - Z80,
            "yhat_upper": 10.0 + Z80 * 2,  # asymmetric: each side stretched on its own
        }
    )


def _scored(n: int, sigma: float, horizon: int = 2, scale: float = 1.0, seed: int = 0):
    """n scored rows per step with N(0, sigma) errors, written with intervals `scale` x the
    model's calibrated +-Z80 (sigma 1)."""
    rng = np.random.default_rng(seed)
    step = np.tile(np.arange(1, horizon + 1), n)
    y = rng.normal(0.0, sigma, n * horizon)
    return pd.DataFrame(
        {
            "target_ts": pd.Timestamp("2024-01-01", tz="UTC"),
            "step": step,
            "level": 0.8,
            "y": y,
            "yhat": 0.0,
            "yhat_lower": -Z80 * scale,
            "yhat_upper": Z80 * scale,
            "interval_scale": scale,
        }
    )


def test_noise_doubled_the_intervals_double():
    out, rep = recalibrate(_frame(), _scored(4000, 2.0), 2, LiveCalibration())
    f = out["interval_scale"].to_numpy()
    assert f == pytest.approx(np.full(len(out), 2.0), rel=0.08)
    np.testing.assert_allclose(out["yhat_upper"] - 10.0, 2 * Z80 * f)
    np.testing.assert_allclose(10.0 - out["yhat_lower"], Z80 * f)
    assert (out["yhat"] == 10.0).all()  # the median is untouched
    lv = rep["levels"]["80"]
    assert lv["scores_by_step"] == [2000, 2000]
    assert abs(lv["coverage_pct"] - 48.0) < 3  # as written (sigma 1 bounds, sigma 2 noise)
    assert {b["step"] for b in rep["breaches"]} == {"all", 1, 2}


def test_factors_are_relative_to_the_model_not_to_the_previous_run():
    """Rows written already stretched by 2 (interval_scale 2) under noise sigma 2 give a
    factor 2 again (the model's interval needs 2), not 1 (which would undo it next run)."""
    out, rep = recalibrate(_frame(), _scored(4000, 2.0, scale=2.0), 2, LiveCalibration())
    assert out["interval_scale"].to_numpy() == pytest.approx(np.full(len(out), 2.0), rel=0.08)
    assert abs(rep["levels"]["80"]["coverage_pct"] - 80.0) < 3
    assert rep["breaches"] == []


def test_no_scored_history_keeps_the_model_intervals():
    frame = _frame()
    out, rep = recalibrate(frame, _scored(0, 1.0), 2, LiveCalibration())
    assert (out["interval_scale"] == 1.0).all()
    pd.testing.assert_frame_equal(out.drop(columns="interval_scale"), frame)
    assert rep["levels"]["80"]["scores_by_step"] == [0, 0]
    few, _ = recalibrate(frame, _scored(50, 3.0), 2, LiveCalibration())  # 100 < 200
    assert (few["interval_scale"] == 1.0).all()


def test_only_scores_of_the_same_level_count():
    scored = _scored(4000, 2.0).assign(level=0.95)
    out, _ = recalibrate(_frame(level=0.8), scored, 2, LiveCalibration())
    assert (out["interval_scale"] == 1.0).all()


def test_a_breach_needs_enough_scores():
    _, rep = recalibrate(_frame(), _scored(400, 2.0), 2, LiveCalibration(breach_min=1000))
    assert rep["breaches"] == []
    _, rep = recalibrate(_frame(), _scored(400, 2.0), 2, LiveCalibration(breach_min=400))
    assert [b["step"] for b in rep["breaches"]] == ["all", 1, 2]


def _timed(n_series: int, targets, sigma: float, seed: int) -> pd.DataFrame:
    """Scored rows of steps 1-2 for `n_series` series at each of `targets`, N(0, sigma)."""
    rng = np.random.default_rng(seed)
    parts = []
    for t in targets:
        for step in (1, 2):
            parts.append(
                pd.DataFrame(
                    {
                        "target_ts": t,
                        "series_id": [f"s{i:03d}" for i in range(n_series)],
                        "step": step,
                        "level": 0.8,
                        "y": rng.normal(0.0, sigma, n_series),
                        "yhat": 0.0,
                        "yhat_lower": -Z80,
                        "yhat_upper": Z80,
                        "interval_scale": 1.0,
                    }
                )
            )
    return score_order(pd.concat(parts, ignore_index=True))


def _no_actuals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_id": pd.Series([], dtype=object),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "value": pd.Series([], dtype=float),
        }
    )


def test_a_batch_origin_uses_no_score_of_a_target_at_or_after_it():
    """Two origins o and o + 5min: scores of targets up to o - 5min are calm (sigma 1),
    those of target o are wild (sigma 10). The first origin's factors are those of the calm
    scores alone (it would widen ~10x if it read the wild ones); the second reads them."""
    t0 = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    step = pd.Timedelta("5min")
    calm = _timed(200, [t0 - k * step for k in range(10, 0, -1)], 1.0, 1)
    wild = _timed(200, [t0], 10.0, 2)
    frame = pd.concat(
        [_frame().assign(issued_at=t0), _frame().assign(issued_at=t0 + step)], ignore_index=True
    )
    frame["target_ts"] = frame["issued_at"] + frame["step"] * step
    cfg = LiveCalibration(window=400, min_scores=100)
    out, rep = recalibrate_batch(
        frame, score_order(pd.concat([calm, wild])), _no_actuals(), 2, cfg, step, 100
    )
    alone, _ = recalibrate(frame[frame.issued_at == t0], calm, 2, cfg)
    first = out[out.issued_at == t0]
    np.testing.assert_array_equal(first["interval_scale"], alone["interval_scale"])
    assert first["interval_scale"].max() < 1.5
    second = out[out.issued_at == t0 + step]["interval_scale"]
    assert second.min() > 2.0 * first["interval_scale"].max()  # the wild target counts now
    assert rep["origins"] == 2


def test_newest_per_step_keeps_the_last_rows_of_each_step_and_level():
    rows = _timed(3, [pd.Timestamp("2024-01-01", tz="UTC")], 1.0, 0)
    cut = newest_per_step(rows, 2)
    assert cut.groupby("step")["series_id"].apply(list).to_dict() == {
        1: ["s001", "s002"],
        2: ["s001", "s002"],
    }
