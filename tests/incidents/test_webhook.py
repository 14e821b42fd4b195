"""``POST /v1/alertmanager/webhook``: authentication, one incident per alert group, severity escalation, firing and
resolved alerts recorded once however often Alertmanager repeats itself, and 400 for what is not a payload."""

from __future__ import annotations

import pytest

HOOK = "/v1/alertmanager/webhook"


def timeline(service, iid: int) -> list[dict]:
    return service.get(f"/v1/incidents/{iid}", key="admin").json()["timeline"]


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("infer", 403), ("alerts", 200), ("admin", 200)],
)
def test_webhook_needs_an_alerts_or_admin_key(am, service, key, status):
    r = service.post(HOOK, am.payload(), key=key)
    assert r.status_code == status, r.text
    if status != 200:
        assert "scope alerts" in r.json()["error"] or "needs an API key" in r.json()["error"]


def test_firing_group_opens_one_incident_and_repeats_add_nothing(am, service):
    r = service.post(HOOK, am.payload(), key="alerts")
    body = r.json()
    assert body["created"] is True and body["sev"] == "SEV-2" and body["firing"] == 1
    iid = body["incident_id"]
    incident = service.get(f"/v1/incidents/{iid}", key="admin").json()
    assert incident["title"] == "SpikeformerHighErrorRate fires"
    assert incident["summary"] == "Inference requests fail."
    assert incident["source"] == "alertmanager" and incident["group_labels"] == {
        "alertname": "SpikeformerHighErrorRate"
    }
    assert incident["alerts"][0]["fingerprint"] == "a1" and incident["alerts"][0]["status"] == "firing"
    # the detection time is the alert's startsAt (Go's nanoseconds are cut to microseconds)
    assert incident["started_at"] == incident["alerts"][0]["starts_at"]
    assert [e["kind"] for e in incident["timeline"]] == ["opened", "alert_firing"]
    assert incident["timeline"][0]["author"] == "alertmanager (incidents)"

    for _ in range(3):  # Alertmanager re-sends the group every repeat_interval
        again = service.post(HOOK, am.payload(), key="alerts").json()
        assert again == body | {"created": False, "events_added": 0}
    assert len(service.get("/v1/incidents").json()["incidents"]) == 1


def test_severity_escalates_and_never_silently_downgrades(am, service):
    iid = service.post(HOOK, am.payload(alerts=[am.alert("a1", "SEV-3")]), key="alerts").json()["incident_id"]
    two = [am.alert("a1", "SEV-3"), am.alert("a2", "SEV-1", instance="api-1")]
    assert service.post(HOOK, am.payload(alerts=two), key="alerts").json()["sev"] == "SEV-1"
    three = [*two, am.alert("a3", "SEV-4", instance="api-2")]
    r = service.post(HOOK, am.payload(alerts=three), key="alerts").json()
    assert r["sev"] == "SEV-1" and r["incident_id"] == iid
    severity_events = [e["message"] for e in timeline(service, iid) if e["kind"] == "severity"]
    assert severity_events == [
        "Escalated from SEV-3 to SEV-1: alert SpikeformerHighErrorRate has sev SEV-1",
        "Alert SpikeformerHighErrorRate has sev SEV-4, lower than the incident's SEV-1: the incident keeps SEV-1 "
        "(a person may lower it)",
    ]


def test_missing_or_bad_sev_label_falls_back_and_says_so(am, service):
    a = am.alert("b1", sev=None)
    a["labels"]["severity"] = "critical"
    assert service.post(HOOK, am.payload("A", [a]), key="alerts").json()["sev"] == "SEV-2"
    bad = am.alert("c1", sev="urgent")
    body = service.post(HOOK, am.payload("B", [bad]), key="alerts").json()
    assert body["sev"] == "SEV-3"
    notes = [e["message"] for e in timeline(service, body["incident_id"]) if e["kind"] == "note"]
    assert any("unknown severity 'urgent'" in n and "classified SEV-3" in n for n in notes)


def test_resolved_alerts_are_recorded_once_and_the_incident_stays_for_a_person(am, service):
    firing = [am.alert("a1"), am.alert("a2", instance="api-1")]
    iid = service.post(HOOK, am.payload(alerts=firing), key="alerts").json()["incident_id"]
    half = [am.alert("a1", status="resolved"), am.alert("a2", instance="api-1")]
    r = service.post(HOOK, am.payload(alerts=half), key="alerts").json()
    assert (r["firing"], r["resolved"], r["events_added"]) == (1, 1, 1)
    done = [am.alert("a1", status="resolved"), am.alert("a2", status="resolved", instance="api-1")]
    for _ in range(2):
        r = service.post(HOOK, am.payload(alerts=done, status="resolved"), key="alerts").json()
    assert r["status"] == "open" and (r["firing"], r["resolved"]) == (0, 2)
    events = [e["kind"] for e in timeline(service, iid)]
    assert events == ["opened", "alert_firing", "alert_firing", "alert_resolved", "alert_resolved", "alerts_resolved"]


def test_group_after_resolution_opens_a_new_incident_and_refiring_is_recorded(am, service):
    first = service.post(HOOK, am.payload(), key="alerts").json()["incident_id"]
    # the same alert fires again (a new startsAt) while the incident is live
    refire = am.alert("a1", starts_at="2026-01-01T12:00:00Z")
    service.post(HOOK, am.payload(alerts=[am.alert("a1", status="resolved")]), key="alerts")
    service.post(HOOK, am.payload(alerts=[refire]), key="alerts")
    messages = [e["message"] for e in timeline(service, first)]
    assert messages[-1].startswith("Alert SpikeformerHighErrorRate fired again")

    assert service.post(f"/v1/incidents/{first}/resolve", {"resolution": "fixed"}).status_code == 200
    # late resolved notification: recorded on the resolved incident, no new incident
    late = service.post(HOOK, am.payload(alerts=[am.alert("a1", status="resolved")]), key="alerts").json()
    assert late["incident_id"] == first and late["created"] is False
    # the group fires again: a new incident that points at the previous one
    second = service.post(HOOK, am.payload(alerts=[am.alert("a9")]), key="alerts").json()
    assert second["created"] is True and second["incident_id"] != first
    notes = [e["message"] for e in timeline(service, second["incident_id"]) if e["kind"] == "note"]
    assert notes == [f"The same alert group fired again after incident #{first} (resolved)"]


def test_an_alert_already_held_by_a_live_incident_is_not_opened_twice(am, service):
    iid = service.post(HOOK, am.payload("G1", [am.alert("shared")]), key="alerts").json()["incident_id"]
    # Alertmanager's grouping changed (new group key) but the alert is the same
    r = service.post(HOOK, am.payload("G2", [am.alert("shared")]), key="alerts").json()
    assert r["incident_id"] == iid and r["created"] is False


def test_resolved_alerts_of_an_unknown_group_are_ignored(am, service):
    r = service.post(HOOK, am.payload(alerts=[am.alert(status="resolved")], status="resolved"), key="alerts")
    assert r.status_code == 200 and r.json()["incident_id"] is None and "no incident" in r.json()["ignored"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(version="3"), "unsupported webhook payload version '3': accepted '4'"),
        (lambda p: p.pop("groupKey"), "groupKey must be a non-empty string"),
        (lambda p: p.update(alerts=[]), "alerts must be a non-empty list"),
        (lambda p: p["alerts"][0].update(status="pending"), "alerts[0].status must be 'firing' or 'resolved'"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt is not an RFC 3339 time"),
        (lambda p: p["alerts"][0].update(labels=["x"]), "alerts[0].labels must be an object"),
        (lambda p: p.update(status="maybe"), "status must be 'firing' or 'resolved'"),
    ],
)
def test_bad_payloads_are_400_with_the_reason(am, service, mutate, message):
    payload = am.payload()
    mutate(payload)
    r = service.post(HOOK, payload, key="alerts")
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_not_json_is_400(service):
    r = service.client.post(HOOK, content=b"{nope", headers=service.headers(service.alerts))
    assert r.status_code == 400 and "error" in r.json()


def test_gauges_follow_the_webhook(am, service):
    service.post(HOOK, am.payload(alerts=[am.alert("z1", "SEV-1")]), key="alerts")
    text = service.client.get("/metrics").text
    assert 'spikeformer_incidents_open{sev="SEV-1"} 1.0' in text
    assert 'spikeformer_incident_ack_overdue{sev="SEV-1"} 0.0' in text
