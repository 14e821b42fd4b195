"""The state machine's constants, an incident's response targets, and the JSON views of incidents, events, alerts.

Targets come from the one severity table (`spikeformer.ops.severity`): an incident is *ack overdue* while it is
`open` later than `started_at + response_minutes`, *update overdue* while it is active (open, acknowledged,
mitigated) later than `last_update_at + update_interval_minutes`, and its post-mortem is *overdue* while it is
`resolved` (not yet closed) later than `resolved_at + 48 h` and is SEV-1 or SEV-2 (for SEV-3 and SEV-4 a
post-mortem is optional: the due date is shown, never flagged).

Two views of an incident: `incident_view` (everything: for keys with scope `alerts` or `admin`, the CLI) and
`public_incident_view` (for readers without a key). The public view is built from public sources only: its
`progress`, `next_steps` and `eta` are those of the latest *public* updates (an internal update changes the
incident's fields but not what the public sees), its timeline holds public entries only, its alerts carry no labels,
annotations or URLs, the alert group's key and labels are left out, and API key prefixes (`api key sfk_3Jc0`, the
author of a change made with a key) read `operator` wherever they occur.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from spikeformer.ops.severity import Severity, get_severity
from spikeformer.store import ACTIVE_STATUSES, Incident, IncidentAlert, IncidentEvent
from spikeformer.store.api_keys import KEY_PREFIX

__all__ = [
    "ACTIVE_STATUSES",
    "EVENT_KINDS",
    "KEYLESS_AUTHOR",
    "POSTMORTEM_DUE",
    "POSTMORTEM_REQUIRED_LEVEL",
    "PUBLIC_EVENT_DATA",
    "PublicIncident",
    "Targets",
    "alert_view",
    "event_view",
    "format_duration",
    "incident_view",
    "iso",
    "public_alert_view",
    "public_event_view",
    "public_incident_view",
    "redact_keys",
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


# What an API key prefix reads as for readers without a key.
KEYLESS_AUTHOR = "operator"
# The `data` of public timeline events that readers without a key see, by event kind (any other: none; the data of
# an Alertmanager event holds labels and URLs).
PUBLIC_EVENT_DATA: dict[str, tuple[str, ...]] = {
    "update": ("progress", "next_steps", "eta"),
    "resolved": ("root_cause", "resolution"),
}
_PUBLIC_ALERT_FIELDS = ("alertname", "status", "sev", "starts_at", "ends_at")
# `api key sfk_3Jc0` (the author of a change made with a key), and any other key prefix or whole key in a text.
_KEY_AUTHOR = re.compile(r"\bapi key " + re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]*")
_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]*")


def redact_keys(text: str | None) -> str | None:
    """`text` with API key prefixes replaced: `api key sfk_3Jc0` -> `operator`, any other `sfk_...` -> `[key]`."""
    if not text:
        return text
    return _KEY.sub("[key]", _KEY_AUTHOR.sub(KEYLESS_AUTHOR, text))


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


class PublicIncident:
    """An incident as readers without a key may see it: the row's fields, with the public ones replaced.

    Reading an attribute never changes the row. `progress`, `next_steps` and `eta` are replayed from the public
    `update` events (each field from the latest public update that gave one, as `post_update` sets them); the texts
    a person or an alert wrote have API key prefixes redacted (`redact_keys`); the alert group's key and labels are
    None.

    Args:
        incident: the row.
        events: its timeline (only the public entries are read).
    """

    _REDACTED = ("title", "summary", "impact", "commander", "acknowledged_by", "root_cause", "resolution")
    _HIDDEN = ("alert_group", "group_labels")

    def __init__(self, incident: Incident, events: Sequence[IncidentEvent]) -> None:
        fields: dict[str, Any] = {"progress": None, "next_steps": None, "eta": None}
        for event in events:
            if event.kind != "update" or event.visibility != "public" or not event.data:
                continue
            data = json.loads(event.data)
            for name in ("progress", "next_steps"):
                if name in data:
                    fields[name] = redact_keys(data[name])
            if data.get("eta"):
                fields["eta"] = datetime.fromisoformat(data["eta"])
        for name in self._REDACTED:
            fields[name] = redact_keys(getattr(incident, name))
        fields.update(dict.fromkeys(self._HIDDEN))
        self._incident = incident
        self._fields = fields

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        return getattr(self.__dict__["_incident"], name)


def public_event_view(event: IncidentEvent) -> dict[str, Any]:
    """A public timeline event for readers without a key: key prefixes redacted, data only as `PUBLIC_EVENT_DATA`."""
    data = _json(event.data)
    allowed = PUBLIC_EVENT_DATA.get(event.kind, ())
    public_data = {k: redact_keys(v) if isinstance(v, str) else v for k, v in (data or {}).items() if k in allowed}
    return {
        "id": event.id,
        "time": iso(event.created_at),
        "kind": event.kind,
        "visibility": event.visibility,
        "author": redact_keys(event.author),
        "message": redact_keys(event.message),
        "data": public_data or None,
    }


def public_alert_view(alert: IncidentAlert) -> dict[str, Any]:
    """An attached alert for readers without a key: its name, status, severity and times (no labels, no URLs)."""
    view = alert_view(alert)
    return {k: view[k] for k in _PUBLIC_ALERT_FIELDS}


def public_incident_view(
    incident: Incident,
    now: datetime,
    events: Sequence[IncidentEvent],
    alerts: Sequence[IncidentAlert] | None = None,
    timeline: bool = True,
) -> dict[str, Any]:
    """An incident as readers without a key see it (the fields of `incident_view`, from public sources only).

    Args:
        incident: the row.
        now: the time the overdue flags are computed for.
        events: its timeline; internal entries are skipped (they may be passed or left out).
        alerts: the attached alerts to include (omitted when None).
        timeline: include the public timeline.
    """
    public = [e for e in events if e.visibility == "public"]
    view = incident_view(PublicIncident(incident, public), now)  # type: ignore[arg-type]  # reads attributes only
    if timeline:
        view["timeline"] = [public_event_view(e) for e in public]
    if alerts is not None:
        view["alerts"] = [public_alert_view(a) for a in alerts]
    return view
