import numpy as np
import pandas as pd
import pytest
from lstm_helpers import small_config

from lstm import (
    load_tuning_config,
    regularize,
    run_hyperparameter_tuning,
    save_tuning_results,
    select_features_lstm,
)
from lstm.features import FeatureSpec


def test_load_tuning_config_reads_the_seed_shape_and_checks_it(tmp_path):
    cfg = load_tuning_config("configs/tuning.yaml")
    assert len(cfg["model_configs"]) == 2 and len(cfg["training_configs"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_configs: []\ntraining_configs: [{lr: 1}]\n")
    with pytest.raises(ValueError, match="'model_configs' must be a non-empty list"):
        load_tuning_config(bad)
    with pytest.raises(ValueError, match="cannot read tuning config"):
        load_tuning_config(tmp_path / "missing.yaml")


def test_grid_runs_every_combination_ranked_by_validation_mase(synth_panel, tmp_path):
    grid = {
        "model_configs": [{"hidden_size": 8}, {"hidden_size": 16}],
        "training_configs": [{"learning_rate": 0.003, "epochs": 2}],
    }
    results = run_hyperparameter_tuning(synth_panel, grid, small_config())
    assert len(results) == 2
    assert list(results["rank"]) == [1, 2]
    assert results["val_MASE"].is_monotonic_increasing
    assert set(results["model.hidden_size"]) == {8, 16}
    assert (results["train.learning_rate"] == 0.003).all()
    out = save_tuning_results(results, tmp_path / "tuning.csv")
    assert len(pd.read_csv(out)) == 2
    with pytest.raises(ValueError, match="unknown tuning key 'no_such_knob'"):
        run_hyperparameter_tuning(
            synth_panel,
            {"model_configs": [{"no_such_knob": 1}], "training_configs": [{}]},
            small_config(),
        )


def test_random_forest_selection_prefers_an_informative_feature():
    rng = np.random.default_rng(0)
    n = 4000
    ts = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    driver = rng.random(n)
    noise = rng.random(n)
    # the target jumps with `driver` one slot later; `noise` carries nothing
    value = 50 * np.exp(1.5 * np.roll(driver, 1)) + rng.poisson(5, n)
    df = pd.DataFrame(
        {"series_id": "a", "ts": ts, "value": value, "driver": driver, "noise": noise}
    )
    panel, _ = regularize(df)
    spec = FeatureSpec(calendar=("hour_sin", "is_weekend"), exog=("driver", "noise"), lags=(288,))
    sel = select_features_lstm(panel, spec=spec, top_k=2, sample=3000)
    assert sel.importances.index[0] == "driver"
    assert sel.importances["driver"] > 5 * sel.importances["noise"]
    assert len(sel.selected) == 2 and "driver" in sel.selected
    narrowed = sel.apply(spec)
    assert (
        "driver" in narrowed.exog
        and len(narrowed.exog) + len(narrowed.calendar) + len(narrowed.lags) == 2
    )
    assert sel.to_dict()["method"] == "random_forest_importance"


def test_fit_with_top_k_records_the_choice_in_metadata(synth_panel):
    from dataclasses import replace

    from lstm import fit_forecaster

    cfg = replace(small_config(epochs=1), select_top_k=3)
    f = fit_forecaster(synth_panel, config=cfg)
    sel = f.metadata["feature_selection"]
    assert sel["top_k"] == 3 and len(sel["selected"]) == 3
    assert len(sel["importances"]) == 5 + 1 + 1  # calendar, error_rate, lag_288
    kept = set(f.spec.calendar) | set(f.spec.exog) | {f"lag_{lag}" for lag in f.spec.lags}
    assert kept == set(sel["selected"])
