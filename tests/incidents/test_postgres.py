"""The incident logic on PostgreSQL: row locks, the unique live-group key under concurrent deliveries, UTC times."""

from __future__ import annotations

import threading

from spikeformer.ops.incidents import IncidentService
from spikeformer.store import Database, IncidentStore


def test_lifecycle_and_concurrent_webhooks_on_postgresql(pg_cluster_url, am):
    db = Database(pg_cluster_url)
    try:
        svc = IncidentService(db)
        iid = svc.open("PG outage", "SEV-1", "alice", summary="x")["id"]
        svc.acknowledge(iid, "bob")
        svc.post_update(iid, "working", "bob", progress="p")
        view = svc.resolve(iid, "bob", root_cause="c", resolution="r")
        assert view["status"] == "resolved" and view["started_at"].endswith("+00:00")
        assert [e["kind"] for e in view["timeline"]] == ["opened", "acknowledged", "commander", "update", "resolved"]
        with db.session() as s:
            assert IncidentStore(s).get(iid, lock=True).status == "resolved"  # SELECT ... FOR UPDATE

        payload = am.payload("PgRace", [am.alert("pg1", "SEV-3"), am.alert("pg2", "SEV-2", instance="api-1")])
        results, errors = [], []
        barrier = threading.Barrier(6)

        def deliver() -> None:
            try:
                barrier.wait()
                results.append(IncidentService(db).handle_alertmanager(payload))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=deliver) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert len({r["incident_id"] for r in results}) == 1 and sum(r["created"] for r in results) == 1
        incident = svc.get(results[0]["incident_id"])
        assert incident["sev"] == "SEV-2" and len(incident["alerts"]) == 2
        assert [e["kind"] for e in incident["timeline"]].count("alert_firing") == 2
        assert svc.severity_metrics()["SEV-2"]["open"] == 1
        assert "| Incident | 0 | 0 |" in svc.postmortem(iid)
    finally:
        db.dispose()
