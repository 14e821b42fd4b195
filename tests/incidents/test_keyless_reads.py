"""Keyless readers of incidents see public fields only: no internal text and no API key prefixes, on every route.

The routes are found from the application's route table, so a read route added later is walked too (a path
parameter the walk does not know fails the test, so that it is taught to fill it in).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.routing import APIRoute

from spikeformer.store.api_keys import KEY_PREFIX

pytestmark = pytest.mark.security

SECRET = "ZZ-internal-secret"
# The public text the test also writes: it must still be visible without a key.
PUBLIC = "rolling back the weights"
KEY_PATTERN = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]+")
# Read routes outside /v1/incidents that carry incident data (the status page; the console reads the API).
INCIDENT_PAGES = ("/status", "/status.json")


def _literal_values(route: APIRoute, name: str) -> list[str]:
    for param in route.dependant.path_params:
        if param.name == name:
            args = typing.get_args(param.field_info.annotation)
            return [str(a) for a in args]
    return []


def _api_routes(routes: list, prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """`(path, route)` of every API route of a route table, included routers too (FastAPI may include lazily)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, APIRoute):
            yield prefix + route.path, route


def _keyless_read_paths(app, incident_id: int) -> list[str]:
    """Every GET path of the incident routes (and the status pages), path parameters filled in."""
    paths: list[str] = []
    for path, route in _api_routes(app.routes):
        if "GET" not in route.methods or not (path.startswith("/v1/incidents") or path in INCIDENT_PAGES):
            continue
        variants = [path]
        for param in route.dependant.path_params:
            if param.name == "incident_id":
                values = [str(incident_id)]
            else:
                values = _literal_values(route, param.name)
            assert values, f"the walk does not know how to fill {{{param.name}}} of {route.path}: teach it"
            variants = [v.replace("{" + param.name + "}", value) for v in variants for value in values]
        paths += variants
    return paths


def _incident_with_internal_text(service) -> int:
    """An incident whose internal entries hold SECRET and whose key-made entries have a key prefix as author."""
    r = service.post("/v1/incidents", {"title": "Outage", "sev": "SEV-2", "summary": "503s", "impact": "classify"})
    assert r.status_code == 201, r.text
    iid = r.json()["id"]
    for path, body in [
        ("acknowledge", None),  # by the key: author, acknowledged_by and commander are 'api key sfk_....'
        ("updates", {"message": PUBLIC, "progress": "v1 loading", "next_steps": "verify"}),
        ("events", {"message": f"note {SECRET}"}),
        (
            "updates",
            {
                "message": f"update {SECRET}",
                "progress": f"progress {SECRET}",
                "next_steps": f"next {SECRET}",
                "eta": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
                "visibility": "internal",
            },
        ),
        ("events", {"message": f"public note by {service.admin[:8]}", "visibility": "public"}),
    ]:
        r = service.post(f"/v1/incidents/{iid}/{path}", body)
        assert r.status_code == 200, (path, r.text)
    return iid


def test_keyless_reads_show_no_internal_text_and_no_key_prefix(service):
    iid = _incident_with_internal_text(service)
    app = service.client.app
    paths = _keyless_read_paths(app, iid)
    expected = {
        "/v1/incidents",
        f"/v1/incidents/{iid}",
        f"/v1/incidents/{iid}/messages/update",
        f"/v1/incidents/{iid}/messages/initial",
        "/status.json",
    }
    assert expected <= set(paths), paths
    walked = []
    for path in paths:
        r = service.get(path)
        if r.status_code in (401, 403):  # not a keyless read route (the post-mortem needs a key)
            continue
        assert r.status_code < 500, (path, r.text)
        walked.append(path)
        assert SECRET not in r.text, (path, r.text)
        assert not KEY_PATTERN.search(r.text), (path, r.text)
    assert expected - {f"/v1/incidents/{iid}/messages/resolution"} <= set(walked)

    # what is public is still there without a key ...
    view = service.get(f"/v1/incidents/{iid}").json()
    assert view["progress"] == "v1 loading" and view["next_steps"] == "verify" and view["eta"] is None
    assert [e["message"] for e in view["timeline"] if e["kind"] == "update"] == [PUBLIC]
    assert {e["author"] for e in view["timeline"]} == {"operator"}
    listed = service.get("/v1/incidents").json()["incidents"][0]
    assert listed["progress"] == "v1 loading" and listed["acknowledged_by"] == "operator"
    text = service.get(f"/v1/incidents/{iid}/messages/update").json()["text"]
    assert f"Progress: {PUBLIC}; v1 loading" in text and "Next steps: verify" in text
    # ... and a key with scope alerts sees everything
    for path in ("/v1/incidents", f"/v1/incidents/{iid}", f"/v1/incidents/{iid}/messages/update"):
        r = service.get(path, key="alerts")
        assert r.status_code == 200 and f"progress {SECRET}" in r.text, path
        assert f"api key {service.admin[:8]}" in r.text, path


def test_keyless_view_hides_alert_details(service, am):
    payload = am.payload(alerts=[am.alert(instance=f"api-0 {SECRET}")])
    payload["externalURL"] = f"http://alertmanager.internal:9093/{SECRET}"
    assert service.post("/v1/alertmanager/webhook", payload, key="alerts").status_code == 200
    iid = service.get("/v1/incidents").json()["incidents"][0]["id"]
    for path in _keyless_read_paths(service.client.app, iid):
        r = service.get(path)
        if r.status_code in (401, 403):
            continue
        assert SECRET not in r.text and "prometheus.example" not in r.text, (path, r.text)
    view = service.get(f"/v1/incidents/{iid}").json()
    assert set(view["alerts"][0]) == {"alertname", "status", "sev", "starts_at", "ends_at"}
    assert view["alerts"][0]["alertname"] == "SpikeformerHighErrorRate" and view["group_labels"] is None
    full = service.get(f"/v1/incidents/{iid}", key="alerts").json()
    assert SECRET in full["alerts"][0]["labels"]["instance"]


def test_a_bad_key_on_a_read_route_is_refused(service):
    iid = _incident_with_internal_text(service)
    wrong = {"Authorization": "Bearer sfk_wrong_key"}
    for path in ("/v1/incidents", f"/v1/incidents/{iid}", f"/v1/incidents/{iid}/messages/update"):
        assert service.client.get(path, headers=wrong).status_code == 401, path
        assert service.get(path, key="infer").status_code == 403, path
