"""The incident state machine and its timeline, targets from the severity table, and the overdue gauges' counts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from spikeformer.ops.incidents import (
    EVENT_KINDS,
    IncidentConflictError,
    IncidentInputError,
    IncidentNotFoundError,
)
from spikeformer.ops.severity import SEVERITIES, get_severity
from spikeformer.store import INCIDENT_SEVERITIES, IncidentStore


def kinds(view: dict) -> list[str]:
    return [e["kind"] for e in view["timeline"]]


def passing_smoke(now) -> dict:
    """A smoke result (`spikeformer smoke --json`) that verifies recovery: closing needs one (or force)."""
    checks = ["live", "ready", "model:tiny", "infer:tiny", "accuracy:tiny", "metrics", "database"]
    return {
        "url": "http://127.0.0.1:8000",
        "started_at": (now - timedelta(seconds=2)).isoformat(),
        "finished_at": now.isoformat(),
        "checks": [{"name": c, "status": "pass", "seconds": 0.01, "detail": "ok"} for c in checks],
    }


FORCE = {"force": True, "reason": "verified by hand"}


def test_store_severities_are_the_severity_table():
    assert INCIDENT_SEVERITIES == tuple(s.name for s in SEVERITIES)


def test_full_lifecycle_records_every_change_with_author_and_time(svc, clock):
    opened = svc.open("Inference 5xx", "SEV-2", "alice", summary="classify fails", impact="all clients")
    assert opened["status"] == "open" and opened["sev"] == "SEV-2" and opened["commander"] is None
    assert opened["timeline"][0] | {"id": 0, "data": None} == {
        "id": 0,
        "time": clock.now.isoformat(),
        "kind": "opened",
        "visibility": "public",
        "author": "alice",
        "message": "SEV-2 incident opened: Inference 5xx. classify fails",
        "data": None,
    }
    iid = opened["id"]

    clock.advance(minutes=5)
    acked = svc.acknowledge(iid, "bob")
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "bob"
    assert acked["commander"] == "bob"  # the first acknowledger leads unless someone was assigned
    assert acked["time_to_acknowledge_s"] == 300

    svc.assign(iid, "carol", "bob")
    svc.note(iid, "looking at the batcher", "carol")
    clock.advance(minutes=10)
    svc.post_update(iid, "rolled back to v1", "carol", progress="rollback done", next_steps="watch errors")
    clock.advance(minutes=5)
    svc.set_severity(iid, "SEV-1", "carol", reason="every model is down")
    mitigated = svc.mitigate(iid, "carol", "traffic served by v1")
    assert mitigated["status"] == "mitigated" and mitigated["time_to_mitigate_s"] == 20 * 60
    clock.advance(hours=1)
    resolved = svc.resolve(iid, "carol", root_cause="corrupt weights in v2", resolution="re-published v2")
    assert resolved["status"] == "resolved" and resolved["time_to_resolve_s"] == 80 * 60
    assert resolved["postmortem_due_at"] == (clock.now + timedelta(hours=48)).isoformat()
    closed = svc.close(iid, "carol", "post-mortem held", smoke=passing_smoke(clock.now))
    assert closed["status"] == "closed" and closed["closed_at"] == clock.now.isoformat()

    assert kinds(closed) == [
        "opened",
        "acknowledged",
        "commander",
        "commander",
        "note",
        "update",
        "severity",
        "mitigated",
        "resolved",
        "smoke",
        "closed",
    ]
    assert set(kinds(closed)) <= set(EVENT_KINDS)
    authors = [e["author"] for e in closed["timeline"]]
    assert authors == ["alice", "bob", "bob", "bob", "carol", "carol", "carol", "carol", "carol", "carol", "carol"]
    times = [e["time"] for e in closed["timeline"]]
    assert times == sorted(times)
    by_kind = {e["kind"]: e for e in closed["timeline"]}
    assert by_kind["commander"]["message"] == "Incident commander: carol (was bob)"
    assert by_kind["severity"]["message"] == "Severity changed from SEV-2 to SEV-1: every model is down"
    # updates default public, notes internal
    assert by_kind["update"]["visibility"] == "public" and by_kind["note"]["visibility"] == "internal"
    assert by_kind["update"]["data"] == {"progress": "rollback done", "next_steps": "watch errors"}
    assert closed["root_cause"] == "corrupt weights in v2"
    # a closed incident still takes notes, nothing else
    assert kinds(svc.note(iid, "action items filed", "carol"))[-1] == "note"
    with pytest.raises(IncidentConflictError, match="closed"):
        svc.post_update(iid, "late", "carol")


@pytest.mark.parametrize("severity", SEVERITIES, ids=lambda s: s.name)
def test_targets_come_from_the_severity_table(svc, clock, severity):
    view = svc.open("x", severity.level, "alice")
    start = clock.now
    assert view["severity"]["response_minutes"] == severity.response_minutes
    assert view["ack_due_at"] == (start + timedelta(minutes=severity.response_minutes)).isoformat()
    assert view["update_due_at"] == (start + timedelta(minutes=severity.update_interval_minutes)).isoformat()
    clock.advance(minutes=severity.response_minutes)
    assert not svc.get(view["id"])["ack_overdue"]  # due at, not before
    clock.advance(seconds=1)
    assert svc.get(view["id"])["ack_overdue"]
    assert svc.severity_metrics()[severity.name]["ack_overdue"] == 1


def test_overdue_counts_per_sev_follow_acknowledgement_and_updates(svc, clock):
    sev1 = svc.open("outage", "SEV-1", "alice")["id"]
    sev3 = svc.open("slow docs", "SEV-3", "alice")["id"]
    m = svc.severity_metrics()
    assert m["SEV-1"] == {"open": 1, "ack_overdue": 0, "update_overdue": 0}
    assert m["SEV-3"] == {"open": 1, "ack_overdue": 0, "update_overdue": 0}

    clock.advance(minutes=16)  # past SEV-1's 15 min, within SEV-3's 4 h
    assert svc.severity_metrics()["SEV-1"]["ack_overdue"] == 1
    assert svc.severity_metrics()["SEV-3"]["ack_overdue"] == 0
    svc.acknowledge(sev1, "bob")
    assert svc.severity_metrics()["SEV-1"] == {"open": 1, "ack_overdue": 0, "update_overdue": 0}

    clock.advance(minutes=15)  # 31 min since opening: SEV-1's 30 min update interval has lapsed
    assert svc.severity_metrics()["SEV-1"]["update_overdue"] == 1
    svc.note(sev1, "internal notes do not count as an update", "bob")
    assert svc.severity_metrics()["SEV-1"]["update_overdue"] == 1
    svc.post_update(sev1, "still investigating", "bob")
    assert svc.severity_metrics()["SEV-1"]["update_overdue"] == 0

    svc.resolve(sev1, "bob")
    svc.resolve(sev3, "bob")
    assert all(row == {"open": 0, "ack_overdue": 0, "update_overdue": 0} for row in svc.severity_metrics().values())


def test_mitigating_or_resolving_an_open_incident_acknowledges_it_first(svc, clock):
    iid = svc.open("x", "SEV-3", "alice")["id"]
    clock.advance(minutes=3)
    view = svc.resolve(iid, "bob", resolution="restarted")
    assert kinds(view) == ["opened", "acknowledged", "commander", "resolved"]
    assert view["acknowledged_at"] == view["mitigated_at"] == view["resolved_at"] == clock.now.isoformat()


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        (["acknowledge"], lambda s, i: s.acknowledge(i, "bob"), "already|it is acknowledged"),
        ([], lambda s, i: s.close(i, "bob"), "close applies to resolved"),
        (["resolve"], lambda s, i: s.mitigate(i, "bob"), "cannot mitigate incident .*: it is resolved"),
        (["resolve"], lambda s, i: s.resolve(i, "bob"), "cannot resolve"),
        (["resolve", "close"], lambda s, i: s.assign(i, "x", "bob"), "it is closed"),
        ([], lambda s, i: s.set_severity(i, "SEV-2", "bob"), "already SEV-2"),
    ],
)
def test_invalid_transitions_are_conflicts_and_change_nothing(svc, setup, action, message):
    iid = svc.open("x", "SEV-2", "alice")["id"]
    for step in setup:
        getattr(svc, step)(iid, "bob", **(FORCE if step == "close" else {}))
    before = svc.get(iid)
    with pytest.raises(IncidentConflictError, match=message):
        action(svc, iid)
    assert svc.get(iid) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sev": "SEV-9"}, "unknown severity 'SEV-9': expected one of SEV-1"),
        ({"title": "  "}, "title must not be empty"),
        ({"author": ""}, "author"),
        ({"title": "x" * 201}, "at most 200"),
        ({"summary": "a\x00b"}, "NUL"),
    ],
)
def test_bad_input_says_what_is_accepted(svc, kwargs, message):
    args = {"title": "x", "sev": "SEV-2", "author": "alice"} | kwargs
    with pytest.raises(IncidentInputError, match=message):
        svc.open(**args)


def test_unknown_incident_and_bad_visibility(svc):
    with pytest.raises(IncidentNotFoundError, match="no incident with id 42"):
        svc.acknowledge(42, "bob")
    iid = svc.open("x", "SEV-4", "alice")["id"]
    with pytest.raises(IncidentInputError, match="accepted public, internal"):
        svc.note(iid, "x", "bob", visibility="secret")


def test_public_view_hides_internal_entries(svc):
    iid = svc.open("x", "SEV-2", "alice")["id"]
    svc.note(iid, "suspect the new release", "bob")
    svc.post_update(iid, "we are investigating slow answers", "bob")
    svc.post_update(iid, "internal detail", "bob", visibility="internal")
    public = svc.get(iid, visibility="public")["timeline"]
    assert [e["message"] for e in public][1:] == ["we are investigating slow answers"]
    assert len(svc.get(iid)["timeline"]) == 4


def test_list_filters_and_flags_overdue_postmortems(svc, clock):
    a = svc.open("a", "SEV-2", "alice")["id"]
    b = svc.open("b", "SEV-3", "alice")["id"]
    svc.resolve(a, "bob")
    assert [i["id"] for i in svc.list_incidents(["active"])] == [b]
    assert [i["id"] for i in svc.list_incidents(["resolved"])] == [a]
    assert not svc.list_incidents(["resolved"])[0]["postmortem_overdue"]
    clock.advance(hours=48, seconds=1)
    listed = {i["id"]: i for i in svc.list_incidents()}
    assert listed[a]["postmortem_overdue"] and not listed[b]["postmortem_overdue"]
    svc.close(a, "bob", **FORCE)
    assert not svc.get(a)["postmortem_overdue"]
    with pytest.raises(IncidentInputError, match="accepted active, open"):
        svc.list_incidents(["nope"])


def test_repository_locks_and_counts(db, svc):
    svc.open("a", "SEV-2", "alice")
    with db.session() as s:
        repo = IncidentStore(s)
        assert repo.get(1, lock=True).title == "a"
        assert repo.count_by_status() == {"open": 1, "acknowledged": 0, "mitigated": 0, "resolved": 0, "closed": 0}
        with pytest.raises(ValueError, match="unknown incident fields"):
            repo.create("b", "SEV-2", colour="red")
    assert get_severity(svc.get(1)["sev"]).level == 2


def test_minor_incidents_postmortem_is_optional_never_overdue(svc, clock):
    iid = svc.open("Typo on the console", "SEV-3", "alice")["id"]
    view = svc.resolve(iid, "bob")
    assert view["postmortem_required"] is False and view["postmortem_due_at"] is not None
    clock.advance(days=3)
    assert svc.get(iid)["postmortem_overdue"] is False


def test_concurrent_deliveries_of_a_new_group_open_one_incident(db, am):
    import threading

    from spikeformer.ops.incidents import IncidentService

    payload = am.payload(alerts=[am.alert("race")])
    results, errors = [], []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        try:
            barrier.wait()
            results.append(IncidentService(db).handle_alertmanager(payload))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({r["incident_id"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1
    assert len(IncidentService(db).get(results[0]["incident_id"])["alerts"]) == 1
