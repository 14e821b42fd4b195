"""Store of incidents: the incident rows, their timeline events and the Alertmanager alerts attached to them.

The rules (which transitions are allowed, what each one records, severities and their targets) live in
`spikeformer.ops.incidents`; this module only reads and writes rows. `get(..., lock=True)` takes a row lock on
PostgreSQL (`SELECT ... FOR UPDATE`) so that two replicas changing the same incident run one after the other; SQLite
has a single writer anyway.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spikeformer._deprecation import moved_names
from spikeformer.store._types import utcnow
from spikeformer.store.tables import (
    ALERT_STATUSES,
    EVENT_VISIBILITIES,
    INCIDENT_STATUSES,
    Incident,
    IncidentAlert,
    IncidentEvent,
)

__all__ = ["ACTIVE_STATUSES", "IncidentStore"]

# Incidents that still need people: their acknowledgement and update targets apply, alerts attach to them.
ACTIVE_STATUSES = ("open", "acknowledged", "mitigated")


def _check(value: str, accepted: Sequence[str], what: str) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}: accepted {', '.join(accepted)}")


class IncidentStore:
    """SQL for `incidents`, `incident_events` and `incident_alerts`; the caller's session owns the transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    # -- incidents ----------------------------------------------------------------------------------------------

    def create(self, title: str, sev: str, **fields: Any) -> Incident:
        """Insert an incident (status `open` unless given) and return it with its id.

        Args:
            title: a short name of what is wrong.
            sev: `SEV-1` .. `SEV-4`.
            **fields: any other column of `Incident` (`summary`, `impact`, `started_at`, `alert_group`, ...).

        Raises:
            ValueError: an unknown column.
        """
        columns = set(Incident.__table__.columns.keys())
        unknown = set(fields) - columns
        if unknown:
            raise ValueError(f"unknown incident fields {sorted(unknown)}: columns are {sorted(columns)}")
        now = utcnow()
        values: dict[str, Any] = {
            "status": "open",
            "summary": "",
            "impact": "",
            "source": "manual",
            "started_at": now,
            "created_at": now,
            "last_update_at": now,
            "updated_at": now,
        }
        values.update(fields)
        _check(values["status"], INCIDENT_STATUSES, "incident status")
        incident = Incident(title=title, sev=sev, **values)
        self._session.add(incident)
        self._session.flush()
        return incident

    def get(self, incident_id: int, lock: bool = False) -> Incident | None:
        """The incident with `incident_id` as the database has it now, or None.

        Args:
            incident_id: the incident's id.
            lock: hold a row lock until the transaction ends (PostgreSQL; a no-op on SQLite).
        """
        stmt = select(Incident).where(Incident.id == incident_id).execution_options(populate_existing=True)
        if lock:
            stmt = stmt.with_for_update()
        return self._session.scalars(stmt).one_or_none()

    def list_recent(self, statuses: Iterable[str] | None = None, limit: int = 100) -> Sequence[Incident]:
        """The newest `limit` incidents (by start time), only those in `statuses` when given."""
        stmt = select(Incident).order_by(Incident.started_at.desc(), Incident.id.desc()).limit(limit)
        if statuses is not None:
            wanted = list(statuses)
            for status in wanted:
                _check(status, INCIDENT_STATUSES, "incident status")
            stmt = stmt.where(Incident.status.in_(wanted))
        return self._session.scalars(stmt).all()

    def list_active(self) -> Sequence[Incident]:
        """Every incident that is open, acknowledged or mitigated, oldest first."""
        stmt = select(Incident).where(Incident.status.in_(ACTIVE_STATUSES)).order_by(Incident.started_at, Incident.id)
        return self._session.scalars(stmt).all()

    def count_by_status(self) -> dict[str, int]:
        """Number of incidents per status, every status present (zero when none)."""
        counts = dict.fromkeys(INCIDENT_STATUSES, 0)
        for status, count in self._session.execute(select(Incident.status, func.count()).group_by(Incident.status)):
            counts[status] = int(count)
        return counts

    def active_for_group(self, group_hash: str) -> Incident | None:
        """The live (not resolved) incident of an Alertmanager group, by the sha256 of its group key."""
        stmt = select(Incident).where(Incident.active_group_hash == group_hash)
        return self._session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()

    def latest_for_group(self, group_hash: str) -> Incident | None:
        """The newest incident ever opened for an Alertmanager group (live or not), or None."""
        stmt = (
            select(Incident)
            .where(Incident.alert_group_hash == group_hash)
            .order_by(Incident.created_at.desc(), Incident.id.desc())
            .limit(1)
        )
        return self._session.scalars(stmt).one_or_none()

    def active_with_fingerprints(self, fingerprints: Iterable[str]) -> Incident | None:
        """The oldest live incident that holds an alert with one of `fingerprints`, or None."""
        prints = list(fingerprints)
        if not prints:
            return None
        stmt = (
            select(Incident)
            .join(IncidentAlert, IncidentAlert.incident_id == Incident.id)
            .where(IncidentAlert.fingerprint.in_(prints), Incident.status.in_(ACTIVE_STATUSES))
            .order_by(Incident.created_at, Incident.id)
            .limit(1)
        )
        return self._session.scalars(stmt).first()

    # -- timeline -----------------------------------------------------------------------------------------------

    def add_event(
        self,
        incident_id: int,
        kind: str,
        author: str,
        message: str = "",
        visibility: str = "internal",
        data: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> IncidentEvent:
        """Append a timeline event.

        Args:
            incident_id: the incident.
            kind: what happened (`opened`, `update`, `note`, `alert_firing`, ...).
            author: who did it (a person, or `alertmanager`).
            message: what to show.
            visibility: `public` (may be shown outside) or `internal`.
            data: details, stored as JSON text.
            created_at: when (default: now).

        Raises:
            ValueError: an unknown visibility.
        """
        _check(visibility, EVENT_VISIBILITIES, "visibility")
        event = IncidentEvent(
            incident_id=incident_id,
            kind=kind,
            author=author,
            message=message,
            visibility=visibility,
            data=None if data is None else json.dumps(data, default=str, sort_keys=True),
            created_at=created_at or utcnow(),
        )
        self._session.add(event)
        self._session.flush()
        return event

    def events(self, incident_id: int, visibility: str | None = None) -> Sequence[IncidentEvent]:
        """The incident's timeline, oldest first (only `visibility` events when given)."""
        stmt = (
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.created_at, IncidentEvent.id)
        )
        if visibility is not None:
            _check(visibility, EVENT_VISIBILITIES, "visibility")
            stmt = stmt.where(IncidentEvent.visibility == visibility)
        return self._session.scalars(stmt).all()

    def last_event(self, incident_id: int, kind: str) -> IncidentEvent | None:
        """The newest event of `kind` on the incident, or None."""
        stmt = (
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == kind)
            .order_by(IncidentEvent.created_at.desc(), IncidentEvent.id.desc())
            .limit(1)
        )
        return self._session.scalars(stmt).one_or_none()

    # -- alerts -------------------------------------------------------------------------------------------------

    def alerts(self, incident_id: int, status: str | None = None) -> Sequence[IncidentAlert]:
        """The alerts attached to the incident, in the order first seen (only `status` ones when given)."""
        stmt = (
            select(IncidentAlert)
            .where(IncidentAlert.incident_id == incident_id)
            .order_by(IncidentAlert.first_seen_at, IncidentAlert.id)
        )
        if status is not None:
            _check(status, ALERT_STATUSES, "alert status")
            stmt = stmt.where(IncidentAlert.status == status)
        return self._session.scalars(stmt).all()

    def get_alert(self, incident_id: int, fingerprint: str) -> IncidentAlert | None:
        """The incident's alert with `fingerprint`, or None."""
        stmt = select(IncidentAlert).where(
            IncidentAlert.incident_id == incident_id, IncidentAlert.fingerprint == fingerprint
        )
        return self._session.scalars(stmt).one_or_none()

    def add_alert(
        self,
        incident_id: int,
        fingerprint: str,
        status: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        starts_at: datetime | None,
        ends_at: datetime | None,
        generator_url: str | None = None,
        sev: str | None = None,
    ) -> IncidentAlert:
        """Attach an alert to the incident (first seen now)."""
        _check(status, ALERT_STATUSES, "alert status")
        now = utcnow()
        alert = IncidentAlert(
            incident_id=incident_id,
            fingerprint=fingerprint,
            alertname=str(labels.get("alertname", ""))[:200],
            status=status,
            sev=sev,
            labels=json.dumps(labels, sort_keys=True),
            annotations=json.dumps(annotations, sort_keys=True),
            generator_url=generator_url,
            starts_at=starts_at,
            ends_at=ends_at,
            first_seen_at=now,
            last_seen_at=now,
        )
        self._session.add(alert)
        self._session.flush()
        return alert


# the SQL classes are stores ("repository" names the model folder); the old name warns
__getattr__ = moved_names(__name__, {"IncidentRepository": "spikeformer.store.incidents:IncidentStore"})
