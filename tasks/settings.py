"""One settings object for the job: environment variables (prefix FORECAST_), then flow
parameters. Defaults serve the embedded setup (SQLite and a model folder under ./data).

Every value is checked when the settings are built: a bad one is a `SettingsError` naming
the environment variable, the value and the accepted range, before any work starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage import redact_text, redact_url
from storage.breaches import default_alert_slots

DEFAULT_STORE = "sqlite:///data/forecast.db"
DEFAULT_MODELS = Path("data/models")
ENV_PREFIX = "FORECAST_"
#: FORECAST_MODELS_URL=store: the registry's tables live in the store's database
STORE_DB = "store"
#: SQLAlchemy backends a registry URL may name
REGISTRY_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")
REGISTRY_URL_FORMS = (
    "sqlite:///relative.db, sqlite:////absolute.db, postgresql+psycopg://user@host:port/db, "
    "mysql+pymysql://user@host:port/db (or mariadb+pymysql://), or 'store' (the store's "
    "own database)"
)
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://", re.S)
_LOOKS_LIKE_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):", re.S)


class SettingsError(ValueError):
    """A FORECAST_* setting (or flow parameter) has a value the job cannot run with."""


class Settings(BaseSettings):
    """Where things live and how the job behaves. Env: FORECAST_<FIELD>, e.g.
    FORECAST_STORE_URL, FORECAST_MODELS_URL (or FORECAST_MODELS_DIR),
    FORECAST_TRAIN_MAX_SECONDS."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    store_url: str = DEFAULT_STORE
    store_secret_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the store URL (wins over store_url)",
    )
    # the model registry: a folder (models_dir, the embedded default) or, with models_url,
    # a database (sqlite:///..., postgresql+psycopg://..., mysql+pymysql://..., or "store":
    # the store's own database). A URL given as FORECAST_MODELS_DIR (the old name) is taken
    # as models_url. models_dir is also the local folder of retrain reports.
    models_dir: Path = DEFAULT_MODELS
    models_url: str | None = None
    models_table_prefix: str = Field("model_", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,37}$")
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
    window: int = Field(12, ge=2, le=2016)
    horizon: int = Field(12, ge=1, le=288)
    lags: tuple[int, ...] | None = None  # seasonal lags in slots; None: one day and one week
    # every retrain ranks the candidate features (Random-Forest importance, recorded in the
    # model's metadata and the run's artifact); select_top_k keeps only the k best
    feature_ranking: bool = True
    select_top_k: int | None = Field(None, ge=0)
    hidden_size: int = Field(64, ge=1, le=4096)
    num_layers: int = Field(2, ge=1, le=8)
    seed: int = 0

    # retrain
    history_days: float = Field(30.0, gt=0, le=3650)
    # a global model learns from a stratified sample of series (all of them when fewer) and
    # is judged and calibrated on a disjoint held-out sample (lstm/sampling.py)
    train_series: int = Field(2000, ge=1)
    holdout_series: int = Field(500, ge=0)
    holdout_days: float = Field(1.0, gt=0, le=365)
    promotion_margin: float = Field(0.01, ge=0, lt=1)
    # the whole fit: feature ranking, early stopping, calibration and the refit
    train_max_seconds: float = Field(600.0, gt=0)
    retrain_interval_s: int = Field(86_400, ge=60)

    # predict
    level: float = Field(0.8, gt=0, lt=1)
    predict_interval_s: int = Field(300, ge=1)
    max_missing: int | None = Field(None, ge=0)  # None: window // 4
    catch_up_slots: int = Field(12, ge=0, le=2016)  # a run also fills missing slots this far back
    max_lateness_slots: int = Field(3, ge=0)  # a scheduled run later than this skips its slot
    score_lookback_slots: int = Field(288, ge=1)
    # late metrics: a scheduled run waits (polling) until the as-of slot has arrived for this
    # share of the series that reported the slot before, at most data_wait_seconds
    data_wait_seconds: float = Field(90.0, ge=0, le=600)
    data_wait_share: float = Field(0.9, ge=0, le=1)
    data_poll_seconds: float = Field(5.0, gt=0, le=60)
    # a run that forecast fewer than this share of the series it read ends Failed
    min_forecast_share: float = Field(0.5, ge=0, le=1)
    # live recalibration (lstm.livecal): each origin's intervals are stretched per step and
    # level by a rolling conformal factor over the newest calibration_window scored
    # forecasts whose targets lie in the calibration_max_slots slots before it; factor 1
    # below calibration_min_scores. A coverage outside level +- coverage_band over at least
    # coverage_breach_min of them is a breach (logged, and a Prefect event)
    online_calibration: bool = True  # README "Live recalibration"; false: the model's own
    calibration_window: int = Field(2000, ge=10, le=1_000_000)
    calibration_min_scores: int = Field(200, ge=1)
    calibration_max_slots: int = Field(2016, ge=1, le=100_000)
    coverage_band: float = Field(0.05, gt=0, lt=1)
    coverage_breach_min: int = Field(1000, ge=1)
    # torch threads of a predict run: 1 leaves the other cores to a concurrent retrain (two
    # processes each using every core slow each other down many times over)
    predict_threads: int = Field(1, ge=1, le=256)
    # retention (run at the end of each retrain): forecasts issued and accuracy rows
    # targeted longer ago than this are deleted; accuracy is rolled up per day first
    forecast_retention_days: float = Field(30.0, gt=0)
    accuracy_retention_days: float = Field(90.0, gt=0)
    # breach alerts (storage.breaches, README "Breach alerts"): an alert opens at alert_slots
    # consecutive target slots whose step-alert_step actual lies more than alert_min_excess
    # interval widths outside the stored interval (FORECAST_LEVEL) on one side (alert_slots
    # unset: the smallest k for which independent breaches give at most one false alert per
    # series per 1,000 days, 6 at 80 %; alert_step unset: 12, the forecast made an hour
    # before, or the horizon when shorter) and is resolved after alert_clear_slots slots
    # back; one run emits at most alert_max_events Prefect events (the rest are counted)
    alert_slots: int | None = Field(None, ge=1, le=288)
    alert_clear_slots: int = Field(3, ge=1, le=288)
    alert_step: int | None = Field(None, ge=1, le=288)
    alert_min_excess: float = Field(1.0, ge=0, le=1000)
    alert_max_events: int = Field(100, ge=0)
    storage_retries: int = Field(4, ge=0, le=20)  # transient storage errors: retried
    storage_retry_delay_s: float = Field(5.0, ge=0)  # first delay; then x2 (5, 10, 20, 40 s)
    # HTTP API (`forecast api`, api/): read-only, binds 127.0.0.1 unless told otherwise
    # /healthz answers 503 when the newest forecast was issued longer ago than this (a
    # healthy job's newest forecast is at most ~2 slots + the data wait old: 12 min)
    api_max_forecast_age_s: float = Field(1200.0, gt=0)
    api_champion_check_s: float = Field(5.0, ge=0)  # /predict re-reads the pointer this often
    api_cache_s: float = Field(5.0, ge=0)  # /metrics and /healthz reuse store reads this long
    # /metrics forecast gauges: these series (allow-list), else the api_metrics_top_n with
    # the largest current forecast; steps exported (None: every step)
    api_metrics_series: tuple[str, ...] | None = None
    api_metrics_top_n: int = Field(100, ge=0, le=100_000)
    api_metrics_steps: tuple[int, ...] | None = None
    api_accuracy_window_s: float = Field(3600.0, gt=0)  # rolling MAE/coverage in /metrics
    api_latest_limit: int = Field(1000, ge=1, le=1_000_000)  # default rows of /forecasts/latest

    @model_validator(mode="before")
    @classmethod
    def _registry_location(cls, data: Any) -> Any:
        """A URL given as models_dir (FORECAST_MODELS_DIR, --models, a flow's models_dir)
        is the registry URL; a folder given as models_url is the registry folder."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        folder, url = data.get("models_dir"), data.get("models_url")
        if isinstance(folder, str) and looks_like_url(folder):
            if url and str(url).strip() != folder.strip():
                raise ValueError(
                    f"FORECAST_MODELS_DIR ({redact_url(folder)}) and FORECAST_MODELS_URL "
                    f"({redact_url(str(url))}) name different registries: set one"
                )
            data["models_url"] = folder
            del data["models_dir"]
        url = data.get("models_url")
        if isinstance(url, str | Path) and str(url).strip() == "":
            data["models_url"] = None
        elif isinstance(url, Path) or (
            isinstance(url, str) and url.strip() != STORE_DB and not looks_like_url(url)
        ):
            data["models_dir"], data["models_url"] = str(url), None  # a folder
        return data

    @field_validator("models_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(os.path.expanduser(str(v)))

    @field_validator("models_url")
    @classmethod
    def _registry_url(cls, v: str | None) -> str | None:
        if v is None or v.strip() == STORE_DB:
            return None if v is None else STORE_DB
        v = v.strip()
        m = _URL.match(v)
        backend = m["scheme"].split("+")[0].lower() if m else None
        if backend not in REGISTRY_BACKENDS:
            raise ValueError(
                f"{redact_url(v)!r} is not a model registry location; accepted: a folder, "
                f"{REGISTRY_URL_FORMS}"
            )
        return v

    @field_validator("freq")
    @classmethod
    def _freq(cls, v: str) -> str:
        try:
            ok = pd.Timedelta(pd.tseries.frequencies.to_offset(v)) > pd.Timedelta(0)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ValueError("must be a fixed positive frequency such as '5min' or '1h'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_missing is not None and self.max_missing >= self.window:
            raise ValueError(
                f"max_missing={self.max_missing} must be below the window ({self.window}): "
                "a window needs at least one observed value"
            )
        if self.alert_step is not None and self.alert_step > self.horizon:
            raise ValueError(
                f"alert_step={self.alert_step} must be at most the horizon ({self.horizon}): "
                "FORECAST_ALERT_STEP names a forecast step"
            )
        return self

    def alert_rule(self) -> dict[str, Any]:
        """The arguments of ``Store.update_alerts`` these settings give: k, m, level, step,
        min_excess, and quiet (the model's window: forecasts made from an alert's values,
        up to a window after it, open no new alert)."""
        return {
            "k": self.alert_k(),
            "m": self.alert_clear_slots,
            "level": self.level,
            "step": self.alert_step or min(12, self.horizon),
            "min_excess": self.alert_min_excess,
            "quiet": self.window,
        }

    def alert_k(self) -> int:
        """Consecutive breached slots that open an alert: FORECAST_ALERT_SLOTS, else the
        default for FORECAST_LEVEL and the slots of a day (``storage.breaches``)."""
        if self.alert_slots is not None:
            return self.alert_slots
        return default_alert_slots(self.level, pd.Timedelta("1D") / pd.Timedelta(self.freq))

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            secret = name in ("store_url", "models_url") and isinstance(value, str)
            yield name, (redact_url(value) if secret else value)

    def storage_task_options(self) -> dict[str, Any]:
        """Prefect retry options of the storage tasks: exponential backoff."""
        return {
            "retries": self.storage_retries,
            "retry_delay_seconds": [
                self.storage_retry_delay_s * 2**i for i in range(self.storage_retries)
            ],
        }

    def resolved_store_url(self) -> str:
        """The store URL; read from a Prefect Secret block when one is named (so a password
        never sits in a deployment's parameters or logs)."""
        if self.store_secret_block:
            from prefect.blocks.system import Secret

            return str(Secret.load(self.store_secret_block).get())
        return self.store_url

    def resolved_models_url(self) -> str | None:
        """The registry's database URL (None: the folder `models_dir`). "store" is the
        store's own database, read from its Secret block when one is named."""
        if self.models_url != STORE_DB:
            return self.models_url
        url = self.resolved_store_url()
        m = _URL.match(url)
        if not m or m["scheme"].split("+")[0].lower() not in REGISTRY_BACKENDS:
            raise SettingsError(
                f"FORECAST_MODELS_URL=store needs a SQL store, but the store is "
                f"{redact_url(url)}: give the registry a folder or a database URL"
            )
        return url

    def registry_location(self) -> str:
        """Where the registry is, for messages (passwords masked)."""
        if self.models_url is None:
            return str(self.models_dir)
        if self.models_url == STORE_DB:
            return "the store's database (FORECAST_MODELS_URL=store)"
        return redact_url(self.models_url)


def looks_like_url(value: str) -> bool:
    """`scheme:` at the start (a one-letter scheme is a Windows drive, not a URL)."""
    m = _LOOKS_LIKE_URL.match(value.strip())
    return m is not None and len(m["scheme"]) > 1


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment with non-None overrides applied (flow parameters).

    Raises SettingsError naming the variable, the value given and what is accepted."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if "models_dir" in given and "models_url" not in given:
        # a registry given as a parameter wins over the environment's (a URL given as
        # models_dir leaves FORECAST_MODELS_DIR the local folder)
        folder = given.pop("models_dir")
        if isinstance(folder, str) and looks_like_url(folder):
            given["models_url"] = folder
        else:
            given["models_dir"], given["models_url"] = folder, ""
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, overrides)) from None


def _describe(exc: ValidationError, overrides: dict[str, Any]) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        value = err.get("input")
        if field == "models_url" and overrides.get("models_dir") is not None:
            field = "models_dir"  # a registry URL given as the flow's models_dir
        where = (
            f"parameter {field}"
            if overrides.get(field) is not None
            else f"{ENV_PREFIX}{field.upper()}"
        )
        msg = err["msg"].removeprefix("Value error, ")
        if field:
            parts.append(f"{where}={value!r}: {msg}")
        else:
            parts.append(msg)
    return redact_text("invalid settings: " + "; ".join(parts))
