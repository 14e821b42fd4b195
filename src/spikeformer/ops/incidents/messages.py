"""The runbook's three communication templates, filled from an incident's fields, and posting them to chat.

The templates are those of our runbook, `docs/runbooks/incident-response.md` ("Communication templates": initial
incident report, progress update, resolution notice), which adapts the three of the organisation's
incident-response runbook (title in the header, the commander named in every message);
`tests/incidents/test_messages.py` checks that the rendered messages and the runbook's templates have the same
lines. A field nobody has filled in yet says so instead of being left blank. Times are UTC. The chat webhook is
Slack-compatible: a POST of `{"text": "..."}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from spikeformer.ops.incidents.errors import IncidentConflictError, IncidentInputError
from spikeformer.ops.incidents.views import format_duration, targets
from spikeformer.ops.severity import get_severity
from spikeformer.store import Incident, IncidentEvent

__all__ = ["MESSAGE_KINDS", "check_url", "post_to_chat", "render_message"]

MESSAGE_KINDS = ("initial", "update", "resolution")
_NOT_YET = "not known yet"
# The runbook's status words (Investigating, Identified, Mitigating, Monitoring) by incident state.
_STATUS_TEXT = {
    "open": "Investigating",
    "acknowledged": "Investigating",
    "mitigated": "Monitoring",
    "resolved": "Resolved",
    "closed": "Resolved",
}


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else _NOT_YET


def _interval(minutes: int) -> str:
    return f"{minutes // 60} h" if minutes >= 60 and minutes % 60 == 0 else f"{minutes} min"


def _or(text: str | None, fallback: str = _NOT_YET) -> str:
    return " ".join(text.split()) if text and text.strip() else fallback


def _commander(incident: Incident) -> str:
    return f"Commander: @{incident.commander}" if incident.commander else "Commander: not assigned yet"


def render_message(kind: str, incident: Incident, last_update: IncidentEvent | None, now: datetime) -> str:
    """One of the runbook's templates filled from `incident`.

    Args:
        kind: `initial` (incident report), `update` (progress update) or `resolution` (resolution notice).
        incident: the incident row.
        last_update: the newest `update` event (its message and the `progress` field make the "Progress" line; its
            time is "Last updated"), or None.
        now: the current time (the "Last updated" of an incident that has had no update yet).

    Raises:
        IncidentInputError: an unknown kind.
        IncidentConflictError: a resolution notice for an incident that is not resolved.
    """
    if kind not in MESSAGE_KINDS:
        raise IncidentInputError(f"unknown message {kind!r}: accepted {', '.join(MESSAGE_KINDS)}")
    sev = get_severity(incident.sev)
    header = f"{sev.name}: {incident.title}"
    if kind == "initial":
        return "\n".join(
            [
                f"🚨 INCIDENT - {header}",
                "",
                f"Severity: {sev.name} ({sev.title})",
                f"Summary: {_or(incident.summary, incident.title)}",
                f"Impact: {_or(incident.impact)}",
                f"Start time: {_time(incident.started_at)}",
                f"Status: {_STATUS_TEXT[incident.status]}",
                _commander(incident),
                "",
                f"Next update in {_interval(sev.update_interval_minutes)}.",
            ]
        )
    if kind == "update":
        parts = [p for p in (last_update.message if last_update else "", incident.progress or "") if p.strip()]
        if len(parts) == 2 and parts[0].strip() == parts[1].strip():
            parts = parts[:1]
        t = targets(incident, now)
        next_update = f"next update at {_time(t.update_due_at)}" if t.update_due_at else "no further updates"
        return "\n".join(
            [
                f"📊 INCIDENT UPDATE - {header}",
                "",
                f"Severity: {sev.name}",
                f"Status: {_STATUS_TEXT[incident.status]}",
                f"Progress: {_or('; '.join(parts), 'no progress reported yet')}",
                f"Next steps: {_or(incident.next_steps)}",
                f"ETA: {_time(incident.eta) if incident.eta else f'unknown; {next_update}'}",
                _commander(incident),
                "",
                f"Last updated: {_time(last_update.created_at if last_update else now)}",
            ]
        )
    if incident.resolved_at is None:
        raise IncidentConflictError(
            f"incident {incident.id} is {incident.status}: the resolution notice needs a resolved incident "
            f"(resolve it first)"
        )
    t = targets(incident, now)
    if incident.postmortem_meeting_at:
        postmortem = _time(incident.postmortem_meeting_at)
    elif t.postmortem_required:
        postmortem = f"to be scheduled, by {_time(t.postmortem_due_at)} (within 48 h)"
    else:
        postmortem = f"optional for {sev.name}; if held, by {_time(t.postmortem_due_at)}"
    return "\n".join(
        [
            f"✅ INCIDENT RESOLVED - {header}",
            "",
            f"Severity: {sev.name}",
            f"Summary: {_or(incident.summary, incident.title)}",
            f"Root cause: {_or(incident.root_cause, 'under investigation (see the post-mortem)')}",
            f"Resolution: {_or(incident.resolution)}",
            f"Start time: {_time(incident.started_at)}  Resolved: {_time(incident.resolved_at)}",
            f"Duration: {format_duration(incident.resolved_at - incident.started_at)}",
            _commander(incident),
            "",
            f"Post-mortem: {postmortem}",
        ]
    )


def check_url(url: str | None, what: str, env: str) -> str:
    """`url` if it is an http(s) URL.

    Raises:
        IncidentInputError: no URL (the message names `env`), or not http(s).
    """
    if not url or not url.strip():
        raise IncidentInputError(f"no {what} URL: set {env} or pass one (http://host:port/...)")
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise IncidentInputError(f"the {what} URL must start with http:// or https://, got {url!r}")
    return url


def post_to_chat(
    url: str, text: str, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None
) -> dict[str, Any]:
    """POST `{"text": text}` to a Slack-compatible webhook; never raises.

    Returns:
        `{"posted": True, "status": 200}` or `{"posted": False, "error": "..."}` (unreachable, timeout, or an
        answer that is not 2xx).
    """
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.post(url, json={"text": text})
    except Exception as e:  # noqa: BLE001 - never raises: an unreachable chat must not break incident handling
        return {"posted": False, "error": f"cannot reach the chat webhook: {type(e).__name__}: {e}"}
    if not 200 <= response.status_code < 300:
        detail = response.text.strip()[:200]
        return {
            "posted": False,
            "status": response.status_code,
            "error": f"the chat webhook answered {response.status_code}" + (f": {detail}" if detail else ""),
        }
    return {"posted": True, "status": response.status_code}
