"""The JSON contracts of the API: `/predict`'s input (the seed's `real_time_predict` input)
and the responses, as pydantic models: a bad input is a 422 naming the field and what is
wrong with it, before any model runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

#: the longest list accepted (a week and a day of 5-minute values feed every lag)
MAX_VALUES = 2400
#: a finite number: NaN, Infinity and strings are refused ("Input should be a finite number")
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Values = Annotated[list[Number], Field(max_length=MAX_VALUES)]
_VALUES = TypeAdapter(Values)

#: fields the seed's input may carry besides the target and ts (calendar features: the
#: model derives them from `ts`; they are accepted and checked, not used)
CALENDAR_INPUTS = ("hour_sin", "hour_cos", "dow_sin", "dow_cos", "is_weekend")


class PredictRequest(BaseModel):
    """One series' latest values, oldest first (the seed's `real_time_predict` input).

    Each list holds one value per 5-minute slot ending at `ts`: as many as the model's
    window (12), and `requests_target` may hold more (one day or one week of history feeds
    the seasonal lags). Features the champion was trained on (e.g. `error_rate`) are
    required; other numeric features are refused unless the model knows them."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "requests_target": [
                        120.0,
                        118,
                        131,
                        125,
                        140,
                        138,
                        150,
                        149,
                        160,
                        158,
                        171,
                        165,
                    ],
                    "error_rate": [0.01] * 12,
                    "hour_sin": [0.5] * 12,
                    "hour_cos": [0.866] * 12,
                    "is_weekend": [0] * 12,
                    "ts": "2026-12-02T12:40:00Z",
                }
            ]
        },
    )

    requests_target: Values = Field(
        description="The target (requests per slot), oldest first; `value` is accepted too",
    )
    ts: datetime = Field(description="Timestamp of the last value (UTC when naive)")
    error_rate: Values | None = None
    hour_sin: Values | None = None
    hour_cos: Values | None = None
    dow_sin: Values | None = None
    dow_cos: Values | None = None
    is_weekend: Values | None = None

    @model_validator(mode="before")
    @classmethod
    def _value_alias(cls, data: Any) -> Any:
        """The product's name for the target, `value`, stands for `requests_target`."""
        if isinstance(data, dict) and "value" in data and "requests_target" not in data:
            data = {**data, "requests_target": data["value"]}
            del data["value"]
        return data

    @field_validator("requests_target")
    @classmethod
    def _counts(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if x < 0]
        if bad:
            raise ValueError(f"must be >= 0 (a count of requests); got {bad[:3]}")
        return v

    @field_validator("is_weekend")
    @classmethod
    def _flag(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(x not in (0.0, 1.0) for x in v):
            raise ValueError(f"must hold 0 or 1; got {sorted({x for x in v} - {0.0, 1.0})[:3]}")
        return v

    @model_validator(mode="after")
    def _extras_are_numbers(self) -> PredictRequest:
        """Extra fields must be lists of finite numbers too (the model may know them)."""
        for name, value in (self.model_extra or {}).items():
            try:
                _VALUES.validate_python(value)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = f" at position {err['loc'][0]}" if err["loc"] else ""
                raise ValueError(f"field {name!r}{where}: {err['msg']}") from None
        return self

    def features(self) -> dict[str, list[float]]:
        """Every numeric list given, by name (target as `requests_target`)."""
        out = {"requests_target": self.requests_target}
        for name in ("error_rate", *CALENDAR_INPUTS):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(self.model_extra or {})
        return out


class Interval(BaseModel):
    level: float = Field(description="Nominal coverage, e.g. 0.8")
    lower: float
    upper: float


class Step(BaseModel):
    step: int
    target_ts: datetime
    yhat: float
    yhat_lower: float
    yhat_upper: float


class PredictResponse(BaseModel):
    prediction: float = Field(description="Forecast of the next slot (step 1)")
    interval: Interval = Field(description="Interval of step 1 at the job's level")
    model_version: str
    issued_at: datetime = Field(description="The slot the forecast starts from (ts floored)")
    level: float
    steps: list[Step] = Field(description="Every step of the horizon (12 x 5 minutes)")
    confidence_interval: tuple[float, float] = Field(
        description="The seed's name: (lower, upper) of step 1 at the widest calibrated level"
    )
    confidence_level: float


class ForecastRow(BaseModel):
    series_id: str
    issued_at: datetime
    target_ts: datetime
    step: int
    yhat: float
    yhat_lower: float
    yhat_upper: float
    level: float
    model_version: str
    created_at: datetime | None = None


class ForecastRows(BaseModel):
    count: int
    truncated: bool = Field(description="More rows matched than `limit`")
    forecasts: list[ForecastRow]


class Health(BaseModel):
    status: str = Field(description="ok, or unhealthy with the reasons")
    reasons: list[str]
    store_reachable: bool
    champion_version: str | None
    serving_version: str | None = Field(description="The model /predict runs on now")
    champion_error: str | None = Field(description="Why the champion is not serving, if so")
    newest_issued_at: datetime | None
    newest_forecast_age_s: float | None
    max_forecast_age_s: float
