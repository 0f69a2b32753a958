"""Prefect tasks of the retrain: choose the series samples, prepare the panels, train,
judge on unseen series, register. Thin: the work is in lstm/."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import task

from lstm import Forecaster, fit_forecaster
from lstm.panel import Panel, PrepReport
from lstm.promotion import Decision, compare_models, decide_promotion, holdout_split
from lstm.sampling import SeriesProfile, SeriesSample, stratified_sample
from lstm.windows import Split
from tasks.common import COMPUTE_TASK, STORAGE_TASK, get_registry, run_logger
from tasks.model_tasks import forecast_config
from tasks.settings import Settings

TRAIN_TIMEOUT_S = 6 * 3600


@dataclass
class TrainingData:
    """The training series and the unseen (held-out) series, each with its split: train |
    validation | the most recent held-out period every model is judged on."""

    train: Panel
    train_split: Split
    unseen: Panel | None
    unseen_split: Split | None
    report: PrepReport
    sample: SeriesSample


@dataclass
class Comparison:
    """Models and baselines on the held-out period: of unseen series (what the decision is
    made on, when there are any) and of the training series."""

    table: pd.DataFrame  # the table the decision is made on
    extras: dict  # arrays of that comparison (plots)
    decision: Decision
    trained: pd.DataFrame
    unseen: pd.DataFrame | None

    @property
    def judged_on(self) -> str:
        return "unseen series" if self.unseen is not None else "training series"


@task(name="choose-sample", **COMPUTE_TASK)
def choose_sample(profile: SeriesProfile, settings: Settings, end: pd.Timestamp) -> SeriesSample:
    """The training and held-out samples of series (deterministic for the seed)."""
    if len(profile) == 0:
        raise ValueError(
            f"no series has metrics in the three profile hours before {end}: the retrain "
            "needs recent data (is the collector writing? pass history_end= to train on an "
            "older period)"
        )
    sample = stratified_sample(
        profile, settings.train_series, settings.holdout_series, settings.seed
    )
    run_logger().info(
        "series sample: %d of %d to train on, %d held out to judge on (FORECAST_TRAIN_SERIES=%d, "
        "FORECAST_HOLDOUT_SERIES=%d)",
        len(sample.train),
        sample.n_series,
        len(sample.holdout),
        settings.train_series,
        settings.holdout_series,
    )
    return sample


@task(name="prepare-panels", **COMPUTE_TASK)
def prepare_panels(
    panel: Panel, report: PrepReport, sample: SeriesSample, settings: Settings
) -> TrainingData:
    """Split the history into the training and the unseen series, and each into train |
    validation | held-out period (repairs and dropped series are logged)."""
    log = run_logger()
    if panel.n_series == 0:
        raise ValueError(
            "the metrics hold no usable rows for the sampled series in the history window "
            f"({len(report.dropped)} series without rows or valid values)"
        )
    log.info(
        "history: %d series, %d values in all; filled %d gaps, summed %d duplicates, %d invalid values, "
        "dropped %d series, ignored %d rows dated after the history's end",
        report.n_series,
        report.slots_out,
        report.filled_slots,
        report.duplicate_rows,
        sum(report.invalid_values.values()),
        len(report.dropped),
        report.future_rows,
    )
    for sid, reason in list(report.dropped.items())[:20]:
        log.warning("series %r dropped: %s", sid, reason)
    slots = int(pd.Timedelta(days=settings.holdout_days) / pd.Timedelta(settings.freq))
    in_train = np.isin(panel.ids, sample.train)
    train = panel.select(in_train)
    unseen = panel.select(~in_train) if (~in_train).any() else None
    return TrainingData(
        train,
        holdout_split(train, slots),
        unseen,
        None if unseen is None else holdout_split(unseen, slots),
        report,
        sample,
    )


@task(name="train-challenger", **{**COMPUTE_TASK, "timeout_seconds": TRAIN_TIMEOUT_S})
def train_challenger(data: TrainingData, settings: Settings) -> Forecaster:
    """Fit a new global model on the training series (feature ranking, early stopping,
    refit) and calibrate its intervals on the unseen series; progress goes to the run's log."""
    calibration = None if data.unseen is None else (data.unseen, data.unseen_split)
    return fit_forecaster(data.train, data.train_split, forecast_config(settings), calibration)


@task(name="compare-models", **COMPUTE_TASK)
def compare(
    data: TrainingData, challenger: Forecaster, champion: Forecaster | None, settings: Settings
) -> Comparison:
    """Challenger vs champion vs Naive and SeasonalNaive on the same held-out period, of the
    unseen series (the decision) and of the training series."""
    models = {"challenger": challenger, "champion": champion}
    h = settings.horizon
    trained, trained_extras = compare_models(data.train, data.train_split, models, h, h)
    unseen = None
    table, extras = trained, trained_extras
    if data.unseen is not None:
        unseen, extras = compare_models(data.unseen, data.unseen_split, models, h, h)
        table = unseen
    for name, err in extras["errors"].items():
        run_logger().warning("%s could not be evaluated: %s", name, err)
    return Comparison(
        table, extras, decide_promotion(table, settings.promotion_margin), trained, unseen
    )


@task(name="register-model", **STORAGE_TASK)
def register(
    settings: Settings,
    challenger: Forecaster,
    comparison: Comparison,
    data: TrainingData,
    champion_version: str | None,
) -> str:
    """Save the challenger as a new immutable version; promote it if the decision says so."""
    reg = get_registry(settings)
    version = reg.save(
        challenger,
        metrics={k: float(v) for k, v in comparison.table.loc["challenger"].items()},
        comparison=comparison_dict(comparison.table),
        evaluation=evaluation_dict(comparison, data),
        decision=comparison.decision.as_dict(),
        champion_at_training=champion_version,
        data_report=data.report.as_dict(),
    )
    if comparison.decision.promote:
        reg.promote(version, comparison.decision.reason)
    return version


def comparison_dict(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    return {
        m: {k: (float(v) if pd.notna(v) else None) for k, v in row.items()}
        for m, row in table.iterrows()
    }


def evaluation_dict(comparison: Comparison, data: TrainingData) -> dict:
    """What the model was judged on: both samples' sizes and MASE on each."""

    def mase(table: pd.DataFrame | None) -> float | None:
        return None if table is None else float(table.loc["challenger", "MASE"])

    return {
        "judged_on": comparison.judged_on,
        "sample": {
            **data.sample.as_dict(),
            "train_ids": data.sample.train,
            "holdout_ids": data.sample.holdout,
        },
        "trained_series": {
            "series": int(data.train.n_series),
            "mase": mase(comparison.trained),
            "table": comparison_dict(comparison.trained),
        },
        "unseen_series": {
            "series": 0 if data.unseen is None else int(data.unseen.n_series),
            "mase": mase(comparison.unseen),
            "table": None if comparison.unseen is None else comparison_dict(comparison.unseen),
            "note": None if data.unseen is not None else "every series is in the training sample",
        },
    }


def retrain_result(
    settings: Settings,
    version: str,
    comparison: Comparison,
    data: TrainingData,
    retention: dict | None = None,
) -> dict:
    """The retrain flow's return value (strict JSON: undefined figures are null)."""
    ev = evaluation_dict(comparison, data)
    return {
        "version": version,
        "promoted": comparison.decision.promote,
        "reason": comparison.decision.reason,
        "champion": get_registry(settings).champion(),
        "judged_on": comparison.judged_on,
        "comparison": comparison_dict(comparison.table),
        "series": data.sample.n_series,
        "trained_series": ev["trained_series"]["series"],
        "unseen_series": ev["unseen_series"]["series"],
        "trained_series_mase": ev["trained_series"]["mase"],
        "unseen_series_mase": ev["unseen_series"]["mase"],
        "future_rows_ignored": data.report.future_rows,
        "retention": retention,
    }
