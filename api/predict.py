"""`POST /predict` on the champion: the checks that need the model (window length, the
features it was trained on), then the seed's `real_time_predict`."""

from __future__ import annotations

import pandas as pd
from fastapi.exceptions import RequestValidationError

from api.champion import Loaded
from api.schemas import CALENDAR_INPUTS, Interval, PredictRequest, PredictResponse, Step
from lstm import DataValidationError, real_time_predict
from lstm.intervals import level_key


def _error(field: str, msg: str, kind: str = "value_error") -> dict:
    return {"loc": ("body", field), "msg": msg, "type": kind, "input": None}


def check_against_model(body: PredictRequest, loaded: Loaded) -> None:
    """422 for what only the model can judge: too few values for its window, a feature it
    needs that is missing, a field it does not know."""
    spec, version = loaded.forecaster.spec, loaded.version
    w = spec.window
    errors = []
    for name, values in body.features().items():
        if len(values) < w:
            errors.append(
                _error(
                    name,
                    f"expected {w} values (one per {pd.Timedelta(spec.freq_ns, 'ns')} slot, "
                    f"oldest first, ending at ts), got {len(values)}",
                    "too_short",
                )
            )
    known = {"requests_target", "error_rate", *CALENDAR_INPUTS, *spec.exog}
    for name in spec.exog:
        if getattr(body, name, None) is None and name not in (body.model_extra or {}):
            errors.append(
                _error(name, f"Field required: model {version} was trained with it", "missing")
            )
    for name in body.model_extra or {}:
        if name not in known:
            errors.append(
                _error(
                    name,
                    f"unknown field: model {version} uses {['requests_target', *spec.exog]} "
                    f"(calendar fields {list(CALENDAR_INPUTS)} are accepted and derived from ts)",
                    "extra_forbidden",
                )
            )
    if errors:
        raise RequestValidationError(errors)


def predict_response(body: PredictRequest, loaded: Loaded, level: float) -> PredictResponse:
    check_against_model(body, loaded)
    f = loaded.forecaster
    data = {"requests_target": body.requests_target, "ts": pd.Timestamp(body.ts)}
    feats = body.features()
    for name in f.spec.exog:
        data[name] = feats[name]
    try:
        res = real_time_predict(f, data_dict=data, return_confidence=True)
    except DataValidationError as exc:  # what the library still refuses, as a 422
        raise RequestValidationError([_error("body", str(exc))]) from None
    key = level_key(level)
    if key not in res["intervals"]:  # the job's level is always calibrated; else the widest
        level = res["confidence_level"]
        key = level_key(level)
    lower, upper = res["intervals"][key]["lower"], res["intervals"][key]["upper"]
    steps = [
        Step(step=i + 1, target_ts=t, yhat=y, yhat_lower=lo, yhat_upper=hi)
        for i, (t, y, lo, hi) in enumerate(
            zip(res["target_ts"], res["forecast"], lower, upper, strict=True)
        )
    ]
    return PredictResponse(
        prediction=res["prediction"],
        interval=Interval(level=level, lower=lower[0], upper=upper[0]),
        model_version=loaded.version,
        issued_at=res["issued_at"],
        level=level,
        steps=steps,
        confidence_interval=res["confidence_interval"],
        confidence_level=res["confidence_level"],
    )
