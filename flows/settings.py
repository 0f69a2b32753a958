"""One settings object for the job: environment variables (prefix FORECAST_), then flow
parameters. Defaults serve the embedded setup (SQLite and a model folder under ./data)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STORE = "sqlite:///data/forecast.db"
_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:]*:)[^@/]*@")


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (safe to print)."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***@", str(url))


DEFAULT_MODELS = Path("data/models")


class Settings(BaseSettings):
    """Where things live and how the job behaves. Env: FORECAST_<FIELD>, e.g.
    FORECAST_STORE_URL, FORECAST_MODELS_DIR, FORECAST_TRAIN_MAX_SECONDS."""

    model_config = SettingsConfigDict(env_prefix="FORECAST_", extra="ignore")

    store_url: str = DEFAULT_STORE
    store_secret_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the store URL (wins over store_url)",
    )
    models_dir: Path = DEFAULT_MODELS
    freq: str = "5min"

    # metrics source mapping (the store's tables and columns)
    id_col: str = "series_id"
    time_col: str = "ts"
    target_col: str = "value"
    feature_cols: tuple[str, ...] | None = None
    metrics_table: str = "metrics"
    forecasts_table: str = "forecasts"
    accuracy_table: str = "forecast_accuracy"

    # model
    window: int = 12
    horizon: int = 12
    lags: tuple[int, ...] | None = None  # seasonal lags in slots; None: one day and one week
    # every retrain ranks the candidate features (Random-Forest importance, recorded in the
    # model's metadata and the run's artifact); select_top_k keeps only the k best
    feature_ranking: bool = True
    select_top_k: int | None = None
    hidden_size: int = 64
    num_layers: int = 2
    seed: int = 0

    # retrain
    history_days: float = 30.0
    holdout_days: float = 1.0
    promotion_margin: float = 0.01
    train_max_seconds: float = 400.0  # early-stopping phase; the refit adds at most as much
    retrain_interval_s: int = 86_400

    # predict
    level: float = 0.8
    predict_interval_s: int = 300
    max_missing: int | None = None
    catch_up_slots: int = 12  # a run also fills missing forecast slots this far back
    max_lateness_slots: int = 3  # a scheduled run later than this skips its own slot
    score_lookback_slots: int = 288
    # torch threads of a predict run: 1 leaves the other cores to a concurrent retrain (two
    # processes each using every core slow each other down many times over)
    predict_threads: int = 1
    storage_retries: int = 4  # transient storage errors: retry with exponential backoff
    storage_retry_delay_s: float = 5.0  # first delay; then x2 (5, 10, 20, 40 s)

    def storage_task_options(self) -> dict:
        """Retry options for storage tasks, from these settings (tests shorten them)."""
        return {
            "retries": self.storage_retries,
            "retry_delay_seconds": [
                self.storage_retry_delay_s * 2**i for i in range(self.storage_retries)
            ],
        }

    @field_validator("models_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(os.path.expanduser(str(v)))

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "store_url" else value)

    def resolved_store_url(self) -> str:
        """The store URL; read from a Prefect Secret block when one is named (so a password
        never sits in a deployment's parameters or logs)."""
        if self.store_secret_block:
            from prefect.blocks.system import Secret

            return str(Secret.load(self.store_secret_block).get())
        return self.store_url


def get_settings(**overrides) -> Settings:
    """Settings from the environment with non-None overrides applied (flow parameters)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
