"""The Prefect automations README "Breach alerts" shows (configs/breach-automations.yaml):
they validate as Prefect's own `prefect automation create --from-file` validates them, they
match the events the predict runs emit, and their messages render."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from prefect.events.schemas.automations import AutomationCore
from prefect.events.schemas.events import Event
from prefect.server.utilities.user_templates import render_user_template

from tasks.alert_tasks import breach_event

FILE = Path(__file__).resolve().parents[2] / "configs" / "breach-automations.yaml"
ALERT = {
    "series_id": "checkout-api",
    "level": 0.8,
    "direction": "above",
    "started_at": "2026-03-02T08:40:00+00:00",
    "last_breach_at": "2026-03-02T09:05:00+00:00",
    "slots_breached": 6,
    "max_excess": 2.345,
    "model_version": "20260302T031500Z-ab12cd",
    "status": "open",
    "resolved_at": None,
}


def test_the_breach_automations_validate_match_the_events_and_render():
    automations = [
        AutomationCore.model_validate(a) for a in yaml.safe_load(FILE.read_text())["automations"]
    ]
    by_event = {next(iter(a.trigger.expect)): a for a in automations}
    assert set(by_event) == {"forecast.breach.started", "forecast.breach.resolved"}
    resolved = {**ALERT, "status": "resolved", "resolved_at": "2026-03-02T09:25:00+00:00"}
    for kind, alert in (("started", ALERT), ("resolved", resolved)):
        event = Event(**breach_event(kind, alert))
        automation = by_event[event.event]
        assert automation.trigger.match.matches(event.resource)
        (action,) = automation.actions
        body = asyncio.run(render_user_template(action.body, {"event": event}))
        subject = asyncio.run(render_user_template(action.subject, {"event": event}))
        assert "checkout-api" in subject and "checkout-api" in body, (subject, body)
        if kind == "started":
            assert body.startswith(
                "checkout-api has been above its 80 % forecast interval for 6 slots since "
                "2026-03-02T08:40:00+00:00 (up to 2.3 interval widths out; model "
            ), body
        else:
            assert "resolved at 2026-03-02T09:25:00+00:00" in body, body
