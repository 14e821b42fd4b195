"""The Alertmanager silences of an incident: which labels to silence, creating them, expiring them, in the timeline.

Acknowledging with `silence` creates one silence for the alert group (matching its group labels) or, for an
incident without group labels, one per firing alert (matching all its labels). Each silence created, and each one
that could not be, is a `silence` event; resolving expires the silences the timeline holds that were not expired
yet. Alertmanager is called outside any transaction, and a failure is recorded, never raised: the acknowledgement
or resolution stands.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx

from spikeformer.ops.incidents._timeline import Timeline
from spikeformer.ops.incidents.alertmanager import create_silence, expire_silence
from spikeformer.store import Database, Incident, IncidentStore

__all__ = ["Silences", "silence_matchers"]


def silence_matchers(store: IncidentStore, incident: Incident) -> list[dict[str, str]]:
    """The label sets to silence: the group labels, else the labels of each firing alert (empty: nothing to silence)."""
    group_labels = json.loads(incident.group_labels) if incident.group_labels else {}
    if group_labels:
        return [group_labels]
    return [json.loads(a.labels) for a in store.alerts(incident.id, "firing") if json.loads(a.labels)]


class Silences:
    """Creates and expires the silences of incidents, recording each outcome in the timeline.

    Args:
        db: the database.
        timeline: writes the `silence` events.
        timeout_s: timeout of each call to Alertmanager.
        transport: an httpx transport for those calls (tests), default the network.
    """

    def __init__(
        self, db: Database, timeline: Timeline, timeout_s: float, transport: httpx.BaseTransport | None
    ) -> None:
        self.db = db
        self.timeline = timeline
        self.timeout_s = timeout_s
        self.transport = transport

    def create(
        self,
        incident_id: int,
        title: str,
        author: str,
        am_url: str,
        matcher_sets: list[dict[str, str]],
        now: datetime,
        duration: timedelta,
    ) -> dict[str, Any]:
        """Create one silence per label set, from `now` for `duration`.

        Returns:
            `{"silences": [{"silenceID", "matchers"}], "silence_errors": [message, ...]}`.
        """
        created, errors = [], []
        comment = f"Incident #{incident_id} acknowledged by {author}: {title}"
        for matchers in matcher_sets:
            try:
                silence_id = create_silence(
                    am_url, matchers, now, now + duration, author, comment, self.timeout_s, self.transport
                )
                created.append({"silenceID": silence_id, "matchers": matchers})
            except Exception as e:  # noqa: BLE001 - recorded, never raised: the acknowledgement stands
                errors.append(f"cannot create the Alertmanager silence at {am_url} for {matchers}: {e}")
        with self.db.session() as s:
            store = IncidentStore(s)
            for item in created:
                self.timeline.add(
                    store,
                    incident_id,
                    "silence",
                    author,
                    f"Alertmanager silence {item['silenceID']} until {(now + duration).isoformat()} for "
                    + ", ".join(f"{k}={v}" for k, v in sorted(item["matchers"].items())),
                    data={"silence_id": item["silenceID"], "matchers": item["matchers"], "alertmanager": am_url},
                )
            for error in errors:
                self.timeline.add(
                    store, incident_id, "silence", author, error, data={"error": error, "alertmanager": am_url}
                )
        return {"silences": created, "silence_errors": errors}

    def expire(self, incident_id: int, author: str) -> None:
        """Expire the silences the incident's timeline records as created and not yet expired."""
        with self.db.session() as s:
            events = IncidentStore(s).events(incident_id)
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
                expire_silence(url, silence_id, self.timeout_s, self.transport)
                outcomes.append((f"Expired Alertmanager silence {silence_id}", {"expired": silence_id}))
            except Exception as e:  # noqa: BLE001 - recorded, never raised: the resolution stands
                error = f"cannot expire the Alertmanager silence {silence_id} at {url}: {e}"
                outcomes.append((error, {"error": error, "silence": silence_id}))
        if outcomes:
            with self.db.session() as s:
                store = IncidentStore(s)
                for message, data in outcomes:
                    self.timeline.add(store, incident_id, "silence", author, message, data=data)
