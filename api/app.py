"""`create_app(settings)`: the read-only HTTP API over the store and the model registry.

Endpoints: `GET /forecasts/latest`, `GET /series/{series_id}/forecast`, `POST /predict`,
`GET /healthz`, `GET /metrics`, and FastAPI's `/docs`. No endpoint writes to the store
(they read through `storage.Store`'s read methods only); error details pass through
`storage.redact_text`, so a store password never reaches a response or a log line.

`GET /alerts` (breach alerts, `Store.read_alerts`). A new read endpoint is a few lines:
read through `state.read` (store errors become a 503 with the message, password masked)
and answer with `rows_response` (any frame as JSON rows, timestamps in ISO 8601 UTC, NaN
as null), as `/alerts` does.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from api.champion import ChampionHolder, NoChampion
from api.metrics import ForecastCollector, Reader
from api.predict import predict_response
from api.schemas import ForecastRows, Health, PredictRequest, PredictResponse
from lstm import ArtifactError, Registry
from storage import StorageError, Store, redact_text
from tasks.common import get_registry, get_store
from tasks.settings import Settings

log = logging.getLogger("api")
T = TypeVar("T")


class ApiState:
    """What the endpoints share: settings, the store (opened on first use, never for
    writing), the champion holder and the metrics reader."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        now: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        self.settings = settings
        self.freq = pd.Timedelta(settings.freq)
        self.now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self.registry = registry or get_registry(settings, create=False)
        self.champion = ChampionHolder(self.registry, settings.api_champion_check_s)
        self.reader = Reader(settings, self.store, self.now)

    def store(self) -> Store:
        return get_store(self.settings, create=False)

    def redact(self, text: str) -> str:
        return redact_text(text, self.settings.store_url)

    def read(self, fn: Callable[[Store], T]) -> T:
        """`fn(store)`; a storage failure is a 503 naming it (password masked)."""
        try:
            return fn(self.store())
        except StorageError as exc:
            msg = self.redact(str(exc))
            log.warning("store read failed: %s", msg)
            raise HTTPException(503, f"store unavailable: {msg}") from None


def api_state(request: Request) -> ApiState:
    """The app's ApiState, for endpoints defined outside create_app (`Depends(api_state)`)."""
    return request.app.state.api


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def rows_response(frame: pd.DataFrame, key: str, **extra: Any) -> Response:
    """`{**extra, "count": n, key: [rows]}` as JSON: timestamps ISO 8601 UTC, NaN as null,
    floats exact (shortest round-trip repr)."""
    cols: dict[str, list] = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            utc = pd.to_datetime(col, utc=True)
            text = np.datetime_as_string(utc.dt.tz_localize(None).to_numpy(), unit="us")
            cols[name] = [None if t == "NaT" else t.removesuffix(".000000") + "Z" for t in text]
        else:
            cols[name] = [_json_value(v) for v in col.tolist()]
    names = list(cols)
    rows = [dict(zip(names, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
    body = {**extra, "count": len(rows), key: rows}
    return Response(json.dumps(body, allow_nan=False), media_type="application/json")


def _where(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def create_app(
    settings: Settings,
    registry: Registry | None = None,
    now: Callable[[], pd.Timestamp] | None = None,
) -> FastAPI:
    """The API on these settings (`registry` and `now` are for tests)."""
    state = ApiState(settings, registry, now)
    app = FastAPI(
        title="lstm-forecast API",
        summary="Latest forecasts, single-series /predict on the champion, health, metrics",
        version="1",
    )
    app.state.api = state
    prom = CollectorRegistry(auto_describe=False)
    prom.register(ForecastCollector(state.reader, state.champion.version))
    predictions = Counter(
        "lstm_forecast_api_predictions",
        "POST /predict requests by outcome (ok, invalid, unavailable)",
        ["outcome"],
        registry=prom,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": list(e["loc"]),
                "field": _where(e["loc"]),
                "msg": str(e["msg"]).removeprefix("Value error, "),
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        if request.url.path == "/predict":
            predictions.labels("invalid").inc()
        message = "; ".join(f"{e['field']}: {e['msg']}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": errors, "message": message})

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    def latest_rows(ids: list[str] | None, start, end, limit: int | None) -> Response:
        lo = pd.Timestamp(start) if start is not None else state.now().floor(state.freq)
        lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo
        if end is not None:
            hi = pd.Timestamp(end)
            hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi
            if hi < lo:
                raise RequestValidationError(
                    [
                        {
                            "loc": ("query", "end"),
                            "msg": f"end {hi.isoformat()} is before start {lo.isoformat()}",
                            "type": "value_error",
                        }
                    ]
                )
            end = hi
        frame = state.read(lambda s: s.read_latest_forecasts(series_ids=ids, start=lo, end=end))
        if ids:
            unknown = sorted(set(ids) - set(frame["series_id"]))
            if unknown:
                named = repr(unknown[0]) if len(unknown) == 1 else str(unknown)
                raise HTTPException(
                    404,
                    f"unknown series {named}: no forecasts for it targeted at or after "
                    f"{lo.isoformat()} (pass start= to look further back)",
                )
        truncated = limit is not None and len(frame) > limit
        if truncated:
            frame = frame.head(limit)
        return rows_response(frame, "forecasts", truncated=truncated)

    @app.get("/forecasts/latest", response_model=ForecastRows, tags=["forecasts"])
    def forecasts_latest(
        series_id: Annotated[
            list[str] | None, Query(description="Series id (repeat for several); all if absent")
        ] = None,
        start: Annotated[
            datetime | None, Query(description="First target time (default: the current slot)")
        ] = None,
        end: Annotated[datetime | None, Query(description="Last target time")] = None,
        limit: Annotated[
            int, Query(ge=1, le=1_000_000, description="At most this many rows")
        ] = settings.api_latest_limit,
    ) -> Response:
        """The newest forecast for each series and target time (the `forecasts_latest`
        view), from the current slot on, sorted by series_id and target_ts."""
        return latest_rows(series_id, start, end, limit)

    @app.get("/series/{series_id}/forecast", response_model=ForecastRows, tags=["forecasts"])
    def series_forecast(
        series_id: str,
        start: Annotated[
            datetime | None, Query(description="First target time (default: the current slot)")
        ] = None,
        end: Annotated[datetime | None, Query(description="Last target time")] = None,
    ) -> Response:
        """One series' newest forecast per target time, from the current slot on."""
        return latest_rows([series_id], start, end, None)

    @app.get("/alerts", tags=["alerts"])
    def alerts(
        open: Annotated[bool, Query(description="Only alerts still open")] = True,
        series_id: Annotated[list[str] | None, Query(description="Only these series")] = None,
        since: Annotated[
            datetime | None, Query(description="Open, or resolved at or after this time")
        ] = None,
    ) -> Response:
        """Breach alerts (k consecutive slots out of the band), newest first: series,
        level, direction, started_at, last_breach_at, slots_breached, max_excess (interval
        widths), model_version, status, resolved_at."""
        frame = state.read(
            lambda s: s.read_alerts(open_only=open, series_ids=series_id, since=since)
        )
        return rows_response(frame, "alerts", open_only=open)

    @app.post("/predict", response_model=PredictResponse, tags=["predict"])
    def predict(body: PredictRequest) -> PredictResponse:
        """Forecast one series from its latest values on the current champion (the seed's
        `real_time_predict`): 12 steps with intervals. Nothing is stored."""
        try:
            loaded = state.champion.get()
        except NoChampion as exc:
            predictions.labels("unavailable").inc()
            raise HTTPException(503, f"no model to predict with: {exc}") from None
        out = predict_response(body, loaded, settings.level)
        predictions.labels("ok").inc()
        return out

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> JSONResponse:
        """200 when the store answers and the newest forecast is younger than
        FORECAST_API_MAX_FORECAST_AGE_S; else 503 with the reasons."""
        reasons: list[str] = []
        bound = settings.api_max_forecast_age_s
        now = state.now()
        newest, age, reachable = None, None, True
        try:
            newest = state.reader.newest_issued(state.store(), now)
        except StorageError as exc:
            reachable = False
            reasons.append(f"store unreachable: {state.redact(str(exc))}")
        if newest is not None:
            age = (now - newest).total_seconds()
            if age > bound:
                reasons.append(
                    f"newest forecast is {age:.0f} s old (issued at {newest.isoformat()}), "
                    f"above FORECAST_API_MAX_FORECAST_AGE_S={bound:g}: is the predict "
                    "schedule running?"
                )
        elif reachable:
            reasons.append("no forecast issued in the last 7 days: run `forecast predict`")
        try:
            champion, champion_error = state.registry.champion(), state.champion.error
        except ArtifactError as exc:
            champion, champion_error = None, str(exc)
        body = Health(
            status="unhealthy" if reasons else "ok",
            reasons=reasons,
            store_reachable=reachable,
            champion_version=champion,
            serving_version=state.champion.version(),
            champion_error=champion_error,
            newest_issued_at=newest,
            newest_forecast_age_s=age,
            max_forecast_age_s=bound,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=503 if reasons else 200)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text format: job metrics, rolling accuracy, the forecast band."""
        return Response(generate_latest(prom), media_type=CONTENT_TYPE_LATEST)

    return app
