"""Column and table names: the user's mapping, the canonical names, and identifier checks.

Every configurable name is checked against :data:`IDENTIFIER_PATTERN` before any SQL or
path is built from it, so a name can never smuggle SQL or a path separator in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from storage.errors import ConfigError, SchemaError

#: Letters, digits and underscores, starting with a letter or underscore, at most 48
#: characters (room for the ``ix_``/``_latest`` names derived from it within PostgreSQL's 63).
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")

# Canonical names of the frames the store returns.
SERIES_ID = "series_id"
TS = "ts"
VALUE = "value"

#: Timestamps travel as microseconds since the epoch, UTC; frames use this resolution.
TS_UNIT = "us"
TS_TYPE = pa.timestamp(TS_UNIT, tz="UTC")

FORECAST_SCHEMA = pa.schema(
    [
        ("series_id", pa.string()),
        ("issued_at", TS_TYPE),
        ("target_ts", TS_TYPE),
        ("step", pa.int64()),
        ("yhat", pa.float64()),
        ("yhat_lower", pa.float64()),
        ("yhat_upper", pa.float64()),
        ("level", pa.float64()),
        ("model_version", pa.string()),
        ("created_at", TS_TYPE),
        # the factor online recalibration stretched the model's interval by (1.0: the
        # model's own calibration); added after the first release, read as 1.0 where absent
        ("interval_scale", pa.float64()),
    ]
)
FORECAST_KEY = ("series_id", "issued_at", "step")

ACCURACY_SCHEMA = pa.schema(
    [
        ("series_id", pa.string()),
        ("issued_at", TS_TYPE),
        ("step", pa.int64()),
        ("target_ts", TS_TYPE),
        ("model_version", pa.string()),
        ("y", pa.float64()),
        ("yhat", pa.float64()),
        ("yhat_lower", pa.float64()),
        ("yhat_upper", pa.float64()),
        ("level", pa.float64()),
        ("abs_error", pa.float64()),
        ("covered", pa.bool_()),
        ("scored_at", TS_TYPE),
        ("interval_scale", pa.float64()),  # the scored forecast's (yhat_lower/upper as written)
    ]
)
ACCURACY_KEY = ("series_id", "issued_at", "step")

#: A breach alert as stored (``storage.alerts``): the columns ``read_alerts`` returns
#: (``ALERT_COLUMNS``) and the detector's state (opened_at: the slot that completed the k
#: breaches; checked_at: the last slot folded in; clear_slots: slots back inside since the
#: last breach; step: the forecast step judged). resolved_at is NULL while open.
ALERT_SCHEMA = pa.schema(
    [
        ("series_id", pa.string()),
        ("direction", pa.string()),
        ("started_at", TS_TYPE),
        ("opened_at", TS_TYPE),
        ("last_breach_at", TS_TYPE),
        ("checked_at", TS_TYPE),
        ("slots_breached", pa.int64()),
        ("clear_slots", pa.int64()),
        ("max_excess", pa.float64()),
        ("level", pa.float64()),
        ("step", pa.int64()),
        ("model_version", pa.string()),
        ("status", pa.string()),
        ("resolved_at", TS_TYPE),
    ]
)
ALERT_KEY = ("series_id", "direction", "started_at")
ALERT_COLUMNS = (
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
)

#: Columns ``read_accuracy`` may group by.
ACCURACY_GROUPS = ("series_id", "model_version", "step", "level")
#: Columns of the accuracy summary after the group columns.
ACCURACY_SUMMARY = ("n", "mae", "wape_pct", "coverage_pct", "interval_score", "sis_pct")
#: Columns added to the forecasts and accuracy tables after the first release, with the
#: value rows written before them read as (a table of an older version gets them on open).
ADDED_COLUMNS = {"interval_scale": 1.0}


def check_identifier(name: object, what: str) -> str:
    """Return ``name`` if it is a safe SQL identifier / file name, else raise ConfigError."""
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.match(name):
        raise ConfigError(
            f"{what} {name!r} is not allowed: names must match {IDENTIFIER_PATTERN.pattern} "
            "(letters, digits, underscore; no spaces, quotes, dots or dashes)"
        )
    return name


@dataclass(frozen=True)
class ColumnMap:
    """Names of the columns in the user's metrics source.

    ``feature_cols=None`` means every other numeric column is a feature. Frames returned by
    the store always use the canonical names ``series_id, ts, value`` (features keep theirs).
    """

    id_col: str = SERIES_ID
    time_col: str = TS
    target_col: str = VALUE
    feature_cols: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_identifier(self.id_col, "id column")
        check_identifier(self.time_col, "time column")
        check_identifier(self.target_col, "target column")
        keys = [self.id_col, self.time_col, self.target_col]
        if len(set(keys)) != 3:
            raise ConfigError(f"id, time and target columns must differ, got {keys}")
        if self.feature_cols is not None:
            if isinstance(self.feature_cols, str):
                raise ConfigError(
                    f"feature_cols must be a tuple of names, not the string {self.feature_cols!r}"
                )
            object.__setattr__(self, "feature_cols", tuple(self.feature_cols))
            for col in self.feature_cols:
                check_identifier(col, "feature column")
            clash = [c for c in self.feature_cols if c in keys]
            if clash:
                raise ConfigError(f"feature columns {clash} are also id/time/target columns")
            if len(set(self.feature_cols)) != len(self.feature_cols):
                raise ConfigError(f"feature columns repeat a name: {list(self.feature_cols)}")

    @classmethod
    def nixtla(cls, feature_cols: tuple[str, ...] | None = None) -> ColumnMap:
        """Nixtla's long format: ``unique_id, ds, y``."""
        return cls("unique_id", "ds", "y", feature_cols)

    @property
    def keys(self) -> tuple[str, str, str]:
        """The source names of id, time and target."""
        return (self.id_col, self.time_col, self.target_col)

    def check_feature_names(self, features: list[str]) -> None:
        """Refuse features whose names would collide with the canonical output names."""
        clash = [f for f in features if f in (SERIES_ID, TS, VALUE)]
        if clash:
            raise SchemaError(
                f"feature column(s) {clash} would collide with the canonical output columns "
                f"{[SERIES_ID, TS, VALUE]}; list feature_cols explicitly without them"
            )


@dataclass(frozen=True)
class TableNames:
    """Names of the tables (SQL) or sub-folders (Parquet) the store uses.

    ``latest_view`` is the SQL view giving the latest forecast per series and target time;
    empty means ``<forecasts>_latest``. Retention keeps ``<accuracy>_daily`` (a table or
    sub-folder); breach alerts live in ``<forecasts>_alerts``.
    """

    metrics: str = "metrics"
    forecasts: str = "forecasts"
    accuracy: str = "forecast_accuracy"
    latest_view: str = field(default="")

    def __post_init__(self) -> None:
        check_identifier(self.metrics, "metrics table")
        check_identifier(self.forecasts, "forecasts table")
        check_identifier(self.accuracy, "accuracy table")
        if not self.latest_view:
            object.__setattr__(self, "latest_view", f"{self.forecasts}_latest")
        check_identifier(self.latest_view, "latest-forecast view")
        names = [self.metrics, self.forecasts, self.accuracy, self.latest_view]
        if len(set([*names, self.accuracy_daily, self.alerts])) != 6:
            raise ConfigError(
                f"table names must differ (and from {self.accuracy_daily!r} and "
                f"{self.alerts!r}), got {names}"
            )

    @property
    def accuracy_daily(self) -> str:
        """The daily accuracy roll-up that retention keeps: ``<accuracy>_daily``."""
        return f"{self.accuracy}_daily"

    @property
    def alerts(self) -> str:
        """The breach alerts (``storage.alerts``): ``<forecasts>_alerts``."""
        return f"{self.forecasts}_alerts"
