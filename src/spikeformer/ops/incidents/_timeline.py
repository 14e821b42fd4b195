"""The timeline writer the incident operations share: events at the clock's time, and opening an incident."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from spikeformer.ops.severity import Severity
from spikeformer.store import Incident, IncidentEvent, IncidentStore

__all__ = ["Timeline"]


class Timeline:
    """Writes timeline events stamped by `clock`, inside the caller's transaction.

    Args:
        clock: the current time (aware UTC datetimes); read once per event.
    """

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock

    def add(
        self, store: IncidentStore, incident_id: int, kind: str, author: str, message: str = "", **kw: Any
    ) -> IncidentEvent:
        """Append a timeline event at the clock's time (unless `created_at` is given).

        Args:
            store: the incident store of the open transaction.
            incident_id: the incident.
            kind: one of `EVENT_KINDS`.
            author: who made the change.
            message: what the timeline shows.
            **kw: `visibility`, `data`, `created_at` (see `IncidentStore.add_event`).
        """
        kw.setdefault("created_at", self.clock())
        return store.add_event(incident_id, kind, author, message, **kw)

    def open_incident(
        self,
        store: IncidentStore,
        title: str,
        severity: Severity,
        author: str,
        message: str,
        now: datetime,
        data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Incident:
        """Create an incident at `now` together with its public `opened` event: the one way an incident begins.

        Args:
            store: the incident store of the open transaction.
            title: the incident's title (already checked).
            severity: its severity.
            author: who opens it (a person, or Alertmanager's receiver).
            message: the `opened` event's text.
            now: the creation time (also the time of the last update: the update clock starts now).
            data: details stored with the `opened` event.
            **fields: other columns (`summary`, `impact`, `started_at`, `source`, `alert_group` ...).
        """
        incident = store.create(title, severity.name, created_at=now, last_update_at=now, updated_at=now, **fields)
        self.add(store, incident.id, "opened", author, message, visibility="public", data=data, created_at=now)
        return incident
