"""Breach alerts after each scoring (thin: the rules and the state are in storage/): update the
store's alerts, emit one Prefect event per alert opened or resolved, report.

Events: ``forecast.breach.started`` and ``forecast.breach.resolved``, the series as resource
(``prefect.resource.id = forecast.series.<series_id>``), the model version as related
resource, and a payload of direction, level, slots, excess (interval widths), started_at,
last_breach_at and resolved_at. A Prefect automation triggers on them (README). One run
emits at most FORECAST_ALERT_MAX_EVENTS (an incident that takes the whole fleet out of its
band must not become 10,000 pages); the rest are logged and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from prefect import task
from prefect.events import emit_event

from tasks.common import STORAGE_TASK, get_store, run_logger
from tasks.settings import Settings

#: Alerts listed by name in a run's result and artifact (the rest are counted).
MAX_LISTED = 100


def alert_record(row: dict) -> dict:
    """One alert (a ``read_alerts`` row) as plain JSON values (timestamps ISO, NaT None)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp):
            out[key] = value.isoformat()
        elif value is None or (not isinstance(value, str) and pd.isna(value)):
            out[key] = None
        elif key == "slots_breached":
            out[key] = int(value)
        elif isinstance(value, float) or key in ("level", "max_excess"):
            out[key] = float(value)
        else:
            out[key] = str(value)
    return out


def records(frame: pd.DataFrame) -> list[dict]:
    return [alert_record(r) for r in frame.to_dict(orient="records")]


@dataclass
class AlertReport:
    """What one run's alert update did (the summary's and the artifact's alert part)."""

    opened: list[dict]
    resolved: list[dict]
    open: list[dict]  # at most MAX_LISTED, newest first
    n_open: int
    events: int  # events emitted
    events_dropped: int = 0  # over FORECAST_ALERT_MAX_EVENTS
    rule: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "opened": self.opened[:MAX_LISTED],
            "n_opened": len(self.opened),
            "resolved": self.resolved[:MAX_LISTED],
            "n_resolved": len(self.resolved),
            "open": self.open,
            "n_open": self.n_open,
            "events": self.events,
            "events_dropped": self.events_dropped,
            "rule": self.rule,
        }


def breach_event(kind: str, alert: dict) -> dict:
    """The ``emit_event`` arguments of one alert (``kind``: started or resolved)."""
    sid, version = alert["series_id"], alert["model_version"]
    return {
        "event": f"forecast.breach.{kind}",
        "resource": {
            "prefect.resource.id": f"forecast.series.{sid}",
            "prefect.resource.name": sid,
            "forecast.series_id": sid,
        },
        "related": [
            {
                "prefect.resource.id": f"forecast.model.{version}",
                "prefect.resource.role": "model",
                "prefect.resource.name": version,
            }
        ],
        "payload": {
            "series_id": sid,
            "direction": alert["direction"],
            "level": alert["level"],
            "slots": alert["slots_breached"],
            "excess": alert["max_excess"],
            "started_at": alert["started_at"],
            "last_breach_at": alert["last_breach_at"],
            "resolved_at": alert["resolved_at"],
            "model_version": version,
        },
    }


def emit_breach_events(opened: list[dict], resolved: list[dict], limit: int) -> tuple[int, int]:
    """Emit started events, then resolved ones, at most ``limit``: (emitted, dropped)."""
    todo = [("started", a) for a in opened] + [("resolved", a) for a in resolved]
    for kind, alert in todo[:limit]:
        emit_event(**breach_event(kind, alert))
    dropped = max(0, len(todo) - limit)
    if dropped:
        run_logger().warning(
            "%d breach events not emitted (FORECAST_ALERT_MAX_EVENTS=%d); the alerts are stored",
            dropped,
            limit,
        )
    return min(len(todo), limit), dropped


@task(name="update-alerts", **STORAGE_TASK)
def update_alerts(settings: Settings, as_of: pd.Timestamp, slots: int) -> AlertReport:
    """Judge the scored step-FORECAST_ALERT_STEP forecasts of the `slots` target slots up
    to `as_of` (the rule: `Settings.alert_rule`): open, grow and resolve breach alerts in
    the store (idempotent: a re-run opens nothing twice), emit an event for each one opened
    or resolved."""
    rule = settings.alert_rule()
    changes = get_store(settings).update_alerts(as_of, slots, **rule)
    opened, resolved = records(changes.opened), records(changes.resolved)
    log = run_logger()
    for a in opened:
        log.warning(
            "breach alert: %s %s its %.0f%% band since %s (%d slots, up to %.2f widths out)",
            a["series_id"],
            a["direction"],
            100 * a["level"],
            a["started_at"],
            a["slots_breached"],
            a["max_excess"],
        )
    for a in resolved:
        log.info(
            "breach alert resolved: %s no longer %s its band (at %s)",
            a["series_id"],
            a["direction"],
            a["resolved_at"],
        )
    events, dropped = emit_breach_events(opened, resolved, settings.alert_max_events)
    return AlertReport(
        opened,
        resolved,
        records(changes.open.head(MAX_LISTED)),
        len(changes.open),
        events,
        dropped,
        rule,
    )
