"""The public status page (`/status`, `/status.json`): components from the live health checks, incidents with their
public entries only, and 90 daily availability bars from the inference records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spikeformer.serve.services import status
from spikeformer.store import Database, InferenceRecordStore, JobStore, StoreError


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setattr(status, "CACHE_TTL_S", 0.0)


def _components(doc: dict) -> dict[str, str]:
    return {c["id"]: c["state"] for c in doc["components"]}


def _records(db_url: str, day: datetime, ok: int, failed: int) -> None:
    rows = [{"model": "tiny", "latency_ms": 5.0, "status": "ok", "http_status": 200, "created_at": day}] * ok
    rows += [{"model": "tiny", "latency_ms": 5.0, "status": "error", "http_status": 500, "created_at": day}] * failed
    db = Database(db_url)
    with db.session() as s:
        InferenceRecordStore(s).add_many([dict(r) for r in rows])
    db.dispose()


def test_components_of_a_healthy_service(service):
    r = service.client.get("/status.json")
    assert r.status_code == 200 and "default-src 'none'" in r.headers["content-security-policy"]
    doc = r.json()
    assert doc["status"] == {"state": "operational", "description": "All systems operational"}
    components = _components(doc)
    backends = [k for k in components if k.startswith("backend:")]
    assert backends, components
    assert components == {"api": "operational", "model:tiny": "operational", **dict.fromkeys(backends, "operational"),
                          "database": "operational", "workers": "operational"}  # fmt: skip
    model = next(c for c in doc["components"] if c["id"] == "model:tiny")
    assert model["description"] == "Version 1 is serving"
    assert doc["incidents"] == [] and doc["history"] == []


def test_ninety_daily_bars_from_the_inference_records(service):
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    _records(service.db_url, today - timedelta(days=1), ok=1000, failed=0)
    _records(service.db_url, today - timedelta(days=5), ok=990, failed=10)  # 99.0 %
    _records(service.db_url, today - timedelta(days=10), ok=50, failed=50)
    _records(service.db_url, today - timedelta(days=120), ok=5, failed=5)  # before the window
    bars = service.client.get("/status.json").json()["availability"]
    assert bars["days"] == 90 and len(bars["bars"]) == 90
    by_date = {b["date"]: b for b in bars["bars"]}
    assert bars["bars"][-1]["date"] == today.date().isoformat()
    assert bars["bars"][0]["date"] == (today - timedelta(days=89)).date().isoformat()

    def day(n: int) -> dict:
        return by_date[(today - timedelta(days=n)).date().isoformat()]

    assert day(1) | {"incidents": []} == {
        "date": day(1)["date"], "total": 1000, "ok": 1000, "availability": 1.0, "state": "operational",
        "incidents": [],
    }  # fmt: skip
    assert (day(5)["availability"], day(5)["state"]) == (0.99, "degraded")
    assert (day(10)["availability"], day(10)["state"]) == (0.5, "major_outage")
    assert (day(2)["total"], day(2)["availability"], day(2)["state"]) == (0, None, "no_data")
    assert (bars["total"], bars["ok"]) == (2100, 2040)
    page = service.client.get("/status").text
    assert page.count('data-testid="bar"') == 90
    assert f'data-date="{day(2)["date"]}" data-state="no_data" title="{day(2)["date"]}: no data' in page


def test_incidents_show_public_entries_only(service):
    auth = service.auth()
    opened = service.client.post(
        "/v1/incidents",
        json={"title": "Classify answers 503", "sev": "SEV-2", "summary": "batcher", "impact": "half of the clients"},
        headers=auth,
    ).json()
    iid = opened["id"]
    secret = "suspect /srv/models/tiny/2 and key sfk_12345678"
    service.client.post(f"/v1/incidents/{iid}/events", json={"message": secret}, headers=auth)
    service.client.post(f"/v1/incidents/{iid}/updates", json={"message": "We are rolling back"}, headers=auth)
    service.client.post(
        f"/v1/incidents/{iid}/updates", json={"message": "internal: db pool", "visibility": "internal"}, headers=auth
    )
    resolved = service.client.post("/v1/incidents", json={"title": "Old slowness", "sev": 3}, headers=auth).json()
    service.client.post(f"/v1/incidents/{resolved['id']}/resolve", json={"resolution": "x"}, headers=auth)

    doc = service.client.get("/status.json").json()
    (incident,) = doc["incidents"]
    assert incident["id"] == iid and incident["title"] == "Classify answers 503"
    assert (incident["sev"], incident["severity"], incident["status"]) == ("SEV-2", "High", "open")
    assert incident["latest_update"]["message"] == "We are rolling back"
    assert {i["id"] for i in doc["history"]} == {iid, resolved["id"]}
    today = doc["availability"]["bars"][-1]
    assert {i["id"] for i in today["incidents"]} == {iid, resolved["id"]}
    text = service.client.get("/status.json").text + service.client.get("/status").text
    for hidden in (secret, "internal: db pool", "half of the clients", "batcher", "api key", service.admin[:8]):
        assert hidden not in text, hidden
    page = service.client.get("/status").text
    assert f'data-testid="incident" data-incident="{iid}"' in page and "We are rolling back" in page
    assert f'data-testid="past-incident" data-incident="{resolved["id"]}"' in page


def test_the_page_escapes_text_and_loads_nothing_external(service):
    service.client.post(
        "/v1/incidents", json={"title": "<script>alert(1)</script> & co", "sev": 1}, headers=service.auth()
    )
    r = service.client.get("/status")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "http://" not in page and "https://" not in page and " src=" not in page and "<link" not in page
    # the overall state comes from the health checks; an incident shows next to it without changing it
    assert 'data-testid="overall" data-state="operational"' in page and 'data-testid="incident"' in page


def test_maintenance_and_a_database_outage(service, monkeypatch):
    on = service.client.post("/v1/admin/maintenance", json={"enabled": True, "message": "x"}, headers=service.auth())
    assert on.status_code == 200
    doc = service.client.get("/status.json").json()
    assert _components(doc)["api"] == "maintenance" and doc["status"]["state"] == "maintenance"

    def unavailable(*_args):
        raise StoreError("connection refused by db.internal:5432")

    monkeypatch.setattr(status, "_read_database", unavailable)
    doc = service.client.get("/status.json").json()
    components = _components(doc)
    assert components["database"] == components["workers"] == "major_outage"
    assert doc["status"]["state"] == "major_outage" and doc["incidents_available"] is False
    page = service.client.get("/status").text
    assert "temporarily unavailable" in page and "db.internal" not in page


def test_a_failed_model_is_an_outage(start_service, model_repository, tmp_path):
    repo = model_repository(tmp_path / "m")
    svc = start_service(repo)
    weights = repo / "tiny" / "1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"oops")
    assert svc.client.post("/v2/repository/models/tiny/load", headers=svc.auth()).status_code == 200
    doc = svc.client.get("/status.json").json()
    assert _components(doc)["api"] == _components(doc)["model:tiny"] == "major_outage"
    text = svc.client.get("/status.json").text
    assert "sha256" not in text and str(tmp_path) not in text  # the integrity error stays internal


def test_workers_state_from_the_jobs_table(service):
    db = Database(service.db_url)
    now = datetime.now(UTC)
    with db.session() as s:
        JobStore(s).submit("tiny", {"kind": "images"}, 1).created_at = now - timedelta(minutes=30)
    assert _components(service.client.get("/status.json").json())["workers"] == "major_outage"
    with db.session() as s:
        done = JobStore(s).submit("tiny", {"kind": "images"}, 1)
        done.status, done.finished_at = "done", now - timedelta(minutes=2)
    assert _components(service.client.get("/status.json").json())["workers"] == "degraded"
    db.dispose()


@pytest.mark.parametrize(
    ("queued", "waited_min", "finished_min", "expected"),
    [
        (0, None, None, "operational"),
        (3, 4, None, "operational"),
        (3, 6, 10, "degraded"),
        (3, 6, 20, "major_outage"),
        (1, 60, None, "major_outage"),
    ],
)
def test_workers_state_rules(queued, waited_min, finished_min, expected):
    now = datetime.now(UTC)
    oldest = now - timedelta(minutes=waited_min) if waited_min is not None else None
    finished = now - timedelta(minutes=finished_min) if finished_min is not None else None
    assert status.workers_state(queued, oldest, finished, now)[0] == expected


@pytest.mark.parametrize(
    ("total", "ok", "expected"),
    [
        (0, 0, "no_data"),
        (1000, 999, "operational"),
        (1000, 998, "degraded"),
        (100, 99, "degraded"),
        (100, 98, "major_outage"),
    ],
)
def test_day_state_thresholds(total, ok, expected):
    assert status.day_state(total, ok) == expected


@pytest.mark.security
def test_day_bars_outlive_the_raw_records_retention(service):
    from spikeformer.serve.services.background import apply_retention

    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    _records(service.db_url, today - timedelta(days=45), ok=10, failed=10)
    _records(service.db_url, today - timedelta(days=1), ok=4, failed=0)
    db = Database(service.db_url)
    apply_retention(db, 30, batch_size=7, max_batches=10, now=datetime.now(UTC))
    with db.session() as s:  # the raw records of the expired day are gone ...
        assert InferenceRecordStore(s).count(until=today - timedelta(days=44)) == 0
    db.dispose()
    by_date = {b["date"]: b for b in service.client.get("/status.json").json()["availability"]["bars"]}
    old = by_date[(today - timedelta(days=45)).date().isoformat()]  # ... and its bar is still there
    assert (old["total"], old["ok"], old["state"]) == (20, 10, "major_outage")
    assert by_date[(today - timedelta(days=1)).date().isoformat()]["total"] == 4
