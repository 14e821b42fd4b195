"""``spikeformer db upgrade|long-queries``, ``spikeformer keys create|revoke`` and ``spikeformer maintenance``."""

from __future__ import annotations

from typing import Annotated

import typer

from spikeformer.cli._output import JsonFlag, console, database, emit_json, fail, parse_duration

__all__ = [
    "db_app",
    "db_long_queries",
    "db_upgrade",
    "keys_app",
    "keys_create",
    "keys_revoke",
    "maintenance",
    "register",
]

keys_app = typer.Typer(help="API keys (stored hashed; printed once).", no_args_is_help=True)
db_app = typer.Typer(help="Database: migrations and operations.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option("--scope", help="admin, infer or alerts (repeatable).")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    database_url: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; the key is printed once and only its hash is stored."""
    from spikeformer.ops.database import create_api_key
    from spikeformer.store import StoreError

    try:
        db = database(database_url)
        db.ensure_ready()
        info = create_api_key(db, name or "cli", scope)
    except (StoreError, ValueError) as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json(info)
    else:
        console.print(
            f"created key {info['id']} with scopes {', '.join(info['scopes'])}; store it now, it is not shown again:",
            highlight=False,
        )
        print(info["key"])


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument()], database_url: str | None = None) -> None:
    """Revoke an API key by id."""
    from spikeformer.ops.database import revoke_api_key
    from spikeformer.store import StoreError

    try:
        ok = revoke_api_key(database(database_url), key_id)
    except StoreError as e:
        fail(str(e))
    if not ok:
        fail(f"no API key with id {key_id}", code=1)
    console.print(f"revoked key {key_id}")


def maintenance(
    mode: Annotated[str, typer.Argument(help="on or off")],
    message: Annotated[str, typer.Option(help="Shown to clients while inference is paused.")] = "",
    database_url: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """Maintenance mode: inference answers 503 with Retry-After and the message; liveness stays 200."""
    from spikeformer.ops.database import Maintenance, save_maintenance
    from spikeformer.store import StoreError

    if mode not in ("on", "off"):
        fail(f"mode must be 'on' or 'off', got {mode!r}", as_json=as_json)
    value = Maintenance.now(mode == "on", message)
    try:
        db = database(database_url)
        db.ensure_ready()
        save_maintenance(db, value)
    except StoreError as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json(value.to_dict())
    else:
        console.print(f"maintenance mode {mode}" + (f": {message}" if message else ""), highlight=False)


@db_app.command("upgrade")
def db_upgrade(database_url: str | None = None, as_json: JsonFlag = False) -> None:
    """Apply the database migrations (SQLite or PostgreSQL via SPIKEFORMER_DATABASE_URL)."""
    from spikeformer.store import StoreError

    try:
        db = database(database_url)
        db.upgrade()
        rev = db.current_revision()
    except StoreError as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json({"ok": True, "revision": rev})
    else:
        console.print(f"database at revision {rev}", highlight=False)


@db_app.command("long-queries")
def db_long_queries(
    older_than: Annotated[str, typer.Option(help="Age threshold: 300, 90s, 5m, 1h.")] = "5m",
    cancel: Annotated[bool, typer.Option(help="pg_cancel_backend each (the gentle first step).")] = False,
    terminate: Annotated[bool, typer.Option(help="pg_terminate_backend each (only when cancel did not help).")] = False,
    database_url: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """List PostgreSQL queries running longer than a threshold; cancel or terminate them when asked."""
    from spikeformer.ops.database import signal_long_queries
    from spikeformer.store import StoreError

    if cancel and terminate:
        fail(
            "give --cancel or --terminate, not both (cancel first; terminate only if that did not help)",
            as_json=as_json,
        )
    action = "cancel" if cancel else "terminate" if terminate else None
    try:
        seconds = parse_duration(older_than)
        db = database(database_url)
        rows = signal_long_queries(db, seconds, action)
        db.dispose()
    except (StoreError, ValueError) as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json({"older_than_s": seconds, "action": action, "queries": rows})
        return
    if not rows:
        console.print(f"no queries running longer than {older_than}")
    done = {"cancel": "cancelled", "terminate": "terminated"}.get(action or "", "")
    for r in rows:
        flag = f" [{done if r['signalled'] else 'not ' + done}]" if action else ""
        console.print(f"pid {r['pid']} {r['seconds']:.0f}s {r['state']}: {r['query'][:200]}{flag}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's top-level commands (``maintenance``) to the root ``app``."""
    app.command()(maintenance)
