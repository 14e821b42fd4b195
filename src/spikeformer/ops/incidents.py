"""Incident logic: the state machine, the timeline, Alertmanager alert groups, silences, messages, post-mortems.

State machine (every change is a timeline event with its author and time)::

    open ──acknowledge──► acknowledged ──mitigate──► mitigated ──resolve──► resolved ──close──► closed
      │                        │                                  ▲
      └──────── mitigate / resolve (acknowledge first, implied) ──┘

- `open`: detected, nobody has taken it; the acknowledgement target (`response_minutes` of its SEV, from the
  detection time `started_at`) runs.
- `acknowledged`: someone owns it (the first acknowledger becomes commander unless one is assigned).
- `mitigated`: the impact has stopped; the cause may still be there.
- `resolved`: the cause is fixed; the post-mortem falls due 48 h later.
- `closed`: the post-mortem is done and a passing smoke run (`spikeformer.ops.smoke`) verified the recovery, or
  someone forced the close with a reason; only notes can still be added.

While an incident is active (open, acknowledged, mitigated) a progress update is due every
`update_interval_minutes` of its SEV (counted from the last update, or from opening). Severities come from the one
table in `spikeformer.ops.severity`. The service gauges `spikeformer_incident_ack_overdue{sev}` and
`spikeformer_incident_update_overdue{sev}` are set from `severity_metrics()`.

Alertmanager: `handle_alertmanager(payload)` opens or updates the incident of the alert group (found by group key,
else by the fingerprint of an alert it already holds), escalates the severity to the most severe `sev` label
firing (a less severe one is recorded in the timeline, never applied), and records each alert's firing and
resolution once, however often the notification is repeated.

Every method opens its own transaction on the `Database` and returns JSON-ready data; HTTP calls (silences, chat)
run outside transactions, and their failures are recorded in the timeline rather than raised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError

from spikeformer.ops.incident_alertmanager import (
    AlertGroup,
    WebhookAlert,
    alert_severity,
    create_silence,
    expire_silence,
    group_hash,
    parse_webhook,
)
from spikeformer.ops.incident_common import (
    ACTIVE_STATUSES,
    ALERTMANAGER_URL_ENV,
    CHAT_WEBHOOK_URL_ENV,
    EVENT_KINDS,
    POSTMORTEM_DUE,
    IncidentConflictError,
    IncidentError,
    IncidentInputError,
    IncidentNotFoundError,
    format_duration,
    incident_view,
    targets,
)
from spikeformer.ops.incident_messages import MESSAGE_KINDS, check_url, post_to_chat, render_message
from spikeformer.ops.incident_postmortem import render_postmortem
from spikeformer.ops.severity import SEVERITIES, Severity, get_severity
from spikeformer.ops.smoke import SmokeResultError, assess_result
from spikeformer.store import (
    EVENT_VISIBILITIES,
    INCIDENT_STATUSES,
    Database,
    Incident,
    IncidentEvent,
    IncidentRepository,
    InferenceRecordRepository,
)
from spikeformer.store._types import utcnow

__all__ = [
    "ACTIVE_STATUSES",
    "ALERTMANAGER_URL_ENV",
    "CHAT_WEBHOOK_URL_ENV",
    "DEFAULT_SILENCE",
    "EVENT_KINDS",
    "MESSAGE_KINDS",
    "POSTMORTEM_DUE",
    "IncidentConflictError",
    "IncidentError",
    "IncidentInputError",
    "IncidentNotFoundError",
    "IncidentService",
]

# The runbook silences an acknowledged alert for 4 hours ("endsAt": "<NOW+4h>").
DEFAULT_SILENCE = timedelta(hours=4)
MAX_SILENCE = timedelta(days=7)
ALERTMANAGER_AUTHOR = "alertmanager"
_TITLE_MAX = 200
_TEXT_MAX = 20_000
_BASELINE_MAX = timedelta(hours=24)
_TIME_RANGE = timedelta(days=366)  # times given by callers (start, ETA, meeting) lie within a year of now


def _text(value: str | None, what: str, required: bool = False, limit: int = _TEXT_MAX) -> str:
    if value is not None and not isinstance(value, str):
        raise IncidentInputError(f"{what} must be text, got {type(value).__name__}")
    text = (value or "").strip()
    if "\x00" in text:
        raise IncidentInputError(f"{what} must not contain NUL characters")
    if required and not text:
        raise IncidentInputError(f"{what} must not be empty")
    if len(text) > limit:
        raise IncidentInputError(f"{what} is {len(text)} characters long; at most {limit} are accepted")
    return text


def _author(value: str | None) -> str:
    return _text(value, "author (who makes the change)", required=True, limit=200)


def _severity(value: Severity | str | int) -> Severity:
    try:
        return get_severity(value)
    except ValueError as e:
        raise IncidentInputError(str(e)) from None


def _visibility(value: str) -> str:
    if value not in EVENT_VISIBILITIES:
        raise IncidentInputError(f"unknown visibility {value!r}: accepted {', '.join(EVENT_VISIBILITIES)}")
    return value


def _aware(value: datetime | None, what: str, now: datetime) -> datetime | None:
    """`value` in UTC; refused when naive or more than `_TIME_RANGE` away from `now`."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise IncidentInputError(f"{what} has no time zone: give e.g. 2025-01-01T12:00:00Z")
    value = value.astimezone(UTC)
    if abs(value - now) > _TIME_RANGE:
        raise IncidentInputError(
            f"{what} {value.isoformat()} is more than {_TIME_RANGE.days} days from now ({now.isoformat()})"
        )
    return value


class IncidentService:
    """Incidents on a database.

    Args:
        db: the database (migrated to head).
        clock: the current time (tests pass a fixed one); aware UTC datetimes.
        alertmanager_url: Alertmanager's base URL for silences (default: `SPIKEFORMER_ALERTMANAGER_URL`, read
            when needed).
        chat_webhook_url: a Slack-compatible webhook for the messages (default: `SPIKEFORMER_CHAT_WEBHOOK_URL`).
        http_timeout_s: timeout of each call to Alertmanager or the chat webhook.
        transport: an httpx transport for those calls (tests), default the network.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        alertmanager_url: str | None = None,
        chat_webhook_url: str | None = None,
        http_timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self._alertmanager_url = alertmanager_url
        self._chat_webhook_url = chat_webhook_url
        self.http_timeout_s = http_timeout_s
        self.transport = transport

    # -- configuration ------------------------------------------------------------------------------------------

    def alertmanager_url(self, override: str | None = None) -> str:
        """The Alertmanager base URL: `override`, else the constructor's, else `SPIKEFORMER_ALERTMANAGER_URL`."""
        url = override or self._alertmanager_url or os.environ.get(ALERTMANAGER_URL_ENV, "")
        return check_url(url, "Alertmanager", ALERTMANAGER_URL_ENV).rstrip("/")

    def chat_webhook_url(self, override: str | None = None) -> str:
        """The chat webhook URL: `override`, else the constructor's, else `SPIKEFORMER_CHAT_WEBHOOK_URL`."""
        url = override or self._chat_webhook_url or os.environ.get(CHAT_WEBHOOK_URL_ENV, "")
        return check_url(url, "chat webhook", CHAT_WEBHOOK_URL_ENV)

    def _chat_configured(self) -> bool:
        return bool(self._chat_webhook_url or os.environ.get(CHAT_WEBHOOK_URL_ENV, "").strip())

    # -- helpers ------------------------------------------------------------------------------------------------

    @staticmethod
    def _load(repo: IncidentRepository, incident_id: int, lock: bool = True) -> Incident:
        incident = repo.get(incident_id, lock=lock)
        if incident is None:
            raise IncidentNotFoundError(f"no incident with id {incident_id} (list them: GET /v1/incidents)")
        return incident

    @staticmethod
    def _require(incident: Incident, allowed: tuple[str, ...], action: str) -> None:
        if incident.status not in allowed:
            raise IncidentConflictError(
                f"cannot {action} incident {incident.id}: it is {incident.status}; {action} applies to "
                f"{' or '.join(allowed)} incidents"
            )

    def _event(
        self, repo: IncidentRepository, incident_id: int, kind: str, author: str, message: str = "", **kw: Any
    ) -> IncidentEvent:
        """Append a timeline event at the service's clock time (unless `created_at` is given)."""
        kw.setdefault("created_at", self.clock())
        return repo.add_event(incident_id, kind, author, message, **kw)

    def _view(self, repo: IncidentRepository, incident: Incident, visibility: str | None = None) -> dict[str, Any]:
        return incident_view(incident, self.clock(), repo.events(incident.id, visibility), repo.alerts(incident.id))

    def _acknowledge_row(self, repo: IncidentRepository, incident: Incident, author: str, now: datetime) -> None:
        incident.status = "acknowledged"
        incident.acknowledged_at = now
        incident.acknowledged_by = author
        took = format_duration(now - incident.started_at)
        self._event(repo, incident.id, "acknowledged", author, f"Acknowledged by {author} ({took} after start)")
        if not incident.commander:
            incident.commander = author
            self._event(repo, incident.id, "commander", author, f"Incident commander: {author}")

    # -- commands -----------------------------------------------------------------------------------------------

    def open(
        self,
        title: str,
        sev: Severity | str | int,
        author: str,
        summary: str = "",
        impact: str = "",
        commander: str | None = None,
        started_at: datetime | None = None,
        notify: bool = False,
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """Open an incident.

        Args:
            title: what is wrong, in a few words.
            sev: `SEV-1` .. `SEV-4` (or 1..4).
            author: who opens it.
            summary: a brief description (the initial report's "Summary").
            impact: who or what is affected (the initial report's "Impact").
            commander: the incident commander, if already known.
            started_at: detection time (default: now); the acknowledgement target counts from it.
            notify: post the initial incident report to the chat webhook.
            webhook_url: the chat webhook (default: `SPIKEFORMER_CHAT_WEBHOOK_URL`).

        Returns:
            The incident's view (`incident_view`), plus `chat` when `notify`.
        """
        severity = _severity(sev)
        title = _text(title, "title", required=True, limit=_TITLE_MAX)
        author = _author(author)
        chat_url = self.chat_webhook_url(webhook_url) if notify else None
        now = self.clock()
        started = _aware(started_at, "started_at", now) or now
        if started > now:
            raise IncidentInputError(f"started_at {started.isoformat()} is in the future (now {now.isoformat()})")
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = repo.create(
                title,
                severity.name,
                summary=_text(summary, "summary"),
                impact=_text(impact, "impact"),
                commander=_text(commander, "commander", limit=200) or None,
                started_at=started,
                created_at=now,
                last_update_at=now,
                updated_at=now,
            )
            self._event(
                repo,
                incident.id,
                "opened",
                author,
                f"{severity.name} incident opened: {title}" + (f". {incident.summary}" if incident.summary else ""),
                visibility="public",
                created_at=now,
            )
            if incident.commander:
                self._event(repo, incident.id, "commander", author, f"Incident commander: {incident.commander}")
            incident_id = incident.id
        result = self.get(incident_id)
        if chat_url:
            result["chat"] = self.post_message(incident_id, "initial", author, webhook_url=chat_url)
        return result

    def acknowledge(
        self,
        incident_id: int,
        author: str,
        silence: bool = False,
        silence_duration: timedelta = DEFAULT_SILENCE,
        alertmanager_url: str | None = None,
    ) -> dict[str, Any]:
        """Acknowledge an open incident; optionally silence its alerts in Alertmanager.

        The first acknowledger becomes the commander unless one is assigned. With `silence`, one Alertmanager
        silence is created for the alert group (matching its group labels) or, for an incident without group
        labels, one per firing alert (matching all its labels), lasting `silence_duration`. A silence that cannot
        be created does not undo the acknowledgement: the failure is recorded in the timeline and returned.

        Returns:
            The incident's view plus `silences` (`[{"silenceID", "matchers"}]`) and `silence_errors` when
            `silence`.

        Raises:
            IncidentConflictError: the incident is not open, or `silence` was asked for an incident with no alerts.
            IncidentInputError: no Alertmanager URL, or a duration that is not positive or over 7 days.
        """
        author = _author(author)
        am_url = None
        if silence:
            am_url = self.alertmanager_url(alertmanager_url)
            if not timedelta(0) < silence_duration <= MAX_SILENCE:
                raise IncidentInputError(
                    f"silence duration must be more than 0 and at most {format_duration(MAX_SILENCE)}, "
                    f"got {format_duration(silence_duration)}"
                )
        now = self.clock()
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id)
            if incident.status != "open":
                by = f" by {incident.acknowledged_by}" if incident.acknowledged_by else ""
                raise IncidentConflictError(
                    f"cannot acknowledge incident {incident_id}: it is {incident.status}{by}; only open incidents "
                    f"are acknowledged"
                )
            matcher_sets = self._silence_matchers(repo, incident) if silence else []
            if silence and not matcher_sets:
                raise IncidentConflictError(
                    f"incident {incident_id} has no Alertmanager alerts to silence (it was opened by hand); "
                    f"acknowledge it without silence"
                )
            self._acknowledge_row(repo, incident, author, now)
            title = incident.title
        result = self.get(incident_id)
        if silence and am_url:
            result.update(self._silence(incident_id, title, author, am_url, matcher_sets, now, silence_duration))
            result["timeline"] = self.get(incident_id)["timeline"]
        return result

    @staticmethod
    def _silence_matchers(repo: IncidentRepository, incident: Incident) -> list[dict[str, str]]:
        group_labels = json.loads(incident.group_labels) if incident.group_labels else {}
        if group_labels:
            return [group_labels]
        return [json.loads(a.labels) for a in repo.alerts(incident.id, "firing") if json.loads(a.labels)]

    def _silence(
        self,
        incident_id: int,
        title: str,
        author: str,
        am_url: str,
        matcher_sets: list[dict[str, str]],
        now: datetime,
        duration: timedelta,
    ) -> dict[str, Any]:
        created, errors = [], []
        comment = f"Incident #{incident_id} acknowledged by {author}: {title}"
        for matchers in matcher_sets:
            try:
                silence_id = create_silence(
                    am_url, matchers, now, now + duration, author, comment, self.http_timeout_s, self.transport
                )
                created.append({"silenceID": silence_id, "matchers": matchers})
            except Exception as e:  # noqa: BLE001 - recorded, never raised: the acknowledgement stands
                errors.append(f"cannot create the Alertmanager silence at {am_url} for {matchers}: {e}")
        with self.db.session() as s:
            repo = IncidentRepository(s)
            for item in created:
                self._event(
                    repo,
                    incident_id,
                    "silence",
                    author,
                    f"Alertmanager silence {item['silenceID']} until {(now + duration).isoformat()} for "
                    + ", ".join(f"{k}={v}" for k, v in sorted(item["matchers"].items())),
                    data={"silence_id": item["silenceID"], "matchers": item["matchers"], "alertmanager": am_url},
                )
            for error in errors:
                self._event(repo, incident_id, "silence", author, error, data={"error": error, "alertmanager": am_url})
        return {"silences": created, "silence_errors": errors}

    def assign(self, incident_id: int, commander: str, author: str) -> dict[str, Any]:
        """Make `commander` the incident commander (any state but closed)."""
        commander = _text(commander, "commander", required=True, limit=200)
        author = _author(author)
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id)
            self._require(incident, ("open", "acknowledged", "mitigated", "resolved"), "assign a commander to")
            before = incident.commander
            incident.commander = commander
            self._event(
                repo,
                incident_id,
                "commander",
                author,
                f"Incident commander: {commander}" + (f" (was {before})" if before and before != commander else ""),
            )
        return self.get(incident_id)

    def note(self, incident_id: int, message: str, author: str, visibility: str = "internal") -> dict[str, Any]:
        """Add a free-form timeline entry (internal by default); allowed in every state, closed included."""
        message = _text(message, "message", required=True)
        author = _author(author)
        visibility = _visibility(visibility)
        with self.db.session() as s:
            repo = IncidentRepository(s)
            self._load(repo, incident_id)
            self._event(repo, incident_id, "note", author, message, visibility=visibility)
        return self.get(incident_id)

    def post_update(
        self,
        incident_id: int,
        message: str,
        author: str,
        progress: str | None = None,
        next_steps: str | None = None,
        eta: datetime | None = None,
        visibility: str = "public",
        notify: bool = False,
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """Post a progress update (public by default) on an active incident; it restarts the update clock.

        Args:
            incident_id: the incident.
            message: the current status (the update message's "Summary").
            author: who posts it.
            progress: what has been done (kept until the next update that gives one).
            next_steps: what is being worked on.
            eta: expected resolution time.
            visibility: `public` or `internal`.
            notify: post the progress update message to the chat webhook.
            webhook_url: the chat webhook (default: `SPIKEFORMER_CHAT_WEBHOOK_URL`).
        """
        message = _text(message, "message", required=True)
        author = _author(author)
        visibility = _visibility(visibility)
        now = self.clock()
        eta = _aware(eta, "eta", now)
        chat_url = self.chat_webhook_url(webhook_url) if notify else None
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id)
            self._require(incident, ACTIVE_STATUSES, "post an update on")
            data: dict[str, Any] = {}
            if progress is not None:
                incident.progress = data["progress"] = _text(progress, "progress")
            if next_steps is not None:
                incident.next_steps = data["next_steps"] = _text(next_steps, "next_steps")
            if eta is not None:
                incident.eta = eta
                data["eta"] = eta.isoformat()
            incident.last_update_at = now
            self._event(repo, incident_id, "update", author, message, visibility=visibility, data=data or None)
        result = self.get(incident_id)
        if chat_url:
            result["chat"] = self.post_message(incident_id, "update", author, webhook_url=chat_url)
        return result

    def set_severity(
        self, incident_id: int, sev: Severity | str | int, author: str, reason: str = ""
    ) -> dict[str, Any]:
        """Re-classify an incident (up or down: a person decides); recorded in the timeline with the reason."""
        severity = _severity(sev)
        author = _author(author)
        reason = _text(reason, "reason")
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id)
            self._require(incident, (*ACTIVE_STATUSES, "resolved"), "change the severity of")
            if incident.sev == severity.name:
                raise IncidentConflictError(f"incident {incident_id} is already {severity.name}")
            before = incident.sev
            incident.sev = severity.name
            self._event(
                repo,
                incident_id,
                "severity",
                author,
                f"Severity changed from {before} to {severity.name}" + (f": {reason}" if reason else ""),
                data={"from": before, "to": severity.name},
            )
        return self.get(incident_id)

    def mitigate(self, incident_id: int, author: str, message: str = "") -> dict[str, Any]:
        """Mark the impact as stopped (an open incident is acknowledged by the same author first)."""
        author = _author(author)
        message = _text(message, "message")
        now = self.clock()
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id)
            self._require(incident, ("open", "acknowledged"), "mitigate")
            if incident.status == "open":
                self._acknowledge_row(repo, incident, author, now)
            incident.status = "mitigated"
            incident.mitigated_at = now
            took = format_duration(now - incident.started_at)
            self._event(
                repo,
                incident_id,
                "mitigated",
                author,
                f"Mitigated ({took} after start)" + (f": {message}" if message else ""),
                visibility="public",
            )
        return self.get(incident_id)

    def resolve(
        self,
        incident_id: int,
        author: str,
        root_cause: str | None = None,
        resolution: str | None = None,
        message: str = "",
        postmortem_meeting_at: datetime | None = None,
        notify: bool = False,
        webhook_url: str | None = None,
        expire_silences: bool = True,
    ) -> dict[str, Any]:
        """Mark the cause as fixed; the post-mortem falls due 48 hours later.

        An open incident is acknowledged by the same author first; an incident never marked mitigated is mitigated
        now (its impact ends at the latest with its resolution). Alerts of its group that fire later open a new
        incident.

        Args:
            incident_id: the incident.
            author: who resolves it.
            root_cause: what caused it (the resolution notice's "Root Cause").
            resolution: how it was fixed (the notice's "Resolution").
            message: a public timeline entry (default: the resolution).
            postmortem_meeting_at: when the post-mortem meeting is (default: to be scheduled within 48 h).
            notify: post the resolution notice to the chat webhook.
            webhook_url: the chat webhook (default: `SPIKEFORMER_CHAT_WEBHOOK_URL`).
            expire_silences: expire the Alertmanager silences created when the incident was acknowledged (a
                failure is recorded in the timeline, never raised).
        """
        author = _author(author)
        now = self.clock()
        meeting = _aware(postmortem_meeting_at, "postmortem_meeting_at", now)
        chat_url = self.chat_webhook_url(webhook_url) if notify else None
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id)
            self._require(incident, ACTIVE_STATUSES, "resolve")
            if incident.status == "open":
                self._acknowledge_row(repo, incident, author, now)
            if root_cause is not None:
                incident.root_cause = _text(root_cause, "root_cause")
            if resolution is not None:
                incident.resolution = _text(resolution, "resolution")
            if meeting is not None:
                incident.postmortem_meeting_at = meeting
            incident.status = "resolved"
            incident.mitigated_at = incident.mitigated_at or now
            incident.resolved_at = now
            incident.active_group_hash = None  # the alert group may open a new incident from now on
            text = _text(message, "message") or incident.resolution or ""
            took = format_duration(now - incident.started_at)
            self._event(
                repo,
                incident_id,
                "resolved",
                author,
                f"Resolved ({took} after start)" + (f": {text}" if text else ""),
                visibility="public",
                data={"root_cause": incident.root_cause, "resolution": incident.resolution},
            )
        if expire_silences:
            self._expire_silences(incident_id, author)
        result = self.get(incident_id)
        if chat_url:
            result["chat"] = self.post_message(incident_id, "resolution", author, webhook_url=chat_url)
        return result

    def _expire_silences(self, incident_id: int, author: str) -> None:
        with self.db.session() as s:
            events = IncidentRepository(s).events(incident_id)
        created = {}
        for event in events:
            data = json.loads(event.data) if event.kind == "silence" and event.data else {}
            if data.get("silence_id") and data.get("alertmanager"):
                created[data["silence_id"]] = data["alertmanager"]
            elif data.get("expired"):
                created.pop(data["expired"], None)
        outcomes = []
        for silence_id, url in created.items():
            try:
                expire_silence(url, silence_id, self.http_timeout_s, self.transport)
                outcomes.append((f"Expired Alertmanager silence {silence_id}", {"expired": silence_id}))
            except Exception as e:  # noqa: BLE001 - recorded, never raised: the resolution stands
                error = f"cannot expire the Alertmanager silence {silence_id} at {url}: {e}"
                outcomes.append((error, {"error": error, "silence": silence_id}))
        if outcomes:
            with self.db.session() as s:
                repo = IncidentRepository(s)
                for message, data in outcomes:
                    self._event(repo, incident_id, "silence", author, message, data=data)

    def close(
        self,
        incident_id: int,
        author: str,
        message: str = "",
        smoke: Mapping[str, Any] | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Close a resolved incident (its post-mortem is done) once a passing smoke run verified the recovery.

        The smoke run's summary is attached to the timeline (`smoke`, internal); `force` closes without one and
        records the reason (`close_forced`, internal). See `spikeformer.ops.smoke.assess_result` for what passes.

        Args:
            incident_id: the incident.
            author: who closes it.
            message: added to the `closed` entry (e.g. where the post-mortem is).
            smoke: the JSON of `spikeformer smoke --json` (`SmokeResult.to_dict()`).
            force: close without a passing smoke run; needs `reason`.
            reason: why closing without one is right (required with `force`).

        Raises:
            IncidentConflictError: the incident is not resolved; neither a smoke run nor force was given; the
                smoke run failed, skipped a required check or is older than an hour.
            IncidentInputError: a malformed smoke result, force without a reason, or both smoke and force.
        """
        author = _author(author)
        message = _text(message, "message")
        reason = _text(reason, "reason")
        if smoke is not None and force:
            raise IncidentInputError("give either a passing smoke run or force with a reason, not both")
        if force and not reason:
            raise IncidentInputError("force needs a reason: why may the incident close without a passing smoke run?")
        now = self.clock()
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id)
            self._require(incident, ("resolved",), "close")
            if force:
                self._event(
                    repo,
                    incident_id,
                    "close_forced",
                    author,
                    f"Closed without a passing smoke run (forced): {reason}",
                    data={"reason": reason},
                )
            elif smoke is None:
                raise IncidentConflictError(
                    f"closing incident {incident_id} needs a passing smoke run of the recovered service "
                    "(`spikeformer incident close ID --smoke-url URL --api-key KEY`, or the API's `smoke`: the JSON "
                    "of `spikeformer smoke --json`), or force with a reason"
                )
            else:
                try:
                    passed, verdict, summary = assess_result(smoke, now)
                except SmokeResultError as e:
                    raise IncidentInputError(str(e)) from None
                if not passed:
                    raise IncidentConflictError(
                        f"incident {incident_id} stays resolved: {verdict}; fix it and run `spikeformer smoke` again, "
                        "or close with force and a reason"
                    )
                self._event(repo, incident_id, "smoke", author, f"Recovery verified: {verdict}", data=summary)
            incident.status = "closed"
            incident.closed_at = now
            self._event(repo, incident_id, "closed", author, "Closed" + (f": {message}" if message else ""))
        return self.get(incident_id)

    # -- queries ------------------------------------------------------------------------------------------------

    def get(self, incident_id: int, visibility: str | None = None) -> dict[str, Any]:
        """The incident with its timeline (only `visibility` events when given) and its alerts."""
        if visibility is not None:
            _visibility(visibility)
        with self.db.session() as s:
            repo = IncidentRepository(s)
            return self._view(repo, self._load(repo, incident_id, lock=False), visibility)

    def list_incidents(self, statuses: list[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Incidents, newest first, with their overdue flags (no timelines).

        Args:
            statuses: only these (`open`, `acknowledged`, `mitigated`, `resolved`, `closed`; `active` stands for
                the first three); default every status.
            limit: at most this many (1..1000).
        """
        if not 1 <= limit <= 1000:
            raise IncidentInputError(f"limit must be between 1 and 1000, got {limit}")
        wanted = None
        if statuses:
            wanted = []
            for status in statuses:
                if status == "active":
                    wanted += ACTIVE_STATUSES
                elif status in INCIDENT_STATUSES:
                    wanted.append(status)
                else:
                    accepted = ", ".join(("active", *INCIDENT_STATUSES))
                    raise IncidentInputError(f"unknown incident status {status!r}: accepted {accepted}")
        now = self.clock()
        with self.db.session() as s:
            return [incident_view(i, now) for i in IncidentRepository(s).list_recent(wanted, limit)]

    def severity_metrics(self) -> dict[str, dict[str, int]]:
        """Per SEV: active incidents, those past their acknowledgement target, those past their update interval.

        Returns:
            `{"SEV-1": {"open": n, "ack_overdue": n, "update_overdue": n}, ...}`, every SEV present.
        """
        counts = {s.name: {"open": 0, "ack_overdue": 0, "update_overdue": 0} for s in SEVERITIES}
        now = self.clock()
        with self.db.session() as s:
            for incident in IncidentRepository(s).list_active():
                t = targets(incident, now)
                row = counts[incident.sev]
                row["open"] += 1
                row["ack_overdue"] += int(t.ack_overdue)
                row["update_overdue"] += int(t.update_overdue)
        return counts

    # -- messages -----------------------------------------------------------------------------------------------

    def message(self, incident_id: int, kind: str) -> str:
        """The runbook's `initial`, `update` or `resolution` message filled from the incident."""
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id, lock=False)
            return render_message(kind, incident, repo.last_event(incident_id, "update"), self.clock())

    def post_message(self, incident_id: int, kind: str, author: str, webhook_url: str | None = None) -> dict[str, Any]:
        """Render a message and post it to the chat webhook; the outcome is recorded in the timeline.

        A failed post (unreachable, timeout, non-2xx) is returned as `{"posted": False, "error": ...}` and
        recorded, never raised.

        Raises:
            IncidentInputError: an unknown kind, or no webhook URL configured.
            IncidentConflictError: a resolution notice for an incident that is not resolved.
        """
        author = _author(author)
        url = self.chat_webhook_url(webhook_url)
        text = self.message(incident_id, kind)
        outcome = post_to_chat(url, text, self.http_timeout_s, self.transport)
        what = {"initial": "initial incident report", "update": "progress update", "resolution": "resolution notice"}
        with self.db.session() as s:
            repo = IncidentRepository(s)
            if outcome["posted"]:
                line = f"Posted the {what[kind]} to the chat webhook"
            else:
                line = f"Posting the {what[kind]} to the chat webhook failed: {outcome['error']}"
            self._event(repo, incident_id, "chat", author, line, data={"message": kind, **outcome})
        return {"kind": kind, "text": text, **outcome}

    def postmortem(self, incident_id: int) -> str:
        """The post-mortem draft (Markdown) with the impact measured from the inference records."""
        now = self.clock()
        with self.db.session() as s:
            repo = IncidentRepository(s)
            incident = self._load(repo, incident_id, lock=False)
            start = incident.started_at
            end = incident.resolved_at or now
            length = min(max(end - start, timedelta(minutes=1)), _BASELINE_MAX)
            records = InferenceRecordRepository(s)

            def stats(a: datetime, b: datetime) -> dict[str, Any]:
                by_status = {st: records.count(a, b, status=st) for st in ("error", "timeout", "rejected")}
                return {"start": a, "end": b, **records.window_stats(a, b), "by_status": by_status}

            return render_postmortem(
                incident,
                repo.events(incident_id),
                repo.alerts(incident_id),
                stats(start, end),
                stats(start - length, start),
                now,
            )

    # -- Alertmanager -------------------------------------------------------------------------------------------

    def handle_alertmanager(self, payload: Any, notify: bool | None = None) -> dict[str, Any]:
        """Open or update the incident of an Alertmanager alert group from its webhook payload.

        Args:
            payload: the webhook body (version 4).
            notify: post the initial report of a new incident to the chat webhook (default: when one is configured).

        Returns:
            `{"incident_id", "created", "sev", "status", "events_added", "firing", "resolved"}`; `incident_id`
            is None (and `ignored` says why) for resolved alerts of a group that never had an incident.

        Raises:
            IncidentInputError: the payload is not a version 4 webhook body.
        """
        group = parse_webhook(payload)
        key = group_hash(group.group_key)
        for attempt in range(3):
            try:
                with self.db.session() as s:
                    result = self._apply_group(IncidentRepository(s), group, key)
                break
            except IntegrityError:
                # Another replica opened the group's incident at the same time: apply to that one.
                if attempt == 2:
                    raise
        if notify is None:
            notify = self._chat_configured()
        if result["created"] and notify:
            result["chat"] = self.post_message(result["incident_id"], "initial", ALERTMANAGER_AUTHOR)
        return result

    def _apply_group(self, repo: IncidentRepository, group: AlertGroup, key: str) -> dict[str, Any]:
        now = self.clock()
        author = f"{ALERTMANAGER_AUTHOR} ({group.receiver})" if group.receiver else ALERTMANAGER_AUTHOR
        incident = repo.active_for_group(key) or repo.active_with_fingerprints(a.fingerprint for a in group.alerts)
        before = len(repo.events(incident.id)) if incident else 0
        created = False
        previous = None
        if incident is None:
            previous = repo.latest_for_group(key)
            if not group.firing:
                if previous is None:
                    return {
                        "incident_id": None,
                        "created": False,
                        "ignored": "only resolved alerts, for an alert group that has no incident",
                        "events_added": 0,
                        "firing": 0,
                        "resolved": len(group.alerts),
                    }
                incident = previous  # late resolved notifications are recorded on the group's last incident
                before = len(repo.events(incident.id))
            else:
                incident = self._open_from_group(repo, group, key, author, now, previous)
                created = True
        self._record_alerts(repo, incident, group, author, now, previous if created else None)
        if group.truncated_alerts:
            self._event(
                repo,
                incident.id,
                "note",
                author,
                f"Alertmanager left {group.truncated_alerts} alert(s) of the group out of the notification "
                f"(max_alerts); see {group.external_url or 'Alertmanager'}",
            )
        alerts = repo.alerts(incident.id)
        return {
            "incident_id": incident.id,
            "created": created,
            "sev": incident.sev,
            "status": incident.status,
            "events_added": len(repo.events(incident.id)) - (0 if created else before),
            "firing": sum(a.status == "firing" for a in alerts),
            "resolved": sum(a.status == "resolved" for a in alerts),
        }

    def _open_from_group(
        self,
        repo: IncidentRepository,
        group: AlertGroup,
        key: str,
        author: str,
        now: datetime,
        previous: Incident | None,
    ) -> Incident:
        firing = group.firing
        severity = min((alert_severity(a.labels)[0] for a in firing), key=lambda s: s.level)
        names = sorted({a.name for a in firing})
        annotations = group.common_annotations
        title = annotations.get("summary") or group.group_labels.get("alertname") or ", ".join(names)
        starts = [a.starts_at for a in firing if a.starts_at is not None and a.starts_at <= now]
        incident = repo.create(
            " ".join(title.split())[:_TITLE_MAX] or "Alertmanager alert group",
            severity.name,
            summary=annotations.get("description") or annotations.get("summary") or "",
            impact=f"{len(firing)} alert(s) firing: {', '.join(names)}",
            source="alertmanager",
            alert_group=group.group_key,
            alert_group_hash=key,
            active_group_hash=key,
            group_labels=json.dumps(group.group_labels, sort_keys=True),
            started_at=min(starts, default=now),
            created_at=now,
            last_update_at=now,
            updated_at=now,
        )
        self._event(
            repo,
            incident.id,
            "opened",
            author,
            f"{severity.name} incident opened by Alertmanager: {incident.title}",
            visibility="public",
            data={"group_key": group.group_key, "group_labels": group.group_labels, "external_url": group.external_url},
            created_at=now,
        )
        if previous is not None:
            self._event(
                repo,
                incident.id,
                "note",
                author,
                f"The same alert group fired again after incident #{previous.id} ({previous.status})",
                data={"previous_incident": previous.id},
            )
        return incident

    def _record_alerts(
        self,
        repo: IncidentRepository,
        incident: Incident,
        group: AlertGroup,
        author: str,
        now: datetime,
        previous: Incident | None,
    ) -> None:
        changed_any = False
        for alert in group.alerts:
            severity, problem = alert_severity(alert.labels)
            row = repo.get_alert(incident.id, alert.fingerprint)
            if row is None:
                if (
                    alert.status == "resolved"
                    and previous is not None
                    and repo.get_alert(previous.id, alert.fingerprint)
                ):
                    continue  # already recorded as resolved on the group's previous incident
                row = repo.add_alert(
                    incident.id,
                    alert.fingerprint,
                    alert.status,
                    alert.labels,
                    alert.annotations,
                    alert.starts_at,
                    alert.ends_at,
                    alert.generator_url,
                    severity.name,
                )
                self._alert_event(repo, incident, alert, author, again=False)
                changed = True
            else:
                refired = alert.status == "firing" and (
                    row.status == "resolved" or (alert.starts_at is not None and alert.starts_at != row.starts_at)
                )
                changed = row.status != alert.status or refired
                row.status = alert.status
                row.labels = json.dumps(alert.labels, sort_keys=True)
                row.annotations = json.dumps(alert.annotations, sort_keys=True)
                row.starts_at = alert.starts_at or row.starts_at
                row.ends_at = alert.ends_at
                row.sev = severity.name
                row.last_seen_at = now
                if changed:
                    self._alert_event(repo, incident, alert, author, again=refired)
            changed_any |= changed
            if changed and alert.status == "firing":
                if problem:
                    self._event(repo, incident.id, "note", author, f"{problem}; classified {severity.name}")
                self._apply_alert_severity(repo, incident, alert, severity, author)
        if changed_any and incident.status in ACTIVE_STATUSES:
            alerts = repo.alerts(incident.id)
            if alerts and all(a.status == "resolved" for a in alerts):
                self._event(
                    repo,
                    incident.id,
                    "alerts_resolved",
                    author,
                    f"All {len(alerts)} alert(s) of the incident have resolved; the incident stays "
                    f"{incident.status} until someone resolves it",
                )

    def _alert_event(
        self, repo: IncidentRepository, incident: Incident, alert: WebhookAlert, author: str, again: bool
    ) -> None:
        what = alert.annotations.get("summary") or alert.annotations.get("description") or ""
        if alert.status == "firing":
            text = f"Alert {alert.name} {'fired again' if again else 'firing'}"
            kind, at = "alert_firing", alert.starts_at
        else:
            text = f"Alert {alert.name} resolved"
            kind, at = "alert_resolved", alert.ends_at
        self._event(
            repo,
            incident.id,
            kind,
            author,
            text + (f": {what}" if what else ""),
            data={
                "fingerprint": alert.fingerprint,
                "labels": alert.labels,
                "starts_at": alert.starts_at,
                "ends_at": alert.ends_at,
                "generator_url": alert.generator_url,
                "alert_time": at,
            },
        )

    def _apply_alert_severity(
        self, repo: IncidentRepository, incident: Incident, alert: WebhookAlert, severity: Severity, author: str
    ) -> None:
        current = get_severity(incident.sev)
        if incident.status not in ACTIVE_STATUSES or severity.level == current.level:
            return
        if severity.level < current.level:
            incident.sev = severity.name
            self._event(
                repo,
                incident.id,
                "severity",
                author,
                f"Escalated from {current.name} to {severity.name}: alert {alert.name} has sev {severity.name}",
                data={"from": current.name, "to": severity.name, "fingerprint": alert.fingerprint},
            )
        else:
            self._event(
                repo,
                incident.id,
                "severity",
                author,
                f"Alert {alert.name} has sev {severity.name}, lower than the incident's {current.name}: the incident "
                f"keeps {current.name} (a person may lower it)",
                data={"from": current.name, "to": current.name, "alert_sev": severity.name},
            )
