"""The state machine's constants, an incident's response targets, and the JSON views of incidents, events, alerts.

Targets come from the one severity table (`spikeformer.ops.severity`): an incident is *ack overdue* while it is
`open` later than `started_at + response_minutes`, *update overdue* while it is active (open, acknowledged,
mitigated) later than `last_update_at + update_interval_minutes`, and its post-mortem is *overdue* while it is
`resolved` (not yet closed) later than `resolved_at + 48 h` and is SEV-1 or SEV-2 (for SEV-3 and SEV-4 a
post-mortem is optional: the due date is shown, never flagged).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from spikeformer.ops.severity import Severity, get_severity
from spikeformer.store import ACTIVE_STATUSES, Incident, IncidentAlert, IncidentEvent

__all__ = [
    "ACTIVE_STATUSES",
    "EVENT_KINDS",
    "POSTMORTEM_DUE",
    "POSTMORTEM_REQUIRED_LEVEL",
    "Targets",
    "alert_view",
    "event_view",
    "format_duration",
    "incident_view",
    "iso",
    "targets",
]

# The runbook's post-mortem process: within 48 hours of resolution, for every SEV-1 and SEV-2 incident (and any
# other worth learning from: optional, so never flagged overdue).
POSTMORTEM_DUE = timedelta(hours=48)
POSTMORTEM_REQUIRED_LEVEL = 2

# Timeline event kinds, each with what it records.
EVENT_KINDS: dict[str, str] = {
    "opened": "the incident was opened (by a person or by Alertmanager)",
    "acknowledged": "someone took the incident (status open -> acknowledged)",
    "commander": "the incident commander was assigned or changed",
    "note": "a free-form timeline entry (internal unless made public)",
    "update": "a progress update (public unless made internal); restarts the update clock",
    "severity": "the severity changed, or an alert asked for a lower one that was not applied",
    "mitigated": "the impact is stopped (status -> mitigated)",
    "resolved": "the cause is fixed (status -> resolved)",
    "closed": "the post-mortem is done (status -> closed)",
    "smoke": "the passing smoke run (`spikeformer smoke`) that verified recovery before closing",
    "close_forced": "closed without a passing smoke run (`force`), with the reason given",
    "alert_firing": "an Alertmanager alert of the incident's group fired (or fired again)",
    "alert_resolved": "an Alertmanager alert of the incident's group resolved",
    "alerts_resolved": "every alert of the incident has resolved (the incident itself stays as it is)",
    "silence": "an Alertmanager silence was created, or creating it failed",
    "chat": "a message was posted to the chat webhook, or posting it failed",
}


def iso(value: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 (`2025-01-01T12:00:00+00:00`), None as None."""
    return None if value is None else value.isoformat()


def format_duration(delta: timedelta | None) -> str:
    """`timedelta` -> `"1 h 05 min"`, `"12 min"`, `"45 s"`, `"2 d 3 h"`; None -> `"-"`."""
    if delta is None:
        return "-"
    seconds = int(max(delta.total_seconds(), 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


class Targets:
    """The response targets of one incident at time `now` (see the module docstring)."""

    def __init__(self, incident: Incident, now: datetime) -> None:
        self.severity: Severity = get_severity(incident.sev)
        active = incident.status in ACTIVE_STATUSES
        self.ack_due_at = incident.started_at + self.severity.response_time
        self.ack_overdue = incident.status == "open" and now > self.ack_due_at
        self.update_due_at = incident.last_update_at + self.severity.update_interval if active else None
        self.update_overdue = self.update_due_at is not None and now > self.update_due_at
        self.postmortem_required = self.severity.level <= POSTMORTEM_REQUIRED_LEVEL
        self.postmortem_due_at = incident.resolved_at + POSTMORTEM_DUE if incident.resolved_at else None
        self.postmortem_overdue = (
            self.postmortem_required
            and incident.status == "resolved"
            and self.postmortem_due_at is not None
            and now > self.postmortem_due_at
        )


def targets(incident: Incident, now: datetime) -> Targets:
    """The response targets of `incident` at `now`."""
    return Targets(incident, now)


def _since(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else round((later - earlier).total_seconds(), 3)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def event_view(event: IncidentEvent) -> dict[str, Any]:
    """A timeline event as JSON-ready data."""
    return {
        "id": event.id,
        "time": iso(event.created_at),
        "kind": event.kind,
        "visibility": event.visibility,
        "author": event.author,
        "message": event.message,
        "data": _json(event.data),
    }


def alert_view(alert: IncidentAlert) -> dict[str, Any]:
    """An attached Alertmanager alert as JSON-ready data."""
    return {
        "fingerprint": alert.fingerprint,
        "alertname": alert.alertname,
        "status": alert.status,
        "sev": alert.sev,
        "labels": _json(alert.labels),
        "annotations": _json(alert.annotations),
        "starts_at": iso(alert.starts_at),
        "ends_at": iso(alert.ends_at),
        "generator_url": alert.generator_url,
        "last_seen_at": iso(alert.last_seen_at),
    }


def incident_view(
    incident: Incident,
    now: datetime,
    events: Sequence[IncidentEvent] | None = None,
    alerts: Sequence[IncidentAlert] | None = None,
) -> dict[str, Any]:
    """An incident as JSON-ready data: its fields, its severity's targets and overdue flags, and its durations.

    Args:
        incident: the row.
        now: the time the overdue flags are computed for.
        events: the timeline to include (omitted when None).
        alerts: the attached alerts to include (omitted when None).
    """
    t = targets(incident, now)
    s = t.severity
    view: dict[str, Any] = {
        "id": incident.id,
        "title": incident.title,
        "sev": incident.sev,
        "severity": {
            "name": s.name,
            "title": s.title,
            "definition": s.definition,
            "response_minutes": s.response_minutes,
            "update_interval_minutes": s.update_interval_minutes,
            "routing": s.routing,
        },
        "status": incident.status,
        "active": incident.status in ACTIVE_STATUSES,
        "summary": incident.summary,
        "impact": incident.impact,
        "commander": incident.commander,
        "source": incident.source,
        "alert_group": incident.alert_group,
        "group_labels": _json(incident.group_labels),
        "progress": incident.progress,
        "next_steps": incident.next_steps,
        "eta": iso(incident.eta),
        "root_cause": incident.root_cause,
        "resolution": incident.resolution,
        "started_at": iso(incident.started_at),
        "created_at": iso(incident.created_at),
        "acknowledged_at": iso(incident.acknowledged_at),
        "acknowledged_by": incident.acknowledged_by,
        "mitigated_at": iso(incident.mitigated_at),
        "resolved_at": iso(incident.resolved_at),
        "closed_at": iso(incident.closed_at),
        "last_update_at": iso(incident.last_update_at),
        "postmortem_meeting_at": iso(incident.postmortem_meeting_at),
        "ack_due_at": iso(t.ack_due_at),
        "ack_overdue": t.ack_overdue,
        "update_due_at": iso(t.update_due_at),
        "update_overdue": t.update_overdue,
        "postmortem_required": t.postmortem_required,
        "postmortem_due_at": iso(t.postmortem_due_at),
        "postmortem_overdue": t.postmortem_overdue,
        "time_to_acknowledge_s": _since(incident.acknowledged_at, incident.started_at),
        "time_to_mitigate_s": _since(incident.mitigated_at, incident.started_at),
        "time_to_resolve_s": _since(incident.resolved_at, incident.started_at),
    }
    if events is not None:
        view["timeline"] = [event_view(e) for e in events]
    if alerts is not None:
        view["alerts"] = [alert_view(a) for a in alerts]
    return view
