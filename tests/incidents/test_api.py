"""The ``/v1/incidents`` routes: keys, every action, public and internal timelines, gauges, and 400/404/409."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest


def _open(service, **body) -> dict:
    r = service.post("/v1/incidents", {"title": "Outage", "sev": "SEV-2", "author": "alice"} | body)
    assert r.status_code == 201, r.text
    return r.json()


def test_changes_need_an_admin_key(service):
    assert service.post("/v1/incidents", {"title": "x", "sev": 2}, key=None).status_code == 401
    assert service.post("/v1/incidents", {"title": "x", "sev": 2}, key="alerts").status_code == 403
    assert service.post("/v1/incidents", {"title": "x", "sev": 2}, key="infer").status_code == 403
    iid = _open(service)["id"]
    assert service.post(f"/v1/incidents/{iid}/acknowledge", key="alerts").status_code == 403


def test_every_action_through_the_api(service):
    view = _open(service, summary="503s", impact="everyone")
    iid = view["id"]
    steps = [
        ("acknowledge", None, "acknowledged"),
        ("commander", {"commander": "carol", "author": "bob"}, "acknowledged"),
        ("events", {"message": "suspect v2", "author": "carol"}, "acknowledged"),
        ("updates", {"message": "rolling back", "progress": "v1 loading", "next_steps": "verify"}, "acknowledged"),
        ("severity", {"sev": "SEV-1", "reason": "all models"}, "acknowledged"),
        ("mitigate", {"message": "v1 serves"}, "mitigated"),
        ("resolve", {"root_cause": "bad weights", "resolution": "rollback"}, "resolved"),
        ("close", {"message": "post-mortem held", "force": True, "reason": "verified by hand"}, "closed"),
    ]
    for action, body, status in steps:
        r = service.post(f"/v1/incidents/{iid}/{action}", body)
        assert r.status_code == 200, (action, r.text)
        assert r.json()["status"] == status
    final = r.json()
    assert final["sev"] == "SEV-1" and final["commander"] == "carol" and final["root_cause"] == "bad weights"
    kinds = [e["kind"] for e in final["timeline"]]
    assert kinds == [
        "opened", "acknowledged", "commander", "commander", "note", "update", "severity", "mitigated", "resolved",
        "close_forced", "closed",
    ]  # fmt: skip
    # without a body the author is the API key's prefix
    assert final["timeline"][1]["author"] == f"api key {service.admin[:8]}"


def test_public_timeline_without_a_key_internal_with_one(service):
    iid = _open(service)["id"]
    service.post(f"/v1/incidents/{iid}/events", {"message": "secret suspicion"})
    service.post(f"/v1/incidents/{iid}/updates", {"message": "we are on it"})
    public = service.get(f"/v1/incidents/{iid}").json()["timeline"]
    assert [e["visibility"] for e in public] == ["public", "public"]
    full = service.get(f"/v1/incidents/{iid}", key="alerts").json()["timeline"]
    assert [e["message"] for e in full][1:] == ["secret suspicion", "we are on it"]
    bad = service.client.get(f"/v1/incidents/{iid}", headers={"Authorization": "Bearer sfk_wrong_key"})
    assert bad.status_code == 401


def test_list_severities_and_postmortem_routes(service):
    a = _open(service, title="A")["id"]
    b = _open(service, title="B", sev=4)["id"]
    service.post(f"/v1/incidents/{a}/resolve", {"resolution": "fixed"})
    assert [i["id"] for i in service.get("/v1/incidents").json()["incidents"]] == [b, a]
    assert [i["id"] for i in service.get("/v1/incidents?status=active").json()["incidents"]] == [b]
    assert service.get("/v1/incidents?status=gone").status_code == 400
    sev = service.get("/v1/incidents/severities").json()
    assert [s["response_minutes"] for s in sev["severities"]] == [15, 60, 240, 1440]
    assert service.get(f"/v1/incidents/{a}/postmortem").status_code == 401
    pm = service.get(f"/v1/incidents/{a}/postmortem", key="alerts")
    assert pm.status_code == 200 and pm.headers["content-type"].startswith("text/markdown")
    assert pm.text.startswith(f"# Post-mortem (draft): incident #{a}: A")


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/incidents", {"title": "x", "sev": "SEV-7"}, 400, "unknown severity 'SEV-7'"),
        ("/v1/incidents", {"title": "", "sev": 1}, 400, "title"),
        ("/v1/incidents", {"title": "x", "sev": 1, "colour": "red"}, 400, "colour"),
        ("/v1/incidents", {"title": "x", "sev": 1, "started_at": "2026-01-01T00:00:00"}, 400, "no time zone"),
        ("/v1/incidents", {"title": "x", "sev": 1, "started_at": "1999-01-01T00:00:00Z"}, 400, "days from now"),
        ("/v1/incidents/999/acknowledge", None, 404, "no incident with id 999"),
        ("/v1/incidents/abc/acknowledge", None, 400, "incident_id"),
        ("/v1/incidents/{iid}/close", None, 409, "close applies to resolved incidents"),
        ("/v1/incidents/{iid}/events", {"message": "x", "visibility": "secret"}, 400, "visibility"),
        ("/v1/incidents/{iid}/updates", {"message": "x", "eta": "soon"}, 400, "eta"),
        ("/v1/incidents/{iid}/acknowledge", {"silence": True, "silence_minutes": 0}, 400, "silence_minutes"),
    ],
)
def test_bad_requests_say_what_was_wrong(service, path, body, status, message):
    iid = _open(service)["id"]
    r = service.post(path.format(iid=iid), body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_overdue_gauges_on_metrics(service):
    started = (datetime.now(UTC) - timedelta(minutes=40)).isoformat()
    iid = _open(service, sev="SEV-1", started_at=started)["id"]  # 40 min ago: past 15 min ack, 30 min update
    text = service.client.get("/metrics").text
    assert 'spikeformer_incident_ack_overdue{sev="SEV-1"} 1.0' in text
    assert 'spikeformer_incidents_open{sev="SEV-1"} 1.0' in text
    service.post(f"/v1/incidents/{iid}/acknowledge")
    text = service.client.get("/metrics").text
    assert 'spikeformer_incident_ack_overdue{sev="SEV-1"} 0.0' in text
    # opened 40 min before now, no update since the opening (just now): the update clock started at opening
    assert 'spikeformer_incident_update_overdue{sev="SEV-1"} 0.0' in text
    listed = service.get("/v1/incidents", key="alerts").json()["incidents"][0]
    assert listed["ack_overdue"] is False and listed["acknowledged_by"] == f"api key {service.admin[:8]}"
    assert service.get("/v1/incidents").json()["incidents"][0]["acknowledged_by"] == "operator"  # no key prefix
