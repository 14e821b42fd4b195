"""Closing an incident needs a passing smoke run (attached to the timeline) or force with a reason (recorded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spikeformer.ops.smoke import run_smoke


def _resolved(service) -> int:
    auth = service.auth()
    iid = service.client.post("/v1/incidents", json={"title": "Outage", "sev": "SEV-2"}, headers=auth).json()["id"]
    assert (
        service.client.post(f"/v1/incidents/{iid}/resolve", json={"resolution": "x"}, headers=auth).status_code == 200
    )
    return iid


def _close(service, iid: int, body: dict | None):
    return service.client.post(f"/v1/incidents/{iid}/close", json=body, headers=service.auth())


def test_a_passing_smoke_run_closes_and_is_attached_internally(service):
    iid = _resolved(service)
    result = run_smoke("http://testserver", service.admin, client=service.client).to_dict()
    assert result["ok"], result["summary"]
    r = _close(service, iid, {"smoke": result, "message": "post-mortem held"})
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["status"] == "closed"
    smoke, closed = view["timeline"][-2:]
    assert (smoke["kind"], smoke["visibility"], closed["kind"]) == ("smoke", "internal", "closed")
    assert smoke["message"] == "Recovery verified: smoke run passed: 7 checks against http://testserver"
    assert [c["name"] for c in smoke["data"]["checks"]] == [c["name"] for c in result["checks"]]
    assert all(c["status"] == "pass" for c in smoke["data"]["checks"])
    public = service.client.get(f"/v1/incidents/{iid}").json()["timeline"]
    assert "smoke" not in [e["kind"] for e in public]


def test_force_with_a_reason_is_recorded(service):
    iid = _resolved(service)
    r = _close(service, iid, {"force": True, "reason": "the smoke Job cannot reach the cluster from here"})
    assert r.status_code == 200, r.text
    forced = r.json()["timeline"][-2]
    assert forced["kind"] == "close_forced" and forced["visibility"] == "internal"
    assert forced["data"] == {"reason": "the smoke Job cannot reach the cluster from here"}
    assert "(forced): the smoke Job cannot reach" in forced["message"]


def _failed(now: datetime) -> dict:
    checks = [("live", "pass"), ("ready", "pass"), ("model:tiny", "pass"), ("infer:tiny", "pass")]
    checks += [("metrics", "pass"), ("database", "fail")]
    return {
        "url": "http://x",
        "started_at": (now - timedelta(seconds=1)).isoformat(),
        "finished_at": now.isoformat(),
        "checks": [{"name": n, "status": s, "seconds": 0.1, "detail": ""} for n, s in checks],
    }


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (None, 409, "needs a passing smoke run"),
        ({"message": "done"}, 409, "needs a passing smoke run"),
        ({"force": True}, 400, "force needs a reason"),
        ({"force": True, "reason": "  "}, 400, "force needs a reason"),
        ({"force": True, "reason": "x", "smoke": "SMOKE"}, 400, "not both"),
        ({"smoke": "FAILED"}, 409, "stays resolved: the smoke run failed: database"),
        (
            {
                "smoke": {
                    "started_at": "2026-01-01T00:00:00",
                    "finished_at": "2026-01-01T00:00:01",
                    "checks": [{"name": "live", "status": "pass"}],
                }
            },
            400,
            "no time zone",
        ),  # fmt: skip
        ({"smoke": {"started_at": "x", "checks": []}}, 400, "smoke"),
        ({"smoke": {"checks": [{"name": "live", "status": "great"}]}}, 400, "smoke"),
    ],
)
def test_closing_without_proof_is_refused_and_changes_nothing(service, body, status, message):
    iid = _resolved(service)
    now = datetime.now(UTC)
    if body is not None and body.get("smoke") == "SMOKE":
        body["smoke"] = run_smoke("http://testserver", service.admin, client=service.client).to_dict()
    if body is not None and body.get("smoke") == "FAILED":
        body["smoke"] = _failed(now)
    before = service.client.get(f"/v1/incidents/{iid}", headers=service.auth()).json()
    r = _close(service, iid, body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    after = service.client.get(f"/v1/incidents/{iid}", headers=service.auth()).json()
    assert after["status"] == "resolved" and after["timeline"] == before["timeline"]


def test_an_open_incident_cannot_close_even_with_force(service):
    iid = service.client.post("/v1/incidents", json={"title": "x", "sev": 3}, headers=service.auth()).json()["id"]
    r = _close(service, iid, {"force": True, "reason": "x"})
    assert r.status_code == 409 and "close applies to resolved incidents" in r.json()["error"]


def test_cli_close_refuses_smoke_and_force_together_and_needs_one(tmp_path):
    from typer.testing import CliRunner

    from spikeformer.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    both = ["incident", "close", "1", "--smoke-url", "http://127.0.0.1:9", "--force", "--reason", "x"]
    out = runner.invoke(app, [*both, "--database-url", url])
    assert out.exit_code == 2 and "not both" in out.output
    bad_url = runner.invoke(app, ["smoke", "--url", "127.0.0.1:8000"])
    assert bad_url.exit_code == 2 and "http:// or https://" in bad_url.output
