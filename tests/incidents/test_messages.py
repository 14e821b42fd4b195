"""The runbook's three templates filled from an incident, and posting them to a Slack-compatible chat webhook."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from spikeformer.ops.incidents import IncidentConflictError, IncidentInputError, IncidentService

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbooks" / "incident-response.md"
TEMPLATE_TITLES = {
    "initial": "Initial incident report",
    "update": "Progress update",
    "resolution": "Resolution notice",
}


def runbook_template(kind: str) -> list[str]:
    """The lines of one template of docs/runbooks/incident-response.md (its ```text block)."""
    text = RUNBOOK.read_text(encoding="utf-8")
    match = re.search(rf"### {TEMPLATE_TITLES[kind]}\n+```text\n(.*?)```", text, re.S)
    assert match, f"the runbook has no '{TEMPLATE_TITLES[kind]}' template"
    return match.group(1).rstrip("\n").split("\n")


@pytest.mark.parametrize("kind", ["initial", "update", "resolution"])
def test_messages_have_the_lines_of_the_runbook_templates(svc, clock, kind):
    # each message rendered at its moment: the report at opening, the update after one, the notice at the end
    iid = svc.open("Outage", "SEV-1", "alice", summary="down", impact="all", commander="alice")["id"]
    messages = {"initial": svc.message(iid, "initial")}
    svc.post_update(iid, "rolled back", "alice", progress="v1 serves", next_steps="verify")
    messages["update"] = svc.message(iid, "update")
    svc.resolve(iid, "alice", root_cause="bad weights", resolution="rollback")
    messages["resolution"] = svc.message(iid, "resolution")
    rendered = messages[kind].split("\n")
    template = runbook_template(kind)
    assert len(rendered) == len(template), (rendered, template)
    for mine, theirs in zip(rendered, template, strict=True):
        literal = theirs.split("{", 1)[0]  # the fixed text before the first placeholder
        assert mine.startswith(literal), (mine, theirs)
        assert "{" not in mine and "}" not in mine  # every placeholder filled


def test_initial_report_is_filled_from_the_incident(svc, clock):
    iid = svc.open(
        "Classify answers 503",
        "SEV-1",
        "alice",
        summary="Every inference request is rejected",
        impact="All clients of /v1/classify",
        commander="alice",
    )["id"]
    start = clock.now.strftime("%Y-%m-%d %H:%M UTC")
    assert svc.message(iid, "initial") == "\n".join(
        [
            "🚨 INCIDENT - SEV-1: Classify answers 503",
            "",
            "Severity: SEV-1 (Critical)",
            "Summary: Every inference request is rejected",
            "Impact: All clients of /v1/classify",
            f"Start time: {start}",
            "Status: Investigating",
            "Commander: @alice",
            "",
            "Next update in 30 min.",  # SEV-1's update interval from the severity table
        ]
    )
    sev4 = svc.open("Typo", "SEV-4", "alice")["id"]
    text = svc.message(sev4, "initial")
    assert "Next update in 24 h." in text and "Commander: not assigned yet" in text
    assert "Impact: not known yet" in text and "Severity: SEV-4 (Low)" in text


def test_progress_update_uses_the_latest_update(svc, clock):
    iid = svc.open("Slow", "SEV-2", "alice", summary="p99 over 2 s")["id"]
    svc.acknowledge(iid, "bob")
    clock.advance(minutes=20)
    before = svc.message(iid, "update")
    assert "Progress: no progress reported yet" in before
    assert (
        f"ETA: unknown; next update at {(clock.now + timedelta(minutes=10)).strftime('%Y-%m-%d %H:%M UTC')}" in before
    )
    eta = clock.now + timedelta(hours=1)
    svc.post_update(
        iid, "Batcher queue saturated", "bob", progress="Scaled to 5 replicas", next_steps="Find the cause", eta=eta
    )
    assert svc.message(iid, "update") == "\n".join(
        [
            "📊 INCIDENT UPDATE - SEV-2: Slow",
            "",
            "Severity: SEV-2",
            "Status: Investigating",
            "Progress: Batcher queue saturated; Scaled to 5 replicas",
            "Next steps: Find the cause",
            f"ETA: {eta.strftime('%Y-%m-%d %H:%M UTC')}",
            "Commander: @bob",
            "",
            f"Last updated: {clock.now.strftime('%Y-%m-%d %H:%M UTC')}",
        ]
    )
    svc.mitigate(iid, "bob")
    assert "Status: Monitoring" in svc.message(iid, "update")


def test_resolution_notice_has_cause_fix_and_duration(svc, clock):
    iid = svc.open("Outage", "SEV-1", "alice", summary="The API answered 503")["id"]
    start = clock.now
    with pytest.raises(IncidentConflictError, match="needs a resolved incident"):
        svc.message(iid, "resolution")
    clock.advance(hours=1, minutes=5)
    svc.resolve(iid, "bob", root_cause="Disk full on the model volume", resolution="Cleared old checkpoints")
    text = svc.message(iid, "resolution")
    fmt = "%Y-%m-%d %H:%M UTC"
    due = (clock.now + timedelta(hours=48)).strftime(fmt)
    assert text == "\n".join(
        [
            "✅ INCIDENT RESOLVED - SEV-1: Outage",
            "",
            "Severity: SEV-1",
            "Summary: The API answered 503",
            "Root cause: Disk full on the model volume",
            "Resolution: Cleared old checkpoints",
            f"Start time: {start.strftime(fmt)}  Resolved: {clock.now.strftime(fmt)}",
            "Duration: 1 h 05 min",
            "Commander: @bob",
            "",
            f"Post-mortem: to be scheduled, by {due} (within 48 h)",
        ]
    )
    with pytest.raises(IncidentInputError, match="accepted initial, update, resolution"):
        svc.message(iid, "final")
    minor = svc.open("Typo", "SEV-4", "alice")["id"]
    svc.resolve(minor, "bob")
    assert "Post-mortem: optional for SEV-4" in svc.message(minor, "resolution")


def test_messages_are_posted_to_the_chat_webhook(db, clock, chat):
    svc = IncidentService(db, clock=clock, chat_webhook_url=chat.url)
    view = svc.open("Outage", "SEV-1", "alice", summary="down", notify=True)
    assert view["chat"]["posted"] is True
    svc.post_update(view["id"], "rolling back", "alice", notify=True)
    svc.resolve(view["id"], "alice", resolution="rolled back", notify=True)
    texts = [m["text"] for m in chat.messages]
    assert [t.splitlines()[0] for t in texts] == [
        "🚨 INCIDENT - SEV-1: Outage",
        "📊 INCIDENT UPDATE - SEV-1: Outage",
        "✅ INCIDENT RESOLVED - SEV-1: Outage",
    ]
    assert all(set(m) == {"text"} for m in chat.messages)
    chat_events = [e["message"] for e in svc.get(view["id"])["timeline"] if e["kind"] == "chat"]
    assert chat_events == [
        "Posted the initial incident report to the chat webhook",
        "Posted the progress update to the chat webhook",
        "Posted the resolution notice to the chat webhook",
    ]


@pytest.mark.parametrize("failure", ["status", "unreachable"])
def test_a_failed_post_is_recorded_never_raised(db, clock, chat, failure):
    from support import free_port

    url = chat.url
    if failure == "status":
        chat.status = 403
    else:
        url = f"http://127.0.0.1:{free_port()}/hook"
    svc = IncidentService(db, clock=clock, chat_webhook_url=url, http_timeout_s=2)
    view = svc.open("Outage", "SEV-2", "alice", notify=True)
    assert view["status"] == "open" and view["chat"]["posted"] is False
    event = [e for e in svc.get(view["id"])["timeline"] if e["kind"] == "chat"][-1]
    assert event["message"].startswith("Posting the initial incident report to the chat webhook failed: ")
    assert ("answered 403: invalid_token" if failure == "status" else "cannot reach the chat webhook") in event[
        "message"
    ]


def test_webhook_url_from_environment_and_alertmanager_incidents_announce_themselves(db, chat, am, monkeypatch):
    monkeypatch.setenv("SPIKEFORMER_CHAT_WEBHOOK_URL", chat.url)
    result = IncidentService(db).handle_alertmanager(am.payload())
    assert result["created"] and result["chat"]["posted"]
    assert chat.messages[0]["text"].startswith("🚨 INCIDENT - SEV-2")


def test_notify_without_a_webhook_is_refused_before_any_change(svc, monkeypatch):
    monkeypatch.delenv("SPIKEFORMER_CHAT_WEBHOOK_URL", raising=False)
    with pytest.raises(IncidentInputError, match="set SPIKEFORMER_CHAT_WEBHOOK_URL"):
        svc.open("x", "SEV-2", "alice", notify=True)
    assert svc.list_incidents() == []
    with pytest.raises(IncidentInputError, match="must start with http"):
        svc.open("x", "SEV-2", "alice", notify=True, webhook_url="ftp://x")


def test_message_routes(service, chat):
    iid = service.post("/v1/incidents", {"title": "Outage", "sev": 2, "summary": "down"}).json()["id"]
    r = service.get(f"/v1/incidents/{iid}/messages/initial")
    assert r.status_code == 200 and r.json()["text"].startswith("🚨 INCIDENT - SEV-2")
    r = service.get(f"/v1/incidents/{iid}/messages/resolution")
    assert r.status_code == 409 and "resolve it first" in r.json()["error"]
    r = service.get(f"/v1/incidents/{iid}/messages/final")
    assert r.status_code == 400 and "'initial', 'update' or 'resolution'" in r.json()["error"]
    r = service.post(f"/v1/incidents/{iid}/messages/update/post", {"webhook_url": chat.url})
    assert r.status_code == 200 and r.json()["posted"] is True
    assert chat.messages[-1]["text"] == r.json()["text"]
    chat.status = 500
    r = service.post(f"/v1/incidents/{iid}/messages/update/post", {"webhook_url": chat.url})
    assert r.status_code == 200 and r.json()["posted"] is False and "answered 500" in r.json()["error"]
