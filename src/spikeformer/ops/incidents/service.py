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

Alertmanager: `handle_alertmanager(payload)` opens or updates the incident of the alert group (see
`spikeformer.ops.incidents.alert_groups`). Silences are created on acknowledgement and expired on resolution (see
`spikeformer.ops.incidents.silences`).

Every method opens its own transaction on the `Database` and returns JSON-ready data; HTTP calls (silences, chat)
run outside transactions, and their failures are recorded in the timeline rather than raised. The Alertmanager and
chat webhook URLs come from the arguments, else the constructor, else `spikeformer.settings.get_settings()` (read
afresh at each use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError

from spikeformer.ops.incidents import _validation as check
from spikeformer.ops.incidents._timeline import Timeline
from spikeformer.ops.incidents.alert_groups import ALERTMANAGER_AUTHOR, AlertGroupRecorder
from spikeformer.ops.incidents.alertmanager import group_hash, parse_webhook
from spikeformer.ops.incidents.errors import IncidentConflictError, IncidentInputError, IncidentNotFoundError
from spikeformer.ops.incidents.messages import check_url, post_to_chat, render_message
from spikeformer.ops.incidents.postmortem import impact_windows, render_postmortem
from spikeformer.ops.incidents.silences import Silences, silence_matchers
from spikeformer.ops.incidents.views import (
    ACTIVE_STATUSES,
    PublicIncident,
    format_duration,
    incident_view,
    public_incident_view,
    redact_keys,
    targets,
)
from spikeformer.ops.severity import SEVERITIES, Severity
from spikeformer.ops.smoke import SmokeResultError, assess_result
from spikeformer.settings import ENV_PREFIX, get_settings
from spikeformer.store import Database, Incident, IncidentStore, InferenceRecordStore
from spikeformer.store._types import utcnow

__all__ = [
    "ALERTMANAGER_AUTHOR",
    "ALERTMANAGER_URL_ENV",
    "CHAT_WEBHOOK_URL_ENV",
    "DEFAULT_SILENCE",
    "MAX_SILENCE",
    "IncidentService",
]

# The environment variables of the two URLs (`Settings.alertmanager_url`, `Settings.chat_webhook_url`), named in
# the error that asks for one.
ALERTMANAGER_URL_ENV = f"{ENV_PREFIX}ALERTMANAGER_URL"
CHAT_WEBHOOK_URL_ENV = f"{ENV_PREFIX}CHAT_WEBHOOK_URL"
# The runbook silences an acknowledged alert for 4 hours ("endsAt": "<NOW+4h>").
DEFAULT_SILENCE = timedelta(hours=4)
MAX_SILENCE = timedelta(days=7)
_MESSAGE_NAMES = {"initial": "initial incident report", "update": "progress update", "resolution": "resolution notice"}


class IncidentService:
    """Incidents on a database.

    Args:
        db: the database (migrated to head).
        clock: the current time (tests pass a fixed one); aware UTC datetimes.
        alertmanager_url: Alertmanager's base URL for silences (default: `Settings.alertmanager_url`, i.e.
            `SPIKEFORMER_ALERTMANAGER_URL`, read when needed).
        chat_webhook_url: a Slack-compatible webhook for the messages (default: `Settings.chat_webhook_url`, i.e.
            `SPIKEFORMER_CHAT_WEBHOOK_URL`, read when needed).
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
        self._timeline = Timeline(clock)
        self._alertmanager_url = alertmanager_url
        self._chat_webhook_url = chat_webhook_url
        self.http_timeout_s = http_timeout_s
        self.transport = transport

    @property
    def clock(self) -> Callable[[], datetime]:
        """The current time (aware UTC datetimes)."""
        return self._timeline.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self._timeline.clock = clock

    # -- configuration ------------------------------------------------------------------------------------------

    def alertmanager_url(self, override: str | None = None) -> str:
        """The Alertmanager base URL: `override`, else the constructor's, else `Settings.alertmanager_url`."""
        url = override or self._alertmanager_url or get_settings().alertmanager_url
        return check_url(url, "Alertmanager", ALERTMANAGER_URL_ENV).rstrip("/")

    def chat_webhook_url(self, override: str | None = None) -> str:
        """The chat webhook URL: `override`, else the constructor's, else `Settings.chat_webhook_url`."""
        url = override or self._chat_webhook_url or get_settings().chat_webhook_url
        return check_url(url, "chat webhook", CHAT_WEBHOOK_URL_ENV)

    def _chat_configured(self) -> bool:
        return bool(self._chat_webhook_url or get_settings().chat_webhook_url.strip())

    # -- helpers ------------------------------------------------------------------------------------------------

    @staticmethod
    def _load(store: IncidentStore, incident_id: int, lock: bool = True) -> Incident:
        incident = store.get(incident_id, lock=lock)
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

    @contextmanager
    def _change(
        self, incident_id: int, allowed: tuple[str, ...] = (), action: str = ""
    ) -> Iterator[tuple[IncidentStore, Incident]]:
        """A transaction holding the incident's row lock; refused unless its status is in `allowed` (when given)."""
        with self.db.session() as s:
            store = IncidentStore(s)
            incident = self._load(store, incident_id)
            if allowed:
                self._require(incident, allowed, action)
            yield store, incident

    def _silences(self) -> Silences:
        return Silences(self.db, self._timeline, self.http_timeout_s, self.transport)

    def _acknowledge_row(self, store: IncidentStore, incident: Incident, author: str, now: datetime) -> None:
        incident.status = "acknowledged"
        incident.acknowledged_at = now
        incident.acknowledged_by = author
        took = format_duration(now - incident.started_at)
        self._timeline.add(store, incident.id, "acknowledged", author, f"Acknowledged by {author} ({took} after start)")
        if not incident.commander:
            incident.commander = author
            self._timeline.add(store, incident.id, "commander", author, f"Incident commander: {author}")

    def _view_and_post(self, incident_id: int, kind: str, author: str, chat_url: str | None) -> dict[str, Any]:
        """The incident's view, plus `chat` (the outcome of posting the `kind` message) when `chat_url` is given."""
        result = self.get(incident_id)
        if chat_url:
            result["chat"] = self.post_message(incident_id, kind, author, webhook_url=chat_url)
        return result

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
            webhook_url: the chat webhook (default: `Settings.chat_webhook_url`).

        Returns:
            The incident's view (`incident_view`), plus `chat` when `notify`.
        """
        severity = check.severity(sev)
        title = check.text(title, "title", required=True, limit=check.TITLE_MAX)
        author = check.author(author)
        chat_url = self.chat_webhook_url(webhook_url) if notify else None
        now = self.clock()
        started = check.aware(started_at, "started_at", now) or now
        if started > now:
            raise IncidentInputError(f"started_at {started.isoformat()} is in the future (now {now.isoformat()})")
        summary = check.text(summary, "summary")
        with self.db.session() as s:
            store = IncidentStore(s)
            incident = self._timeline.open_incident(
                store,
                title,
                severity,
                author,
                f"{severity.name} incident opened: {title}" + (f". {summary}" if summary else ""),
                now,
                summary=summary,
                impact=check.text(impact, "impact"),
                commander=check.text(commander, "commander", limit=check.NAME_MAX) or None,
                started_at=started,
            )
            if incident.commander:
                self._timeline.add(store, incident.id, "commander", author, f"Incident commander: {incident.commander}")
            incident_id = incident.id
        return self._view_and_post(incident_id, "initial", author, chat_url)

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
        author = check.author(author)
        am_url = None
        if silence:
            am_url = self.alertmanager_url(alertmanager_url)
            if not timedelta(0) < silence_duration <= MAX_SILENCE:
                raise IncidentInputError(
                    f"silence duration must be more than 0 and at most {format_duration(MAX_SILENCE)}, "
                    f"got {format_duration(silence_duration)}"
                )
        now = self.clock()
        with self._change(incident_id) as (store, incident):
            if incident.status != "open":
                by = f" by {incident.acknowledged_by}" if incident.acknowledged_by else ""
                raise IncidentConflictError(
                    f"cannot acknowledge incident {incident_id}: it is {incident.status}{by}; only open incidents "
                    f"are acknowledged"
                )
            matcher_sets = silence_matchers(store, incident) if silence else []
            if silence and not matcher_sets:
                raise IncidentConflictError(
                    f"incident {incident_id} has no Alertmanager alerts to silence (it was opened by hand); "
                    f"acknowledge it without silence"
                )
            self._acknowledge_row(store, incident, author, now)
            title = incident.title
        result = self.get(incident_id)
        if silence and am_url:
            result.update(
                self._silences().create(incident_id, title, author, am_url, matcher_sets, now, silence_duration)
            )
            result["timeline"] = self.get(incident_id)["timeline"]
        return result

    def assign(self, incident_id: int, commander: str, author: str) -> dict[str, Any]:
        """Make `commander` the incident commander (any state but closed)."""
        commander = check.text(commander, "commander", required=True, limit=check.NAME_MAX)
        author = check.author(author)
        allowed = ("open", "acknowledged", "mitigated", "resolved")
        with self._change(incident_id, allowed, "assign a commander to") as (store, incident):
            before = incident.commander
            incident.commander = commander
            self._timeline.add(
                store,
                incident_id,
                "commander",
                author,
                f"Incident commander: {commander}" + (f" (was {before})" if before and before != commander else ""),
            )
        return self.get(incident_id)

    def note(self, incident_id: int, message: str, author: str, visibility: str = "internal") -> dict[str, Any]:
        """Add a free-form timeline entry (internal by default); allowed in every state, closed included."""
        message = check.text(message, "message", required=True)
        author = check.author(author)
        visibility = check.visibility(visibility)
        with self._change(incident_id) as (store, _incident):
            self._timeline.add(store, incident_id, "note", author, message, visibility=visibility)
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
            webhook_url: the chat webhook (default: `Settings.chat_webhook_url`).
        """
        message = check.text(message, "message", required=True)
        author = check.author(author)
        visibility = check.visibility(visibility)
        now = self.clock()
        eta = check.aware(eta, "eta", now)
        chat_url = self.chat_webhook_url(webhook_url) if notify else None
        with self._change(incident_id, ACTIVE_STATUSES, "post an update on") as (store, incident):
            data: dict[str, Any] = {}
            if progress is not None:
                incident.progress = data["progress"] = check.text(progress, "progress")
            if next_steps is not None:
                incident.next_steps = data["next_steps"] = check.text(next_steps, "next_steps")
            if eta is not None:
                incident.eta = eta
                data["eta"] = eta.isoformat()
            incident.last_update_at = now
            self._timeline.add(store, incident_id, "update", author, message, visibility=visibility, data=data or None)
        return self._view_and_post(incident_id, "update", author, chat_url)

    def set_severity(
        self, incident_id: int, sev: Severity | str | int, author: str, reason: str = ""
    ) -> dict[str, Any]:
        """Re-classify an incident (up or down: a person decides); recorded in the timeline with the reason."""
        severity = check.severity(sev)
        author = check.author(author)
        reason = check.text(reason, "reason")
        allowed = (*ACTIVE_STATUSES, "resolved")
        with self._change(incident_id, allowed, "change the severity of") as (store, incident):
            if incident.sev == severity.name:
                raise IncidentConflictError(f"incident {incident_id} is already {severity.name}")
            before = incident.sev
            incident.sev = severity.name
            self._timeline.add(
                store,
                incident_id,
                "severity",
                author,
                f"Severity changed from {before} to {severity.name}" + (f": {reason}" if reason else ""),
                data={"from": before, "to": severity.name},
            )
        return self.get(incident_id)

    def mitigate(self, incident_id: int, author: str, message: str = "") -> dict[str, Any]:
        """Mark the impact as stopped (an open incident is acknowledged by the same author first)."""
        author = check.author(author)
        message = check.text(message, "message")
        now = self.clock()
        with self._change(incident_id, ("open", "acknowledged"), "mitigate") as (store, incident):
            if incident.status == "open":
                self._acknowledge_row(store, incident, author, now)
            incident.status = "mitigated"
            incident.mitigated_at = now
            took = format_duration(now - incident.started_at)
            self._timeline.add(
                store,
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
            webhook_url: the chat webhook (default: `Settings.chat_webhook_url`).
            expire_silences: expire the Alertmanager silences created when the incident was acknowledged (a
                failure is recorded in the timeline, never raised).
        """
        author = check.author(author)
        now = self.clock()
        meeting = check.aware(postmortem_meeting_at, "postmortem_meeting_at", now)
        chat_url = self.chat_webhook_url(webhook_url) if notify else None
        with self._change(incident_id, ACTIVE_STATUSES, "resolve") as (store, incident):
            if incident.status == "open":
                self._acknowledge_row(store, incident, author, now)
            if root_cause is not None:
                incident.root_cause = check.text(root_cause, "root_cause")
            if resolution is not None:
                incident.resolution = check.text(resolution, "resolution")
            if meeting is not None:
                incident.postmortem_meeting_at = meeting
            incident.status = "resolved"
            incident.mitigated_at = incident.mitigated_at or now
            incident.resolved_at = now
            incident.active_group_hash = None  # the alert group may open a new incident from now on
            text = check.text(message, "message") or incident.resolution or ""
            took = format_duration(now - incident.started_at)
            self._timeline.add(
                store,
                incident_id,
                "resolved",
                author,
                f"Resolved ({took} after start)" + (f": {text}" if text else ""),
                visibility="public",
                data={"root_cause": incident.root_cause, "resolution": incident.resolution},
            )
        if expire_silences:
            self._silences().expire(incident_id, author)
        return self._view_and_post(incident_id, "resolution", author, chat_url)

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
        author = check.author(author)
        message = check.text(message, "message")
        reason = check.text(reason, "reason")
        if smoke is not None and force:
            raise IncidentInputError("give either a passing smoke run or force with a reason, not both")
        if force and not reason:
            raise IncidentInputError("force needs a reason: why may the incident close without a passing smoke run?")
        now = self.clock()
        with self._change(incident_id, ("resolved",), "close") as (store, incident):
            if force:
                self._timeline.add(
                    store,
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
                self._timeline.add(store, incident_id, "smoke", author, f"Recovery verified: {verdict}", data=summary)
            incident.status = "closed"
            incident.closed_at = now
            self._timeline.add(store, incident_id, "closed", author, "Closed" + (f": {message}" if message else ""))
        return self.get(incident_id)

    # -- queries ------------------------------------------------------------------------------------------------

    def get(self, incident_id: int, visibility: str | None = None) -> dict[str, Any]:
        """The incident with its timeline and its alerts.

        Args:
            incident_id: the incident.
            visibility: None for everything (`incident_view`); `public` for what readers without a key may see
                (`public_incident_view`: public fields, public entries, no key prefixes); `internal` for every field
                and the internal entries only.
        """
        if visibility is not None:
            check.visibility(visibility)
        with self.db.session() as s:
            store = IncidentStore(s)
            incident = self._load(store, incident_id, lock=False)
            if visibility == "public":
                return public_incident_view(
                    incident, self.clock(), store.events(incident.id, "public"), store.alerts(incident.id)
                )
            return incident_view(
                incident, self.clock(), store.events(incident.id, visibility), store.alerts(incident.id)
            )

    def list_incidents(
        self, statuses: list[str] | None = None, limit: int = 100, public: bool = False
    ) -> list[dict[str, Any]]:
        """Incidents, newest first, with their overdue flags (no timelines).

        Args:
            statuses: only these (`open`, `acknowledged`, `mitigated`, `resolved`, `closed`; `active` stands for
                the first three); default every status.
            limit: at most this many (1..1000).
            public: what readers without a key may see (`public_incident_view`), not every field.
        """
        if not 1 <= limit <= 1000:
            raise IncidentInputError(f"limit must be between 1 and 1000, got {limit}")
        wanted = check.statuses(statuses)
        now = self.clock()
        with self.db.session() as s:
            store = IncidentStore(s)
            incidents = store.list_recent(wanted, limit)
            if public:
                return [public_incident_view(i, now, store.events(i.id, "public"), timeline=False) for i in incidents]
            return [incident_view(i, now) for i in incidents]

    def severity_metrics(self) -> dict[str, dict[str, int]]:
        """Per SEV: active incidents, those past their acknowledgement target, those past their update interval.

        Returns:
            `{"SEV-1": {"open": n, "ack_overdue": n, "update_overdue": n}, ...}`, every SEV present.
        """
        counts = {s.name: {"open": 0, "ack_overdue": 0, "update_overdue": 0} for s in SEVERITIES}
        now = self.clock()
        with self.db.session() as s:
            for incident in IncidentStore(s).list_active():
                t = targets(incident, now)
                row = counts[incident.sev]
                row["open"] += 1
                row["ack_overdue"] += int(t.ack_overdue)
                row["update_overdue"] += int(t.update_overdue)
        return counts

    # -- messages -----------------------------------------------------------------------------------------------

    def message(self, incident_id: int, kind: str, public: bool = False) -> str:
        """The runbook's `initial`, `update` or `resolution` message filled from the incident.

        Args:
            incident_id: the incident.
            kind: `initial`, `update` or `resolution`.
            public: for readers without a key: filled from the public fields and the latest public update only
                (`PublicIncident`), with API key prefixes redacted.
        """
        with self.db.session() as s:
            store = IncidentStore(s)
            incident = self._load(store, incident_id, lock=False)
            if not public:
                return render_message(kind, incident, store.last_event(incident_id, "update"), self.clock())
            events = store.events(incident_id, "public")
            updates = [e for e in events if e.kind == "update"]
            seen = PublicIncident(incident, events)
            text = render_message(kind, seen, updates[-1] if updates else None, self.clock())  # type: ignore[arg-type]
            return redact_keys(text) or text

    def post_message(self, incident_id: int, kind: str, author: str, webhook_url: str | None = None) -> dict[str, Any]:
        """Render a message and post it to the chat webhook; the outcome is recorded in the timeline.

        A failed post (unreachable, timeout, non-2xx) is returned as `{"posted": False, "error": ...}` and
        recorded, never raised.

        Raises:
            IncidentInputError: an unknown kind, or no webhook URL configured.
            IncidentConflictError: a resolution notice for an incident that is not resolved.
        """
        author = check.author(author)
        url = self.chat_webhook_url(webhook_url)
        text = self.message(incident_id, kind)
        outcome = post_to_chat(url, text, self.http_timeout_s, self.transport)
        if outcome["posted"]:
            line = f"Posted the {_MESSAGE_NAMES[kind]} to the chat webhook"
        else:
            line = f"Posting the {_MESSAGE_NAMES[kind]} to the chat webhook failed: {outcome['error']}"
        with self.db.session() as s:
            self._timeline.add(IncidentStore(s), incident_id, "chat", author, line, data={"message": kind, **outcome})
        return {"kind": kind, "text": text, **outcome}

    def postmortem(self, incident_id: int) -> str:
        """The post-mortem draft (Markdown) with the impact measured from the inference records."""
        now = self.clock()
        with self.db.session() as s:
            store = IncidentStore(s)
            incident = self._load(store, incident_id, lock=False)
            window, baseline = impact_windows(InferenceRecordStore(s), incident, now)
            return render_postmortem(
                incident, store.events(incident_id), store.alerts(incident_id), window, baseline, now
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
        recorder = AlertGroupRecorder(self._timeline)
        for attempt in range(3):
            try:
                with self.db.session() as s:
                    result = recorder.apply(IncidentStore(s), group, key)
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
