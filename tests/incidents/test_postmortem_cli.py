"""Post-mortem drafts (impact measured from the inference records, 48 h due date) and the ``incident`` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from spikeformer.cli import app
from spikeformer.ops.incidents import IncidentService
from spikeformer.store import InferenceRecordStore

runner = CliRunner()


def _records(db, start, n_ok, n_error, n_timeout, latency_ms):
    rows = [{"model": "tiny", "latency_ms": latency_ms, "status": "ok", "http_status": 200} for _ in range(n_ok)]
    rows += [{"model": "tiny", "latency_ms": 5.0, "status": "error", "http_status": 500} for _ in range(n_error)]
    rows += [{"model": "tiny", "latency_ms": 30_000.0, "status": "timeout", "http_status": 504}] * n_timeout
    for i, row in enumerate(rows):
        row["created_at"] = start + timedelta(seconds=i)
    with db.session() as s:
        InferenceRecordStore(s).add_many([dict(r) for r in rows])


def test_postmortem_measures_impact_in_the_incident_window(db, svc, clock):
    start = clock.now
    iid = svc.open("Slow classify", "SEV-2", "alice", summary="timeouts", impact="clients waited")["id"]
    _records(db, start - timedelta(minutes=30), n_ok=10, n_error=0, n_timeout=0, latency_ms=20.0)  # before
    _records(db, start + timedelta(minutes=1), n_ok=8, n_error=1, n_timeout=1, latency_ms=400.0)  # during
    clock.advance(minutes=10)
    svc.acknowledge(iid, "bob")
    clock.advance(minutes=20)
    svc.resolve(iid, "bob", root_cause="a lock in the batcher", resolution="fixed the lock")
    text = svc.postmortem(iid)

    assert text.startswith(f"# Post-mortem (draft): incident #{iid}: Slow classify")
    assert "| Acknowledged |" in text and "| 10 min | met |" in text  # SEV-2: 60 min target
    assert "Time to acknowledge: 10 min; time to mitigate: 30 min; time to resolve: 30 min." in text
    assert "| Incident | 10 | 2 | 20.00 % | 1 | 1 | 0 | 400.0 ms | 400.0 ms |" in text
    assert "| Before | 10 | 0 | 0.00 % | 0 | 0 | 0 | 20.0 ms | 20.0 ms |" in text
    assert "p99 latency during the incident: 400.0 ms, 20.0x the 20.0 ms before it (slower)." in text
    assert "## Root cause\n\na lock in the batcher" in text
    assert "## Action items" in text and "| Action | Owner | Due | Ticket |" in text
    due = (clock.now + timedelta(hours=48)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"- Post-mortem due: {due}\n" in text
    # the timeline is in the draft, internal entries included
    assert "| bob | acknowledged | internal |" in text
    clock.advance(hours=49)
    assert f"- Post-mortem due: {due} **(OVERDUE)**" in svc.postmortem(iid)


def _cli(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_runs_an_incident_from_open_to_postmortem(tmp_path, chat):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    db_args = ["--database-url", url]
    opened = _cli(
        "incident", "open", "--title", "API down", "--sev", "SEV-1", "--summary", "503s", "--author", "alice", *db_args
    )
    iid = str(opened["id"])
    assert opened["status"] == "open" and opened["timeline"][0]["author"] == "alice"
    assert _cli("incident", "ack", iid, "--author", "bob", *db_args)["commander"] == "bob"
    _cli("incident", "assign", iid, "carol", "--author", "bob", *db_args)
    _cli("incident", "note", iid, "--message", "checking the volume", "--author", "carol", *db_args)
    upd = _cli(
        "incident",
        "update",
        iid,
        "--message",
        "disk full",
        "--progress",
        "cleaned",
        "--eta",
        "+30m",
        "--notify",
        "--webhook-url",
        chat.url,
        "--author",
        "carol",
        *db_args,
    )
    assert upd["progress"] == "cleaned" and upd["eta"] is not None and upd["chat"]["posted"]
    assert chat.messages[-1]["text"].startswith("📊 INCIDENT UPDATE - SEV-1")
    _cli("incident", "severity", iid, "SEV-2", "--reason", "one backend only", "--author", "carol", *db_args)
    _cli("incident", "mitigate", iid, "--message", "moved traffic", "--author", "carol", *db_args)
    resolved = _cli(
        "incident",
        "resolve",
        iid,
        "--root-cause",
        "logs filled the disk",
        "--resolution",
        "log rotation",
        "--author",
        "carol",
        *db_args,
    )
    assert resolved["status"] == "resolved"
    listed = _cli("incident", "list", *db_args)["incidents"]
    assert [(i["id"], i["status"], i["postmortem_overdue"]) for i in listed] == [(int(iid), "resolved", False)]

    msg = runner.invoke(app, ["incident", "message", iid, "resolution", *db_args])
    assert msg.exit_code == 0 and msg.stdout.startswith("✅ INCIDENT RESOLVED - SEV-2")
    assert "Root cause: logs filled the disk" in msg.stdout

    out = tmp_path / "pm" / f"incident-{iid}.md"
    done = runner.invoke(app, ["incident", "postmortem", iid, "--output", str(out), *db_args])
    assert done.exit_code == 0, done.output
    assert out.read_text().startswith(f"# Post-mortem (draft): incident #{iid}: API down")
    closed = _cli("incident", "close", iid, "--force", "--reason", "checked by hand", "--author", "carol", *db_args)
    assert closed["status"] == "closed" and closed["timeline"][-2]["kind"] == "close_forced"
    shown = runner.invoke(app, ["incident", "show", iid, *db_args])
    assert "closed" in shown.output and "checking the volume" in shown.output


def test_cli_list_flags_overdue_postmortems_and_errors_are_clear(tmp_path, db):
    url = str(db.url)
    old = IncidentService(db, clock=lambda: datetime.now(UTC) - timedelta(days=3))
    iid = old.open("Old outage", "SEV-2", "alice")["id"]
    old.resolve(iid, "alice")
    table = runner.invoke(app, ["incident", "list", "--database-url", url])
    assert table.exit_code == 0 and "post-mortem" in table.output
    assert _cli("incident", "list", "--database-url", url)["incidents"][0]["postmortem_overdue"] is True

    missing = runner.invoke(app, ["incident", "ack", "999", "--database-url", url])
    assert missing.exit_code == 1 and "no incident with id 999" in missing.output
    bad = runner.invoke(app, ["incident", "open", "--title", "x", "--sev", "P1", "--database-url", url])
    assert bad.exit_code == 2 and "expected one of SEV-1" in bad.output
    unverified = runner.invoke(app, ["incident", "close", str(iid), "--database-url", url])
    assert unverified.exit_code == 2 and "needs a passing smoke run" in unverified.output
    force = ["--force", "--reason", "verified by hand"]
    conflict = runner.invoke(app, ["incident", "close", str(iid), *force, "--database-url", url])
    assert conflict.exit_code == 0  # resolved -> closed is allowed
    again = runner.invoke(app, ["incident", "close", str(iid), *force, "--database-url", url])
    assert again.exit_code == 2 and "it is closed" in again.output
    assert "| SEV-1 | Critical |" in runner.invoke(app, ["incident", "severities"]).stdout
