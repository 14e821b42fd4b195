"""Alertmanager alert groups: one webhook notification applied to the incident of its group.

The incident of a group is found by the group key's hash, else by the fingerprint of an alert it already holds;
a group with firing alerts and no active incident opens one (titled from the common `summary` annotation, with the
most severe `sev` label firing). Each alert's firing and resolution is recorded once, however often Alertmanager
repeats the notification; a firing alert more severe than the incident escalates it, a less severe one is recorded
and never applied (a person may lower a severity, an alert may not). Resolved alerts of a group whose incident has
been resolved are recorded on that last incident.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from spikeformer.ops.incidents._timeline import Timeline
from spikeformer.ops.incidents._validation import TITLE_MAX
from spikeformer.ops.incidents.alertmanager import AlertGroup, WebhookAlert, alert_severity
from spikeformer.ops.incidents.views import ACTIVE_STATUSES
from spikeformer.ops.severity import Severity, get_severity
from spikeformer.store import Incident, IncidentStore

__all__ = ["ALERTMANAGER_AUTHOR", "AlertGroupRecorder"]

ALERTMANAGER_AUTHOR = "alertmanager"


class AlertGroupRecorder:
    """Applies Alertmanager notifications to incidents, inside the caller's transaction.

    Args:
        timeline: writes the timeline events (and opens incidents).
    """

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def apply(self, store: IncidentStore, group: AlertGroup, key: str) -> dict[str, Any]:
        """Open or update the incident of `group`.

        Args:
            store: the incident store of the open transaction.
            group: the parsed notification.
            key: `group_hash(group.group_key)`.

        Returns:
            `{"incident_id", "created", "sev", "status", "events_added", "firing", "resolved"}`; `incident_id`
            is None (and `ignored` says why) for resolved alerts of a group that never had an incident.
        """
        now = self.timeline.clock()
        author = f"{ALERTMANAGER_AUTHOR} ({group.receiver})" if group.receiver else ALERTMANAGER_AUTHOR
        incident = store.active_for_group(key) or store.active_with_fingerprints(a.fingerprint for a in group.alerts)
        before = len(store.events(incident.id)) if incident else 0
        created = False
        previous = None
        if incident is None:
            previous = store.latest_for_group(key)
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
                before = len(store.events(incident.id))
            else:
                incident = self._open_from_group(store, group, key, author, now, previous)
                created = True
        self._record_alerts(store, incident, group, author, now, previous if created else None)
        if group.truncated_alerts:
            self.timeline.add(
                store,
                incident.id,
                "note",
                author,
                f"Alertmanager left {group.truncated_alerts} alert(s) of the group out of the notification "
                f"(max_alerts); see {group.external_url or 'Alertmanager'}",
            )
        alerts = store.alerts(incident.id)
        return {
            "incident_id": incident.id,
            "created": created,
            "sev": incident.sev,
            "status": incident.status,
            "events_added": len(store.events(incident.id)) - (0 if created else before),
            "firing": sum(a.status == "firing" for a in alerts),
            "resolved": sum(a.status == "resolved" for a in alerts),
        }

    def _open_from_group(
        self,
        store: IncidentStore,
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
        title = " ".join(title.split())[:TITLE_MAX] or "Alertmanager alert group"
        starts = [a.starts_at for a in firing if a.starts_at is not None and a.starts_at <= now]
        incident = self.timeline.open_incident(
            store,
            title,
            severity,
            author,
            f"{severity.name} incident opened by Alertmanager: {title}",
            now,
            data={"group_key": group.group_key, "group_labels": group.group_labels, "external_url": group.external_url},
            summary=annotations.get("description") or annotations.get("summary") or "",
            impact=f"{len(firing)} alert(s) firing: {', '.join(names)}",
            source="alertmanager",
            alert_group=group.group_key,
            alert_group_hash=key,
            active_group_hash=key,
            group_labels=json.dumps(group.group_labels, sort_keys=True),
            started_at=min(starts, default=now),
        )
        if previous is not None:
            self.timeline.add(
                store,
                incident.id,
                "note",
                author,
                f"The same alert group fired again after incident #{previous.id} ({previous.status})",
                data={"previous_incident": previous.id},
            )
        return incident

    def _record_alerts(
        self,
        store: IncidentStore,
        incident: Incident,
        group: AlertGroup,
        author: str,
        now: datetime,
        previous: Incident | None,
    ) -> None:
        changed_any = False
        for alert in group.alerts:
            severity, problem = alert_severity(alert.labels)
            row = store.get_alert(incident.id, alert.fingerprint)
            if row is None:
                if (
                    alert.status == "resolved"
                    and previous is not None
                    and store.get_alert(previous.id, alert.fingerprint)
                ):
                    continue  # already recorded as resolved on the group's previous incident
                row = store.add_alert(
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
                self._alert_event(store, incident, alert, author, again=False)
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
                    self._alert_event(store, incident, alert, author, again=refired)
            changed_any |= changed
            if changed and alert.status == "firing":
                if problem:
                    self.timeline.add(store, incident.id, "note", author, f"{problem}; classified {severity.name}")
                self._apply_alert_severity(store, incident, alert, severity, author)
        if changed_any and incident.status in ACTIVE_STATUSES:
            alerts = store.alerts(incident.id)
            if alerts and all(a.status == "resolved" for a in alerts):
                self.timeline.add(
                    store,
                    incident.id,
                    "alerts_resolved",
                    author,
                    f"All {len(alerts)} alert(s) of the incident have resolved; the incident stays "
                    f"{incident.status} until someone resolves it",
                )

    def _alert_event(
        self, store: IncidentStore, incident: Incident, alert: WebhookAlert, author: str, again: bool
    ) -> None:
        what = alert.annotations.get("summary") or alert.annotations.get("description") or ""
        if alert.status == "firing":
            text = f"Alert {alert.name} {'fired again' if again else 'firing'}"
            kind, at = "alert_firing", alert.starts_at
        else:
            text = f"Alert {alert.name} resolved"
            kind, at = "alert_resolved", alert.ends_at
        self.timeline.add(
            store,
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
        self, store: IncidentStore, incident: Incident, alert: WebhookAlert, severity: Severity, author: str
    ) -> None:
        current = get_severity(incident.sev)
        if incident.status not in ACTIVE_STATUSES or severity.level == current.level:
            return
        if severity.level < current.level:
            incident.sev = severity.name
            self.timeline.add(
                store,
                incident.id,
                "severity",
                author,
                f"Escalated from {current.name} to {severity.name}: alert {alert.name} has sev {severity.name}",
                data={"from": current.name, "to": severity.name, "fingerprint": alert.fingerprint},
            )
        else:
            self.timeline.add(
                store,
                incident.id,
                "severity",
                author,
                f"Alert {alert.name} has sev {severity.name}, lower than the incident's {current.name}: the incident "
                f"keeps {current.name} (a person may lower it)",
                data={"from": current.name, "to": current.name, "alert_sev": severity.name},
            )
