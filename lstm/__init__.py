"""lstm: a PyTorch LSTM forecasting library for many 5-minute series at once.

The seed's public API is kept (same names, same meaning) and extended: many series, a
12-step direct forecast, calibrated intervals, vectorised batch inference, safe artifacts.
"""

from lstm.artifacts import (
    load_forecaster,
    load_model_weights,
    load_production_model,
    load_scalers,
    save_model_metadata,
    save_model_weights,
    save_scalers,
)
from lstm.backtest import run_backtest
from lstm.config import ForecastConfig
from lstm.data import TimeSeriesDataset, WindowDataset, prepare_data_pipeline, validate_data_shapes
from lstm.errors import ArtifactError, DataValidationError, ForecastError, TrainingError
from lstm.evaluation import evaluate
from lstm.export import export_model_and_scalers_for_api
from lstm.features import CALENDAR_FEATURES, FeatureScaler, FeatureSpec, TargetScaler
from lstm.fit import fit_forecaster
from lstm.forecaster import Forecaster
from lstm.inference import (
    PredictionBuffer,
    batch_predict,
    create_data_buffer,
    real_time_predict,
    update_buffer,
    validate_real_time_input,
)
from lstm.metrics import calculate_mape, calculate_metrics, per_step_metrics
from lstm.model import LSTMConfig, LSTMModel
from lstm.panel import ColumnNames, Panel, PrepReport, load_dataset, regularize
from lstm.plots import plot_metrics_comparison
from lstm.prepare import InferenceReport
from lstm.registry import ModelRegistry, Registry, RegistryBackend
from lstm.selection import select_features_lstm
from lstm.synthetic import MetricsGenerator, generate_metrics
from lstm.training import TrainConfig, train, train_epoch, validate_epoch
from lstm.tuning import load_tuning_config, run_hyperparameter_tuning, save_tuning_results

__all__ = [
    "ArtifactError",
    "CALENDAR_FEATURES",
    "ColumnNames",
    "DataValidationError",
    "FeatureScaler",
    "FeatureSpec",
    "ForecastConfig",
    "ForecastError",
    "Forecaster",
    "InferenceReport",
    "LSTMConfig",
    "LSTMModel",
    "MetricsGenerator",
    "ModelRegistry",
    "Panel",
    "PredictionBuffer",
    "PrepReport",
    "Registry",
    "RegistryBackend",
    "TargetScaler",
    "TimeSeriesDataset",
    "TrainConfig",
    "TrainingError",
    "WindowDataset",
    "batch_predict",
    "calculate_mape",
    "calculate_metrics",
    "create_data_buffer",
    "evaluate",
    "export_model_and_scalers_for_api",
    "fit_forecaster",
    "generate_metrics",
    "load_dataset",
    "load_forecaster",
    "load_model_weights",
    "load_production_model",
    "load_scalers",
    "load_tuning_config",
    "per_step_metrics",
    "plot_metrics_comparison",
    "prepare_data_pipeline",
    "real_time_predict",
    "regularize",
    "run_backtest",
    "run_hyperparameter_tuning",
    "save_model_metadata",
    "save_model_weights",
    "save_scalers",
    "save_tuning_results",
    "select_features_lstm",
    "train",
    "train_epoch",
    "update_buffer",
    "validate_data_shapes",
    "validate_epoch",
    "validate_real_time_input",
]
