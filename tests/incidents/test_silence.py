"""Acknowledging with a silence creates it in a real Alertmanager (v2 API), read back with ``GET /api/v2/silences``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spikeformer.ops.incidents import IncidentConflictError, IncidentInputError, IncidentService


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_acknowledge_creates_a_silence_for_the_alert_group(db, alertmanager, am):
    svc = IncidentService(db, alertmanager_url=alertmanager.url)
    iid = svc.handle_alertmanager(am.payload())["incident_id"]
    before = datetime.now(UTC)
    view = svc.acknowledge(iid, "bob", silence=True, silence_duration=timedelta(hours=4))
    assert view["status"] == "acknowledged" and view["silence_errors"] == []
    (created,) = view["silences"]

    (silence,) = alertmanager.silences()
    assert silence["id"] == created["silenceID"]
    assert silence["status"]["state"] == "active"
    assert silence["matchers"] == [
        {"name": "alertname", "value": "SpikeformerHighErrorRate", "isRegex": False, "isEqual": True}
    ]
    assert silence["createdBy"] == "bob"
    assert silence["comment"] == f"Incident #{iid} acknowledged by bob: SpikeformerHighErrorRate fires"
    ends = _parse(silence["endsAt"])
    assert timedelta(hours=3, minutes=59) < ends - before < timedelta(hours=4, minutes=1)
    event = view["timeline"][-1]
    assert event["kind"] == "silence" and event["data"]["silence_id"] == created["silenceID"]


def test_without_group_labels_each_firing_alert_is_silenced_by_its_labels(db, alertmanager, am, monkeypatch):
    monkeypatch.setenv("SPIKEFORMER_ALERTMANAGER_URL", alertmanager.url)  # the URL from the environment
    payload = am.payload(alerts=[am.alert("f1"), am.alert("f2", instance="api-1")])
    payload["groupLabels"] = {}
    svc = IncidentService(db)
    iid = svc.handle_alertmanager(payload)["incident_id"]
    view = svc.acknowledge(iid, "bob", silence=True)
    assert len(view["silences"]) == 2
    silenced = sorted({m["name"]: m["value"] for m in s["matchers"]}["instance"] for s in alertmanager.silences())
    assert silenced == ["api-0", "api-1"]


def test_unreachable_alertmanager_keeps_the_acknowledgement_and_records_the_failure(db, am):
    from support import free_port

    svc = IncidentService(db, alertmanager_url=f"http://127.0.0.1:{free_port()}", http_timeout_s=2)
    iid = svc.handle_alertmanager(am.payload())["incident_id"]
    view = svc.acknowledge(iid, "bob", silence=True)
    assert view["status"] == "acknowledged" and view["silences"] == []
    (error,) = view["silence_errors"]
    assert "cannot create the Alertmanager silence" in error
    assert view["timeline"][-1]["kind"] == "silence" and view["timeline"][-1]["message"] == error


def test_silence_needs_alerts_and_a_url(db, monkeypatch):
    monkeypatch.delenv("SPIKEFORMER_ALERTMANAGER_URL", raising=False)
    svc = IncidentService(db)
    iid = svc.open("by hand", "SEV-2", "alice")["id"]
    with pytest.raises(IncidentInputError, match="set SPIKEFORMER_ALERTMANAGER_URL"):
        svc.acknowledge(iid, "bob", silence=True)
    with pytest.raises(IncidentConflictError, match="no Alertmanager alerts to silence"):
        svc.acknowledge(iid, "bob", silence=True, alertmanager_url="http://127.0.0.1:9")
    assert svc.get(iid)["status"] == "open"  # nothing changed


def test_acknowledge_route_silences_through_the_api(service, alertmanager, am):
    iid = service.post("/v1/alertmanager/webhook", am.payload(), key="alerts").json()["incident_id"]
    r = service.post(
        f"/v1/incidents/{iid}/acknowledge",
        {"silence": True, "silence_minutes": 30, "alertmanager_url": alertmanager.url, "author": "bob"},
    )
    assert r.status_code == 200, r.text
    assert [s["id"] for s in alertmanager.silences()] == [r.json()["silences"][0]["silenceID"]]


def test_resolving_expires_the_incidents_silences(db, alertmanager, am):
    svc = IncidentService(db, alertmanager_url=alertmanager.url)
    iid = svc.handle_alertmanager(am.payload())["incident_id"]
    silence_id = svc.acknowledge(iid, "bob", silence=True)["silences"][0]["silenceID"]
    view = svc.resolve(iid, "bob", resolution="fixed")
    (silence,) = alertmanager.silences()
    assert silence["id"] == silence_id and silence["status"]["state"] == "expired"
    assert view["timeline"][-1]["message"] == f"Expired Alertmanager silence {silence_id}"


def test_a_silence_that_cannot_be_expired_is_recorded(db, start_alertmanager, am):
    alertmanager = start_alertmanager()
    svc = IncidentService(db, alertmanager_url=alertmanager.url, http_timeout_s=2)
    iid = svc.handle_alertmanager(am.payload())["incident_id"]
    svc.acknowledge(iid, "bob", silence=True)
    alertmanager.stop()
    view = svc.resolve(iid, "bob")
    assert view["status"] == "resolved"
    assert view["timeline"][-1]["kind"] == "silence"
    assert view["timeline"][-1]["message"].startswith("cannot expire the Alertmanager silence")
