"""``spikeformer incident ...``: open, acknowledge, update, resolve and close incidents; the runbook's messages;
post-mortem drafts; the severity table.

Every command that touches the incident store goes through :func:`_run`, which opens the store, runs the operation
and turns its errors into a clear message and the error's exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from spikeformer.cli._output import DatabaseUrl, JsonFlag, console, database, emit_json, fail, parse_duration

if TYPE_CHECKING:
    import datetime as dt

    from spikeformer.ops.incidents import IncidentService

__all__ = [
    "incident_ack",
    "incident_app",
    "incident_assign",
    "incident_close",
    "incident_list",
    "incident_message",
    "incident_mitigate",
    "incident_note",
    "incident_open",
    "incident_postmortem",
    "incident_resolve",
    "incident_severities",
    "incident_severity",
    "incident_show",
    "incident_update",
]

T = TypeVar("T")

incident_app = typer.Typer(
    help="Incidents: open, acknowledge, update, resolve; the runbook's messages; post-mortem drafts.",
    no_args_is_help=True,
)
_Author = Annotated[
    str | None, typer.Option("--author", help="Who makes the change (default: the login name).", show_default=False)
]
_WebhookUrl = Annotated[str | None, typer.Option(help="Chat webhook (default: SPIKEFORMER_CHAT_WEBHOOK_URL).")]
_IncidentId = Annotated[int, typer.Argument(help="Incident id.")]


def _exit_code(err: Exception) -> int:
    """The exit status for ``err``: an incident error's own ``exit_code``; 2 for a store error or invalid input."""
    return err.exit_code if isinstance(getattr(err, "exit_code", None), int) else 2  # type: ignore[attr-defined]


def _run(database_url: str | None, as_json: bool, op: Callable[[IncidentService], T]) -> T:
    """Open the incident store and run ``op`` on it.

    An incident error, a store error or invalid input becomes a clear message (JSON with ``as_json``) and the exit
    code of :func:`_exit_code`: this is the one place where the incident commands map errors.
    """
    from spikeformer.ops.incidents import IncidentError, IncidentService
    from spikeformer.store import StoreError

    try:
        db = database(database_url)
        db.ensure_ready()
        return op(IncidentService(db))
    except (IncidentError, StoreError, ValueError) as e:
        fail(str(e), code=_exit_code(e), as_json=as_json)


def _whoami(author: str | None) -> str:
    import getpass

    if author:
        return author
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _when(text: str | None, what: str) -> dt.datetime | None:
    """``2025-01-01T12:00Z``, ``+30m``, ``+2h`` -> aware datetime (None for None)."""
    import datetime as dt

    if not text:
        return None
    if text.startswith("+"):
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=parse_duration(text[1:]))
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read {what} {text!r}; accepted: ISO 8601 with a zone, or +30m / +2h") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _show_incident(view: dict, as_json: bool) -> None:
    if as_json:
        emit_json(view)
        return
    flags = [f for f in ("ack_overdue", "update_overdue", "postmortem_overdue") if view.get(f)]
    console.print(
        f"#{view['id']} {view['sev']} [{view['status']}] {view['title']}"
        + (f"  commander: {view['commander']}" if view.get("commander") else "")
        + (f"  OVERDUE: {', '.join(f.replace('_overdue', '') for f in flags)}" if flags else ""),
        highlight=False,
    )
    for event in view.get("timeline", []):
        console.print(
            f"  {event['time'][:19]}  {event['author']:<20} {event['kind']:<15} "
            f"{'' if event['visibility'] == 'public' else '(internal) '}{event['message']}",
            highlight=False,
        )
    for key in ("silence_errors",):
        for error in view.get(key) or []:
            console.print(f"[yellow]warning:[/] {error}", highlight=False)
    if view.get("chat") and not view["chat"].get("posted"):
        console.print(f"[yellow]warning:[/] {view['chat'].get('error')}", highlight=False)


@incident_app.command("open")
def incident_open(
    title: Annotated[str, typer.Option(help="What is wrong, in a few words.")],
    sev: Annotated[str, typer.Option(help="SEV-1 .. SEV-4 (see: spikeformer incident severities).")],
    summary: Annotated[str, typer.Option(help="Brief description (the initial report's Summary).")] = "",
    impact: Annotated[str, typer.Option(help="Who or what is affected.")] = "",
    commander: Annotated[str | None, typer.Option(help="Incident commander.")] = None,
    notify: Annotated[bool, typer.Option(help="Post the initial report to the chat webhook.")] = False,
    webhook_url: _WebhookUrl = None,
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Open an incident; the SEV's acknowledgement and update targets start now."""
    view = _run(
        database_url,
        as_json,
        lambda svc: svc.open(
            title,
            sev,
            _whoami(author),
            summary=summary,
            impact=impact,
            commander=commander,
            notify=notify,
            webhook_url=webhook_url,
        ),
    )
    _show_incident(view, as_json)


@incident_app.command("list")
def incident_list(
    status: Annotated[
        list[str], typer.Option("--status", help="active, open, acknowledged, mitigated, resolved, closed.")
    ] = [],  # noqa: B006
    show_all: Annotated[bool, typer.Option("--all", help="Every incident (default: active and resolved).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Incidents, newest first, with overdue acknowledgements, updates and post-mortems flagged."""
    wanted = None if show_all else (status or ["active", "resolved"])
    items = _run(database_url, as_json, lambda svc: svc.list_incidents(wanted, limit))
    if as_json:
        emit_json({"incidents": items})
        return
    table = Table("id", "sev", "status", "title", "commander", "started", "overdue")
    for i in items:
        overdue = [
            name
            for name, flag in (
                ("ack", "ack_overdue"),
                ("update", "update_overdue"),
                ("post-mortem", "postmortem_overdue"),
            )
            if i[flag]
        ]
        table.add_row(
            str(i["id"]),
            i["sev"],
            i["status"],
            i["title"],
            i["commander"] or "-",
            i["started_at"][:16],
            ", ".join(overdue) or "-",
        )
    Console().print(table)


@incident_app.command("show")
def incident_show(
    incident_id: _IncidentId,
    public: Annotated[bool, typer.Option(help="Only the public timeline entries.")] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """An incident with its timeline."""
    view = _run(database_url, as_json, lambda svc: svc.get(incident_id, "public" if public else None))
    _show_incident(view, as_json)


@incident_app.command("ack")
def incident_ack(
    incident_id: _IncidentId,
    silence: Annotated[bool, typer.Option(help="Silence the incident's alerts in Alertmanager.")] = False,
    silence_for: Annotated[str, typer.Option(help="Silence duration: 4h, 90m, ...")] = "4h",
    alertmanager_url: Annotated[
        str | None, typer.Option(help="Alertmanager base URL (default: SPIKEFORMER_ALERTMANAGER_URL).")
    ] = None,
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Acknowledge an open incident (the acknowledger becomes commander unless one is assigned)."""
    import datetime as dt

    view = _run(
        database_url,
        as_json,
        lambda svc: svc.acknowledge(
            incident_id,
            _whoami(author),
            silence=silence,
            silence_duration=dt.timedelta(seconds=parse_duration(silence_for)),
            alertmanager_url=alertmanager_url,
        ),
    )
    _show_incident(view, as_json)


@incident_app.command("assign")
def incident_assign(
    incident_id: _IncidentId,
    commander: Annotated[str, typer.Argument(help="The new incident commander.")],
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Assign the incident commander."""
    view = _run(database_url, as_json, lambda svc: svc.assign(incident_id, commander, _whoami(author)))
    _show_incident(view, as_json)


@incident_app.command("note")
def incident_note(
    incident_id: _IncidentId,
    message: Annotated[str, typer.Option(help="The timeline entry.")],
    public: Annotated[bool, typer.Option(help="Make it public (default: internal).")] = False,
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a timeline entry (internal unless --public)."""
    visibility = "public" if public else "internal"
    view = _run(database_url, as_json, lambda svc: svc.note(incident_id, message, _whoami(author), visibility))
    _show_incident(view, as_json)


@incident_app.command("update")
def incident_update(
    incident_id: _IncidentId,
    message: Annotated[str, typer.Option(help="Current status: what is known, what changed.")],
    progress: Annotated[str | None, typer.Option(help="What has been done.")] = None,
    next_steps: Annotated[str | None, typer.Option(help="What is being worked on.")] = None,
    eta: Annotated[str | None, typer.Option(help="Expected resolution: ISO time or +2h.")] = None,
    internal: Annotated[bool, typer.Option(help="Keep it internal (default: public).")] = False,
    notify: Annotated[bool, typer.Option(help="Post the progress update to the chat webhook.")] = False,
    webhook_url: _WebhookUrl = None,
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Post a progress update (restarts the update clock of the incident's SEV)."""
    view = _run(
        database_url,
        as_json,
        lambda svc: svc.post_update(
            incident_id,
            message,
            _whoami(author),
            progress=progress,
            next_steps=next_steps,
            eta=_when(eta, "--eta"),
            visibility="internal" if internal else "public",
            notify=notify,
            webhook_url=webhook_url,
        ),
    )
    _show_incident(view, as_json)


@incident_app.command("severity")
def incident_severity(
    incident_id: _IncidentId,
    sev: Annotated[str, typer.Argument(help="SEV-1 .. SEV-4.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the timeline).")] = "",
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-classify an incident."""
    view = _run(database_url, as_json, lambda svc: svc.set_severity(incident_id, sev, _whoami(author), reason))
    _show_incident(view, as_json)


@incident_app.command("mitigate")
def incident_mitigate(
    incident_id: _IncidentId,
    message: Annotated[str, typer.Option(help="What stopped the impact.")] = "",
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Mark the impact as stopped."""
    view = _run(database_url, as_json, lambda svc: svc.mitigate(incident_id, _whoami(author), message))
    _show_incident(view, as_json)


@incident_app.command("resolve")
def incident_resolve(
    incident_id: _IncidentId,
    root_cause: Annotated[str | None, typer.Option(help="What caused it.")] = None,
    resolution: Annotated[str | None, typer.Option(help="How it was fixed.")] = None,
    message: Annotated[str, typer.Option(help="Public timeline entry (default: the resolution).")] = "",
    postmortem_meeting: Annotated[str | None, typer.Option(help="Post-mortem meeting: ISO time or +1d.")] = None,
    notify: Annotated[bool, typer.Option(help="Post the resolution notice to the chat webhook.")] = False,
    expire_silences: Annotated[
        bool, typer.Option(help="Expire the Alertmanager silences created when it was acknowledged.")
    ] = True,
    webhook_url: _WebhookUrl = None,
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Resolve an incident (its post-mortem falls due in 48 hours)."""
    view = _run(
        database_url,
        as_json,
        lambda svc: svc.resolve(
            incident_id,
            _whoami(author),
            root_cause=root_cause,
            resolution=resolution,
            message=message,
            postmortem_meeting_at=_when(postmortem_meeting, "--postmortem-meeting"),
            notify=notify,
            webhook_url=webhook_url,
            expire_silences=expire_silences,
        ),
    )
    _show_incident(view, as_json)


@incident_app.command("close")
def incident_close(
    incident_id: _IncidentId,
    message: Annotated[str, typer.Option(help="E.g. where the post-mortem is.")] = "",
    smoke_url: Annotated[
        str | None, typer.Option(help="Run `spikeformer smoke` against this URL; close only if it passes.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="Key for the smoke run (scope alerts or admin).", envvar="SPIKEFORMER_API_KEY"),
    ] = None,
    force: Annotated[bool, typer.Option(help="Close without a passing smoke run (needs --reason; recorded).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why closing without a passing smoke run is right.")] = None,
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Close a resolved incident once its post-mortem is done and a smoke run verified the recovery."""
    if smoke_url and force:
        fail("give either --smoke-url (a passing smoke run) or --force with --reason, not both", as_json=as_json)

    def close(svc: IncidentService) -> dict:
        smoke_result = None
        if smoke_url and svc.get(incident_id)["status"] == "resolved":
            from spikeformer.ops.smoke import run_smoke

            result = run_smoke(smoke_url, api_key)
            if not as_json:
                for line in result.lines():
                    console.print(line, highlight=False, markup=False)
            if not result.ok:
                fail(f"incident {incident_id} stays resolved: the smoke run {result.summary()}", 1, as_json)
            smoke_result = result.to_dict()
        return svc.close(incident_id, _whoami(author), message, smoke=smoke_result, force=force, reason=reason)

    _show_incident(_run(database_url, as_json, close), as_json)


@incident_app.command("message")
def incident_message(
    incident_id: _IncidentId,
    kind: Annotated[str, typer.Argument(help="initial, update or resolution.")],
    post: Annotated[bool, typer.Option(help="Also post it to the chat webhook.")] = False,
    webhook_url: _WebhookUrl = None,
    author: _Author = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the runbook's initial report, progress update or resolution notice for an incident."""

    def message(svc: IncidentService) -> dict:
        if post:
            return svc.post_message(incident_id, kind, _whoami(author), webhook_url)
        return {"kind": kind, "text": svc.message(incident_id, kind)}

    result = _run(database_url, as_json, message)
    if as_json:
        emit_json(result)
        return
    print(result["text"])
    if post and not result["posted"]:
        fail(result["error"], code=1)


@incident_app.command("postmortem")
def incident_postmortem(
    incident_id: _IncidentId,
    output: Annotated[str | None, typer.Option(help="Write the draft to this file (default: stdout).")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the post-mortem draft (Markdown): timeline, response times, measured impact, root cause, actions."""
    from pathlib import Path

    text = _run(database_url, as_json, lambda svc: svc.postmortem(incident_id))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    if as_json:
        emit_json({"incident_id": incident_id, "output": output, "markdown": text})
    elif output:
        console.print(f"wrote the post-mortem draft of incident {incident_id} to {output}", highlight=False)
    else:
        print(text, end="")


@incident_app.command("severities")
def incident_severities(as_json: JsonFlag = False) -> None:
    """The severity table: meaning, response target, update interval, routing."""
    from dataclasses import asdict

    from spikeformer.ops.severity import SEVERITIES, render_markdown_table

    if as_json:
        emit_json({"severities": [asdict(s) for s in SEVERITIES]})
    else:
        print(render_markdown_table())
