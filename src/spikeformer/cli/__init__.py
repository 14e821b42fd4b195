"""The ``spikeformer`` command line (typer). Commands that report results take ``--json`` and then print exactly one
JSON object on stdout."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Spikeformer Neuromorphic Kit: spiking transformers from training to serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect and verify models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]


def _emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def fail(message: str, code: int = 2, as_json: bool = False) -> None:
    """Print a clear error (no traceback) and exit non-zero."""
    if as_json:
        _emit_json({"ok": False, "error": message})
    else:
        console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@models_app.command("list")
def models_list(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'sdt-*'.")] = "*",
    as_json: JsonFlag = False,
) -> None:
    """Registered model names with their size."""
    import spikeformer
    from spikeformer.models import model_defaults

    rows = []
    for name in spikeformer.list_models(pattern):
        d = model_defaults(name)
        rows.append({"name": name, **{k: d[k] for k in ("embed_dim", "depth", "num_heads", "img_size")}})
    if as_json:
        _emit_json({"models": rows})
        return
    table = Table("name", "embed_dim", "depth", "heads", "img_size")
    for r in rows:
        table.add_row(r["name"], str(r["embed_dim"]), str(r["depth"]), str(r["num_heads"]), str(r["img_size"]))
    Console().print(table)


@app.command()
def demo(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "spikformer-2-384",
    batch: Annotated[int, typer.Option(min=1, max=64)] = 2,
    as_json: JsonFlag = False,
) -> None:
    """Build a model, run one batch of random images and say what happened."""
    import torch

    import spikeformer
    from spikeformer.nn import BaseNeuron

    try:
        net = spikeformer.create_model(model).eval()
    except ValueError as e:
        fail(str(e), as_json=as_json)
    spikes = [0]
    neurons = 0

    def count(_m, _i, out):
        spikes[0] += int(out.sum())

    for m in net.modules():
        if isinstance(m, BaseNeuron):
            neurons += 1
            m.register_forward_hook(count)
    x = torch.rand(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    with torch.inference_mode():
        logits = net(x)
    dt = time.perf_counter() - t0
    params = sum(p.numel() for p in net.parameters())
    result = {
        "model": model,
        "parameters": params,
        "input_shape": [batch, *net.input_shape],
        "timesteps": net.timesteps,
        "logits_shape": list(logits.shape),
        "predictions": logits.argmax(1).tolist(),
        "spike_layers": neurons,
        "spikes": spikes[0],
        "seconds": round(dt, 4),
    }
    if as_json:
        _emit_json(result)
        return
    for k, v in result.items():
        console.print(f"{k:>14}: {v}", highlight=False)


keys_app = typer.Typer(help="API keys (stored hashed; printed once).", no_args_is_help=True)
db_app = typer.Typer(help="Database: migrations and operations.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


def _database(url: str | None):
    from spikeformer.store import Database

    return Database(url)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model_repository: Annotated[str | None, typer.Option(help="Folder of <model>/<version>/ checkpoints.")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite under ./var).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    log_level: str = "info",
) -> None:
    """Start the inference service (Open Inference Protocol, /v1/classify, /metrics, OpenAPI at /docs)."""
    import logging

    import uvicorn

    from spikeformer.serve.app import create_app
    from spikeformer.serve.settings import ServiceSettings
    from spikeformer.store import SchemaOutOfDateError

    overrides = {"host": host, "port": port, "device": device}
    if model_repository:
        overrides["model_repository"] = model_repository
    if database_url:
        overrides["database_url"] = database_url
    try:
        settings = ServiceSettings(**overrides)
    except ValueError as e:
        fail(f"invalid service settings: {e}")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _database(settings.database_url).ensure_ready()
    except SchemaOutOfDateError as e:
        fail(str(e))
    except Exception:  # noqa: BLE001 - an unreachable database is handled by the service (degraded mode)
        pass
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        # keep idle client connections longer than clients and load balancers keep theirs (60 s is common):
        # a server that closes first races a request sent on the closing connection (the client sees a reset)
        timeout_keep_alive=75,
    )


@app.command()
def worker(
    model_repository: Annotated[str | None, typer.Option(help="Folder of <model>/<version>/ checkpoints.")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite under ./var).")] = None,
    lease: Annotated[float, typer.Option(help="Job lease in seconds.")] = 30.0,
    chunk_size: Annotated[int, typer.Option(min=1)] = 64,
    max_jobs: Annotated[int | None, typer.Option(help="Stop after N jobs.")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after being idle this many seconds.")] = None,
) -> None:
    """Run the batch worker: claim queued jobs, run them, write results once."""
    import logging

    from spikeformer.serve.settings import ServiceSettings
    from spikeformer.serve.worker import Worker, WorkerOptions
    from spikeformer.store import StoreError

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {}
    if model_repository:
        overrides["model_repository"] = model_repository
    if database_url:
        overrides["database_url"] = database_url
    w = Worker(
        ServiceSettings(**overrides),
        WorkerOptions(lease_s=lease, chunk_size=chunk_size, max_jobs=max_jobs, idle_exit_s=idle_exit),
    )
    w.install_signal_handlers()
    try:
        done = w.run()
    except StoreError as e:
        fail(str(e))
    console.print(f"worker {w.worker_id} finished {done} job(s)", highlight=False)


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option("--scope", help="admin, infer or alerts (repeatable).")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    database_url: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; the key is printed once and only its hash is stored."""
    from spikeformer.store import ApiKeyRepository, StoreError

    try:
        db = _database(database_url)
        db.ensure_ready()
        with db.session() as s:
            key, row = ApiKeyRepository(s).create(name or "cli", scope)
            info = {"key": key, "id": row.id, "scopes": row.scope_list, "name": row.name}
    except (StoreError, ValueError) as e:
        fail(str(e), as_json=as_json)
    if as_json:
        _emit_json(info)
    else:
        console.print(
            f"created key {info['id']} with scopes {', '.join(info['scopes'])}; store it now, it is not shown again:",
            highlight=False,
        )
        print(key)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument()], database_url: str | None = None) -> None:
    """Revoke an API key by id."""
    from spikeformer.store import ApiKeyRepository, StoreError

    try:
        with _database(database_url).session() as s:
            ok = ApiKeyRepository(s).revoke(key_id)
    except StoreError as e:
        fail(str(e))
    if not ok:
        fail(f"no API key with id {key_id}", code=1)
    console.print(f"revoked key {key_id}")


@app.command()
def maintenance(
    mode: Annotated[str, typer.Argument(help="on or off")],
    message: Annotated[str, typer.Option(help="Shown to clients while inference is paused.")] = "",
    database_url: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """Maintenance mode: inference answers 503 with Retry-After and the message; liveness stays 200."""
    import datetime as dt

    from spikeformer.store import SettingsRepository, StoreError

    if mode not in ("on", "off"):
        fail(f"mode must be 'on' or 'off', got {mode!r}", as_json=as_json)
    value = {
        "enabled": mode == "on",
        "message": message,
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        db = _database(database_url)
        db.ensure_ready()
        with db.session() as s:
            SettingsRepository(s).set("maintenance", value)
    except StoreError as e:
        fail(str(e), as_json=as_json)
    if as_json:
        _emit_json(value)
    else:
        console.print(f"maintenance mode {mode}" + (f": {message}" if message else ""), highlight=False)


@db_app.command("upgrade")
def db_upgrade(database_url: str | None = None, as_json: JsonFlag = False) -> None:
    """Apply the database migrations (SQLite or PostgreSQL via SPIKEFORMER_DATABASE_URL)."""
    from spikeformer.store import StoreError

    try:
        db = _database(database_url)
        db.upgrade()
        rev = db.current_revision()
    except StoreError as e:
        fail(str(e), as_json=as_json)
    if as_json:
        _emit_json({"ok": True, "revision": rev})
    else:
        console.print(f"database at revision {rev}", highlight=False)


hardware_app = typer.Typer(help="Backends and their real telemetry.", no_args_is_help=True)
app.add_typer(hardware_app, name="hardware")


def _duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``2h`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ValueError(f"cannot read duration {text!r}; accepted: seconds, or a number with s, m or h") from None


@app.command()
def doctor(
    url: Annotated[str | None, typer.Option(help="Service base URL to check.")] = "http://127.0.0.1:8000",
    model_repository: Annotated[str | None, typer.Option(help="Model repository folder.")] = None,
    database_url: Annotated[str | None, typer.Option(help="Database URL (default: SPIKEFORMER_DATABASE_URL).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the runbook's investigation steps and rank what is wrong by severity (exit 1 when anything is)."""
    from pathlib import Path

    from spikeformer.ops.doctor import run_doctor
    from spikeformer.serve.settings import DEFAULT_MODEL_REPOSITORY

    report = run_doctor(
        url or None, Path(model_repository) if model_repository else DEFAULT_MODEL_REPOSITORY, database_url
    )
    if as_json:
        _emit_json(report.to_dict())
    else:
        table = Table("severity", "check", "finding")
        for f in report.ranked():
            table.add_row(f.sev or "ok", f.check, f.message)
        Console().print(table)
        console.print("all checks passed" if report.ok else f"worst: {report.worst}", highlight=False)
    raise typer.Exit(0 if report.ok else 1)


@hardware_app.command("status")
def hardware_status_cmd(as_json: JsonFlag = False) -> None:
    """Every backend with its availability and real readings (nothing is invented for absent hardware)."""
    from spikeformer.hardware import hardware_status

    status = hardware_status()
    if as_json:
        _emit_json(status)
        return
    table = Table("backend", "device", "available", "temperature", "power", "memory", "note")
    for d in status["devices"]:
        temp = f"{d['temperature_c']:.0f} C" if d["temperature_c"] is not None else "-"
        power = f"{d['power_w']:.0f} W" if d["power_w"] is not None else "-"
        mem = f"{d['memory_used_mb']:.0f}/{d['memory_total_mb']:.0f} MB" if d["memory_total_mb"] else "-"
        table.add_row(
            d["backend"],
            d["device"],
            "yes" if d["available"] else "no",
            temp,
            power,
            mem,
            d["reason"] or d["details"].get("temperature", ""),
        )
    Console().print(table)


@db_app.command("long-queries")
def db_long_queries(
    older_than: Annotated[str, typer.Option(help="Age threshold: 300, 90s, 5m, 1h.")] = "5m",
    cancel: Annotated[bool, typer.Option(help="pg_cancel_backend each (the gentle first step).")] = False,
    terminate: Annotated[bool, typer.Option(help="pg_terminate_backend each (only when cancel did not help).")] = False,
    database_url: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """List PostgreSQL queries running longer than a threshold; cancel or terminate them when asked."""
    from spikeformer.store import StoreError, cancel_backend, long_running_queries, terminate_backend

    if cancel and terminate:
        fail(
            "give --cancel or --terminate, not both (cancel first; terminate only if that did not help)",
            as_json=as_json,
        )
    try:
        seconds = _duration(older_than)
        db = _database(database_url)
        rows = long_running_queries(db, seconds)
        action = "cancel" if cancel else "terminate" if terminate else None
        signal_fn = cancel_backend if cancel else terminate_backend
        for r in rows:
            if action:
                r["signalled"] = bool(signal_fn(db, r["pid"]))
        db.dispose()
    except (StoreError, ValueError) as e:
        fail(str(e), as_json=as_json)
    if as_json:
        _emit_json({"older_than_s": seconds, "action": action, "queries": rows})
        return
    if not rows:
        console.print(f"no queries running longer than {older_than}")
    done = {"cancel": "cancelled", "terminate": "terminated"}.get(action or "", "")
    for r in rows:
        flag = f" [{done if r['signalled'] else 'not ' + done}]" if action else ""
        console.print(f"pid {r['pid']} {r['seconds']:.0f}s {r['state']}: {r['query'][:200]}{flag}", highlight=False)


incident_app = typer.Typer(
    help="Incidents: open, acknowledge, update, resolve; the runbook's messages; post-mortem drafts.",
    no_args_is_help=True,
)
app.add_typer(incident_app, name="incident")
_Author = Annotated[
    str | None, typer.Option("--author", help="Who makes the change (default: the login name).", show_default=False)
]
_DbUrl = Annotated[str | None, typer.Option(help="Database URL (default: SPIKEFORMER_DATABASE_URL or ./var).")]
_WebhookUrl = Annotated[str | None, typer.Option(help="Chat webhook (default: SPIKEFORMER_CHAT_WEBHOOK_URL).")]


def _incidents(database_url: str | None):
    from spikeformer.ops.incidents import IncidentService

    db = _database(database_url)
    db.ensure_ready()
    return IncidentService(db)


def _whoami(author: str | None) -> str:
    import getpass

    if author:
        return author
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _when(text: str | None, what: str):
    """``2025-01-01T12:00Z``, ``+30m``, ``+2h`` -> aware datetime (None for None)."""
    import datetime as dt

    if not text:
        return None
    if text.startswith("+"):
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=_duration(text[1:]))
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read {what} {text!r}; accepted: ISO 8601 with a zone, or +30m / +2h") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _incident_call(as_json: bool, fn, *args, **kwargs):
    """Run an incident operation; errors become a clear message and exit code 2 (1 for an unknown incident)."""
    from spikeformer.ops.incidents import IncidentError, IncidentNotFoundError
    from spikeformer.store import StoreError

    try:
        return fn(*args, **kwargs)
    except IncidentNotFoundError as e:
        fail(str(e), code=1, as_json=as_json)
    except (IncidentError, StoreError, ValueError) as e:
        fail(str(e), as_json=as_json)


def _show_incident(view: dict, as_json: bool) -> None:
    if as_json:
        _emit_json(view)
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
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Open an incident; the SEV's acknowledgement and update targets start now."""
    svc = _incident_call(as_json, _incidents, database_url)
    view = _incident_call(
        as_json,
        svc.open,
        title,
        sev,
        _whoami(author),
        summary=summary,
        impact=impact,
        commander=commander,
        notify=notify,
        webhook_url=webhook_url,
    )
    _show_incident(view, as_json)


@incident_app.command("list")
def incident_list(
    status: Annotated[
        list[str], typer.Option("--status", help="active, open, acknowledged, mitigated, resolved, closed.")
    ] = [],  # noqa: B006
    show_all: Annotated[bool, typer.Option("--all", help="Every incident (default: active and resolved).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Incidents, newest first, with overdue acknowledgements, updates and post-mortems flagged."""
    svc = _incident_call(as_json, _incidents, database_url)
    wanted = None if show_all else (status or ["active", "resolved"])
    items = _incident_call(as_json, svc.list_incidents, wanted, limit)
    if as_json:
        _emit_json({"incidents": items})
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
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    public: Annotated[bool, typer.Option(help="Only the public timeline entries.")] = False,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """An incident with its timeline."""
    svc = _incident_call(as_json, _incidents, database_url)
    _show_incident(_incident_call(as_json, svc.get, incident_id, "public" if public else None), as_json)


@incident_app.command("ack")
def incident_ack(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    silence: Annotated[bool, typer.Option(help="Silence the incident's alerts in Alertmanager.")] = False,
    silence_for: Annotated[str, typer.Option(help="Silence duration: 4h, 90m, ...")] = "4h",
    alertmanager_url: Annotated[
        str | None, typer.Option(help="Alertmanager base URL (default: SPIKEFORMER_ALERTMANAGER_URL).")
    ] = None,
    author: _Author = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Acknowledge an open incident (the acknowledger becomes commander unless one is assigned)."""
    import datetime as dt

    svc = _incident_call(as_json, _incidents, database_url)
    duration = dt.timedelta(seconds=_incident_call(as_json, _duration, silence_for))
    view = _incident_call(
        as_json,
        svc.acknowledge,
        incident_id,
        _whoami(author),
        silence=silence,
        silence_duration=duration,
        alertmanager_url=alertmanager_url,
    )
    _show_incident(view, as_json)


@incident_app.command("assign")
def incident_assign(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    commander: Annotated[str, typer.Argument(help="The new incident commander.")],
    author: _Author = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Assign the incident commander."""
    svc = _incident_call(as_json, _incidents, database_url)
    _show_incident(_incident_call(as_json, svc.assign, incident_id, commander, _whoami(author)), as_json)


@incident_app.command("note")
def incident_note(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    message: Annotated[str, typer.Option(help="The timeline entry.")],
    public: Annotated[bool, typer.Option(help="Make it public (default: internal).")] = False,
    author: _Author = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a timeline entry (internal unless --public)."""
    svc = _incident_call(as_json, _incidents, database_url)
    view = _incident_call(as_json, svc.note, incident_id, message, _whoami(author), "public" if public else "internal")
    _show_incident(view, as_json)


@incident_app.command("update")
def incident_update(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    message: Annotated[str, typer.Option(help="Current status: what is known, what changed.")],
    progress: Annotated[str | None, typer.Option(help="What has been done.")] = None,
    next_steps: Annotated[str | None, typer.Option(help="What is being worked on.")] = None,
    eta: Annotated[str | None, typer.Option(help="Expected resolution: ISO time or +2h.")] = None,
    internal: Annotated[bool, typer.Option(help="Keep it internal (default: public).")] = False,
    notify: Annotated[bool, typer.Option(help="Post the progress update to the chat webhook.")] = False,
    webhook_url: _WebhookUrl = None,
    author: _Author = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Post a progress update (restarts the update clock of the incident's SEV)."""
    svc = _incident_call(as_json, _incidents, database_url)
    view = _incident_call(
        as_json,
        svc.post_update,
        incident_id,
        message,
        _whoami(author),
        progress=progress,
        next_steps=next_steps,
        eta=_incident_call(as_json, _when, eta, "--eta"),
        visibility="internal" if internal else "public",
        notify=notify,
        webhook_url=webhook_url,
    )
    _show_incident(view, as_json)


@incident_app.command("severity")
def incident_severity(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    sev: Annotated[str, typer.Argument(help="SEV-1 .. SEV-4.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the timeline).")] = "",
    author: _Author = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-classify an incident."""
    svc = _incident_call(as_json, _incidents, database_url)
    _show_incident(_incident_call(as_json, svc.set_severity, incident_id, sev, _whoami(author), reason), as_json)


@incident_app.command("mitigate")
def incident_mitigate(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    message: Annotated[str, typer.Option(help="What stopped the impact.")] = "",
    author: _Author = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Mark the impact as stopped."""
    svc = _incident_call(as_json, _incidents, database_url)
    _show_incident(_incident_call(as_json, svc.mitigate, incident_id, _whoami(author), message), as_json)


@incident_app.command("resolve")
def incident_resolve(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
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
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Resolve an incident (its post-mortem falls due in 48 hours)."""
    svc = _incident_call(as_json, _incidents, database_url)
    meeting = _incident_call(as_json, _when, postmortem_meeting, "--postmortem-meeting")
    view = _incident_call(
        as_json,
        svc.resolve,
        incident_id,
        _whoami(author),
        root_cause=root_cause,
        resolution=resolution,
        message=message,
        postmortem_meeting_at=meeting,
        notify=notify,
        webhook_url=webhook_url,
        expire_silences=expire_silences,
    )
    _show_incident(view, as_json)


@incident_app.command("close")
def incident_close(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
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
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Close a resolved incident once its post-mortem is done and a smoke run verified the recovery."""
    if smoke_url and force:
        fail("give either --smoke-url (a passing smoke run) or --force with --reason, not both", as_json=as_json)
    svc = _incident_call(as_json, _incidents, database_url)
    smoke_result = None
    if smoke_url:
        if _incident_call(as_json, svc.get, incident_id)["status"] == "resolved":
            from spikeformer.ops.smoke import run_smoke

            result = _incident_call(as_json, run_smoke, smoke_url, api_key)
            if not as_json:
                for line in result.lines():
                    console.print(line, highlight=False, markup=False)
            if not result.ok:
                fail(f"incident {incident_id} stays resolved: the smoke run {result.summary()}", 1, as_json)
            smoke_result = result.to_dict()
    view = _incident_call(
        as_json, svc.close, incident_id, _whoami(author), message, smoke=smoke_result, force=force, reason=reason
    )
    _show_incident(view, as_json)


@incident_app.command("message")
def incident_message(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    kind: Annotated[str, typer.Argument(help="initial, update or resolution.")],
    post: Annotated[bool, typer.Option(help="Also post it to the chat webhook.")] = False,
    webhook_url: _WebhookUrl = None,
    author: _Author = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the runbook's initial report, progress update or resolution notice for an incident."""
    svc = _incident_call(as_json, _incidents, database_url)
    if post:
        result = _incident_call(as_json, svc.post_message, incident_id, kind, _whoami(author), webhook_url)
    else:
        result = {"kind": kind, "text": _incident_call(as_json, svc.message, incident_id, kind)}
    if as_json:
        _emit_json(result)
        return
    print(result["text"])
    if post and not result["posted"]:
        fail(result["error"], code=1)


@incident_app.command("postmortem")
def incident_postmortem(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    output: Annotated[str | None, typer.Option(help="Write the draft to this file (default: stdout).")] = None,
    database_url: _DbUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the post-mortem draft (Markdown): timeline, response times, measured impact, root cause, actions."""
    from pathlib import Path

    svc = _incident_call(as_json, _incidents, database_url)
    text = _incident_call(as_json, svc.postmortem, incident_id)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    if as_json:
        _emit_json({"incident_id": incident_id, "output": output, "markdown": text})
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
        _emit_json({"severities": [asdict(s) for s in SEVERITIES]})
    else:
        print(render_markdown_table())


@app.command()
def smoke(
    url: Annotated[
        str, typer.Option(help="Base URL of the service.", envvar="SPIKEFORMER_SMOKE_URL")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Bearer key; scope alerts or admin verifies the database round trip (skipped without a key).",
            envvar="SPIKEFORMER_API_KEY",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.", min=0.1)] = 10.0,
    record_wait: Annotated[
        float, typer.Option(help="Seconds to wait for the inference record to reach the database.", min=0.0)
    ] = 10.0,
    wait_ready: Annotated[
        float, typer.Option(help="First wait up to this many seconds for the service to become ready.", min=0.0)
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Check a running deployment end to end: health, models, inference, metrics, database. Exit 1 on a failure."""
    from spikeformer.ops.smoke import run_smoke

    try:
        result = run_smoke(url, api_key, timeout_s=timeout, record_wait_s=record_wait, wait_ready_s=wait_ready)
    except ValueError as e:
        fail(str(e), as_json=as_json)
    if as_json:
        _emit_json(result.to_dict())
    else:
        for line in result.lines():
            print(line)
    if not result.ok:
        raise typer.Exit(1)


def _parse_args(pairs: list[str]) -> dict:
    """``["embed_dim=128", "pool_stages=[false,true,true,false]"]`` -> dict; values are JSON, else strings."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(
                f"--arg expects KEY=VALUE (VALUE in JSON, e.g. depth=2 or pool_stages=[0,1,1,0]), got {pair!r}"
            )
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "spikformer-4-384",
    arg: Annotated[list[str], typer.Option("--arg", help="Model override KEY=VALUE (repeatable).")] = [],  # noqa: B006
    dataset: Annotated[str, typer.Option(help="fashion-mnist, digits or folder:PATH.")] = "fashion-mnist",
    data_root: Annotated[str | None, typer.Option(help="Where the data set's files are.")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lr: float = 2e-3,
    min_lr: float = 1e-5,
    warmup_epochs: float = 1.0,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    amp: Annotated[bool, typer.Option(help="bf16 autocast (CPUs with AMX, CUDA).")] = False,
    grad_clip: float = 1.0,
    cuda_graphs: Annotated[bool, typer.Option(help="On one CUDA GPU, replay each step as a captured graph.")] = True,
    augment: Annotated[bool, typer.Option(help="Random crop + horizontal flip.")] = True,
    seed: int = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    output: Annotated[str, typer.Option(help="Run folder.")] = "runs/latest",
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT/last when present.")] = True,
    stop_after: Annotated[int | None, typer.Option(help="End after N epochs of this run; resume later.")] = None,
    limit_train: Annotated[int | None, typer.Option(help="Use the first N training images.")] = None,
    limit_test: Annotated[int | None, typer.Option(help="Use the first N test images.")] = None,
    init_from: Annotated[str | None, typer.Option(help="Checkpoint whose weights initialise the model.")] = None,
    distill: Annotated[str | None, typer.Option(help="Teacher checkpoint for knowledge distillation.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a model; writes OUTPUT/metrics.jsonl, OUTPUT/curves.png and the checkpoint OUTPUT/checkpoint."""
    from spikeformer.checkpoint import CheckpointError
    from spikeformer.data import DatasetNotFoundError
    from spikeformer.train import TrainConfig, fit

    try:
        cfg = TrainConfig(
            model=model,
            model_args=_parse_args(arg),
            dataset=dataset,
            data_root=data_root,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_lr=min_lr,
            warmup_epochs=warmup_epochs,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
            amp=amp,
            grad_clip=grad_clip,
            cuda_graphs=cuda_graphs,
            augment=augment,
            seed=seed,
            device=device,
            output=output,
            resume=resume,
            limit_train=limit_train,
            limit_test=limit_test,
            init_from=init_from,
            distill_from=distill,
        )
        result = fit(cfg, progress=not as_json)
    except (ValueError, DatasetNotFoundError, CheckpointError) as e:
        fail(str(e), as_json=as_json)
    summary = {
        "checkpoint": str(result.checkpoint),
        "top1": result.top1,
        "epochs": result.epochs,
        "seconds": round(result.seconds, 1),
        "output": output,
    }
    if as_json:
        _emit_json(summary)
    else:
        console.print(
            f"checkpoint {result.checkpoint}: test top-1 {100 * result.top1:.2f}% "
            f"after {result.epochs} epochs ({result.seconds / 60:.1f} min)",
            highlight=False,
        )


@app.command()
def evaluate(
    checkpoint: Annotated[str, typer.Option(help="Checkpoint folder.")],
    dataset: Annotated[str, typer.Option(help="fashion-mnist, digits or folder:PATH.")] = "fashion-mnist",
    split: Annotated[str, typer.Option(help="test, train, or all (every image of a folder data set).")] = "test",
    data_root: str | None = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N images only.")] = None,
    batch_size: int = 500,
    output: Annotated[str | None, typer.Option(help="Folder for confusion.png (default: the checkpoint's).")] = None,
    backend: Annotated[
        str, typer.Option(help="torch (the float model), or a fixed-point chip emulator: loihi2-emu, spinnaker2-emu.")
    ] = "torch",
    weight_splits: Annotated[int, typer.Option(help="Emulators: synapse groups per weight (see compile).")] = 2,
    as_json: JsonFlag = False,
) -> None:
    """Top-1 and per-class accuracy on a data set split; writes a confusion-matrix PNG.

    With an emulator backend the compiled integer network runs instead, and the report adds its agreement with the
    float model's predictions."""
    from pathlib import Path

    from spikeformer.checkpoint import CheckpointError
    from spikeformer.data import DatasetNotFoundError, load_dataset
    from spikeformer.train import evaluate_model, plot_confusion

    try:
        pipe = _load_pipeline(checkpoint)
        data = load_dataset(dataset, None if split == "all" else split, data_root)
        if limit is not None:
            data = data.subset(range(min(limit, len(data))))
        if tuple(data.image_shape) != tuple(pipe.input_shape):
            raise ValueError(
                f"the data set's images are {list(data.image_shape)} (C, H, W) but the model takes "
                f"{list(pipe.input_shape)}"
            )
        if backend != "torch":
            return _evaluate_emulated(checkpoint, backend, data, dataset, split, batch_size, weight_splits, as_json)
        t0 = time.perf_counter()
        result = evaluate_model(pipe.runner, data, pipe.preprocess, batch_size)
        seconds = time.perf_counter() - t0
    except (ValueError, DatasetNotFoundError, CheckpointError) as e:
        fail(str(e), as_json=as_json)
    png = plot_confusion(
        result,
        data.classes,
        Path(output or checkpoint) / "confusion.png",
        title=f"{pipe.manifest.model_name} on {dataset} {split}: top-1 {100 * result.top1:.2f}%",
    )
    report = {
        "checkpoint": checkpoint,
        "dataset": dataset,
        "split": split,
        **result.to_dict(),
        "seconds": round(seconds, 2),
        "confusion_png": str(png),
    }
    if as_json:
        _emit_json(report)
        return
    table = Table("class", "accuracy")
    for name, acc in result.per_class.items():
        table.add_row(name, f"{100 * acc:.2f}%")
    Console().print(table)
    Console().print(
        f"top-1: {100 * result.top1:.2f}% on {result.num_samples} images ({seconds:.1f}s); confusion matrix: {png}",
        highlight=False,
    )


def _evaluate_emulated(checkpoint, backend, data, dataset, split, batch_size, weight_splits, as_json) -> None:
    """``evaluate --backend loihi2-emu|spinnaker2-emu``: the compiled integer network against the float model."""
    from rich.progress import Progress

    from spikeformer.checkpoint import load_checkpoint
    from spikeformer.hardware.compiler import quant_config_for
    from spikeformer.hardware.emulator import BACKENDS, evaluate_emulated
    from spikeformer.hardware.graph import lower_model
    from spikeformer.hardware.quantize import quantize_graph
    from spikeformer.hardware.targets import get_target

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: torch, {', '.join(BACKENDS)}")
    model, manifest = load_checkpoint(checkpoint)
    cfg = quant_config_for(manifest, None, "layer", weight_splits)
    prog = quantize_graph(lower_model(model), get_target(backend.removesuffix("-emu")), cfg)
    t0 = time.perf_counter()
    with Progress(console=console, transient=True, disable=not sys.stderr.isatty() and as_json) as bar:
        task = bar.add_task(f"{backend}", total=len(data))
        res = evaluate_emulated(
            prog, model, data, manifest.preprocess, batch_size, progress=lambda n: bar.advance(task, n)
        )
    seconds = time.perf_counter() - t0
    report = {
        "checkpoint": checkpoint,
        "dataset": dataset,
        "split": split,
        "backend": backend,
        "quantization": {"weight_bits": prog.target.weight_bits, "weight_splits": weight_splits, "exponent": "layer"},
        **res,
        "seconds": round(seconds, 2),
    }
    if as_json:
        _emit_json(report)
        return
    console.print(
        f"{backend}: top-1 {100 * res['top1']:.2f}% (float model {100 * res['float_top1']:.2f}%), predictions agree "
        f"with the float model on {100 * res['agreement']:.2f}% of {res['num_samples']} images ({seconds:.0f}s)",
        highlight=False,
    )


def _load_pipeline(path: str):
    from spikeformer import load_pipeline

    return load_pipeline(path)


@models_app.command("import")
def models_import(
    path: Annotated[str, typer.Argument(help="A SpikingJelly 2.0 / reference Spikformer .pth state dict.")],
    output: Annotated[str, typer.Option(help="Checkpoint folder to write.")],
    dataset: Annotated[
        str, typer.Option(help="Data set the weights were trained on (sets preprocessing).")
    ] = "cifar10",
    img_size: Annotated[int, typer.Option(help="Input size (32 for CIFAR checkpoints).")] = 32,
    num_heads: Annotated[int | None, typer.Option(help="Attention heads (not stored in a state dict).")] = None,
    timesteps: Annotated[int, typer.Option(min=1)] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Convert a Spikformer .pth (read with torch.load(weights_only=True): never unpickled) into a checkpoint."""
    import pickle

    import torch

    from spikeformer.checkpoint import save_checkpoint
    from spikeformer.data import Preprocess
    from spikeformer.interop import from_spikingjelly

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as e:
        fail(
            f"cannot read {path} as a tensor-only state dict (weights_only=True): {str(e).splitlines()[0]}",
            as_json=as_json,
        )
    try:
        model = from_spikingjelly(state, img_size=img_size, num_heads=num_heads, timesteps=timesteps)
    except ValueError as e:
        fail(str(e), as_json=as_json)
    c = model.config.in_chans
    pre = Preprocess(mean=(0.0,) * c, std=(1.0,) * c, channels=c, image_size=model.config.img_size)
    manifest = save_checkpoint(
        model,
        output,
        pre,
        [str(i) for i in range(model.config.num_classes)],
        dataset,
        {"note": "imported; accuracy not measured here"},
        training={"imported_from": path},
    )
    info = {"ok": True, "output": output, "sha256": manifest.sha256, "config": manifest.config}
    if as_json:
        _emit_json(info)
    else:
        console.print(
            f"wrote {output} (sha256 {manifest.sha256[:12]}); preprocessing is x/255 - set mean/std in "
            "the manifest if the weights expect normalised input",
            highlight=False,
        )


@models_app.command("verify")
def models_verify(
    path: Annotated[str, typer.Argument(help="Checkpoint folder.")],
    as_json: JsonFlag = False,
) -> None:
    """Check a checkpoint's manifest and the sha256 of its weights (exit 0 when intact, 1 when not)."""
    from spikeformer.checkpoint import CheckpointError, verify_checkpoint

    try:
        m = verify_checkpoint(path)
    except CheckpointError as e:
        fail(str(e), code=1, as_json=as_json)
    if as_json:
        _emit_json({"ok": True, "path": path, "model_name": m.model_name, "sha256": m.sha256})
    else:
        console.print(f"OK {path}: {m.model_name}, sha256 {m.sha256}", highlight=False)


@app.command()
def profile(
    checkpoint: Annotated[str | None, typer.Option(help="Checkpoint folder (trained weights).")] = None,
    model: Annotated[str | None, typer.Option(help="Registered model name instead (random weights).")] = None,
    arg: Annotated[list[str], typer.Option("--arg", help="Override KEY=VALUE for --model (repeatable).")] = [],  # noqa: B006
    dataset: Annotated[
        str | None, typer.Option(help="Profile the first N test images of fashion-mnist, digits or folder:PATH.")
    ] = None,
    data_root: Annotated[str | None, typer.Option(help="Where the data set's files are.")] = None,
    samples: Annotated[int, typer.Option(min=1, help="N: images profiled (random ones without --dataset).")] = 4,
    hardware: Annotated[
        str, typer.Option(help="Comma-separated: cmos45nm, loihi, loihi2, spinnaker2, gpu-measured.")
    ] = "cmos45nm,loihi,loihi2,spinnaker2",
    integer_inputs: Annotated[
        str, typer.Option(help="Integer non-binary inputs: accumulate (value n = n ACs) or mac.")
    ] = "accumulate",
    seed: Annotated[int, typer.Option(help="Seed of the random images.")] = 0,
    output: Annotated[str, typer.Option(help="Folder for profile.json, firing_rates.png, energy.png.")] = "profile",
    as_json: JsonFlag = False,
) -> None:
    """Count SOPs, MACs and spikes of one run; energy per inference by hardware model, next to the ANN."""
    from pathlib import Path

    import numpy as np
    import torch

    import spikeformer
    from spikeformer.checkpoint import CheckpointError
    from spikeformer.data import DatasetNotFoundError, load_dataset
    from spikeformer.energy import get_hardware, plot_energy, plot_firing_rates
    from spikeformer.energy import profile as profile_model

    try:
        if (checkpoint is None) == (model is None):
            raise ValueError("give exactly one of --checkpoint PATH (trained weights) or --model NAME (random weights)")
        names = [h.strip() for h in hardware.split(",") if h.strip()]
        if not names:
            raise ValueError("--hardware needs at least one name, e.g. cmos45nm,loihi")
        models = [get_hardware(n) for n in names]
        if checkpoint is not None:
            if arg:
                raise ValueError("--arg applies to --model only: a checkpoint's architecture is fixed")
            pipe = _load_pipeline(checkpoint)
            net, preprocess, shape = pipe.model, pipe.preprocess, tuple(pipe.input_shape)
            weights = f"checkpoint {checkpoint}"
        else:
            net = spikeformer.create_model(model, **_parse_args(arg)).eval()
            preprocess, shape = None, tuple(net.input_shape)
            weights = f"{model}: RANDOM weights (untrained; firing rates and energy are not a trained network's)"
            console.print(f"note: {weights}", highlight=False)
        if dataset is not None:
            images = load_dataset(dataset, "test", data_root).images[:samples]
            if tuple(images.shape[1:]) != shape:
                raise ValueError(
                    f"the data set's images are {list(images.shape[1:])} (C, H, W); the model takes {list(shape)}"
                )
            inputs = f"first {len(images)} test images of {dataset}"
        else:
            rng = np.random.default_rng(seed)
            images = torch.from_numpy(rng.integers(0, 256, size=(samples, *shape), dtype=np.uint8))
            inputs = f"{samples} random uniform images (seed {seed})"
        x = preprocess(images) if preprocess is not None else images.float() / 255.0
        report = profile_model(net, x, integer_inputs=integer_inputs)
        for hw in models:
            if hw.measured:
                report.add_measurement(hw.name, hw.measure(net, x))
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "json": str(folder / "profile.json"),
            "firing_rates_png": str(plot_firing_rates(report, folder / "firing_rates.png")),
            "energy_png": str(plot_energy(report, folder / "energy.png", models)),
        }
        result = {"ok": True, "weights": weights, "inputs": inputs, "files": files, **report.to_dict(models)}
        Path(files["json"]).write_text(json.dumps(result, indent=2, default=str) + "\n")
    except (ValueError, RuntimeError, DatasetNotFoundError, CheckpointError) as e:
        fail(str(e), as_json=as_json)
    if as_json:
        _emit_json(result)
        return
    out = Console()
    (out if out.is_terminal else Console(width=200)).print(report.table(models))
    console.print(f"inputs: {inputs}; wrote {', '.join(files.values())}", highlight=False)


# Commands in their own modules of this package (imported last: they use the helpers above).
from spikeformer.cli.convert import register as _register_convert  # noqa: E402
from spikeformer.cli.hardware import register as _register_hardware  # noqa: E402

_register_convert(app)
_register_hardware(app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
