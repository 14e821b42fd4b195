"""PostgreSQL administration: find and stop long-running queries, count connections.

Each function takes a `Session`, an `Engine`, a `Connection` or a `Database`, and raises `StoreError` on SQLite,
which has no server processes to inspect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from spikeformer.store.database import Database
from spikeformer.store.errors import StoreError

__all__ = ["cancel_backend", "connection_stats", "long_running_queries", "terminate_backend"]

Target = Session | Engine | Connection | Database

_LONG_QUERIES = text(
    """
    SELECT pid, state, datname, usename, application_name,
           EXTRACT(EPOCH FROM (clock_timestamp() - query_start)) AS seconds, query
    FROM pg_stat_activity
    WHERE pid <> pg_backend_pid()
      AND backend_type = 'client backend'
      AND state IS NOT NULL AND state <> 'idle'
      AND query_start < clock_timestamp() - make_interval(secs => :older_than)
    ORDER BY query_start
    """
)


@contextmanager
def _connection(target: Target) -> Iterator[Session | Connection]:
    if isinstance(target, Database):
        target = target.engine
    dialect = target.get_bind().dialect if isinstance(target, Session) else target.dialect
    if dialect.name != "postgresql":
        raise StoreError(f"this operation is PostgreSQL only (the database is {dialect.name})")
    if isinstance(target, Engine):
        with target.connect() as connection:
            yield connection
            connection.commit()
    else:
        yield target


def long_running_queries(target: Target, older_than_seconds: float) -> list[dict[str, Any]]:
    """Statements running (or transactions left open) for more than `older_than_seconds`, oldest first.

    The calling connection and PostgreSQL's own background processes are left out. Idle connections are too;
    `idle in transaction` ones are listed, since they hold locks and snapshots.

    Returns:
        `[{"pid", "state", "seconds", "query", "database", "user", "application_name"}, ...]`
    """
    with _connection(target) as connection:
        rows = connection.execute(_LONG_QUERIES, {"older_than": float(older_than_seconds)}).mappings().all()
    return [
        {
            "pid": int(row["pid"]),
            "state": row["state"],
            "seconds": float(row["seconds"]),
            "query": row["query"],
            "database": row["datname"],
            "user": row["usename"],
            "application_name": row["application_name"],
        }
        for row in rows
    ]


def _signal(target: Target, function: str, pid: int) -> bool:
    with _connection(target) as connection:
        return bool(connection.execute(text(f"SELECT {function}(:pid)"), {"pid": int(pid)}).scalar())


def cancel_backend(target: Target, pid: int) -> bool:
    """Cancel the statement running in backend `pid` (`pg_cancel_backend`); the connection stays open.

    Returns whether the signal was sent (False for an unknown pid).
    """
    return _signal(target, "pg_cancel_backend", pid)


def terminate_backend(target: Target, pid: int) -> bool:
    """Close the connection of backend `pid` (`pg_terminate_backend`), rolling back its transaction.

    Returns whether the signal was sent (False for an unknown pid).
    """
    return _signal(target, "pg_terminate_backend", pid)


def connection_stats(target: Target) -> dict[str, int]:
    """Client connections open now and the server's `max_connections`.

    Returns:
        `{"in_use": int, "max_connections": int}`
    """
    with _connection(target) as connection:
        in_use = connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        ).scalar()
        max_connections = connection.execute(text("SELECT current_setting('max_connections')::int")).scalar()
    return {"in_use": int(in_use or 0), "max_connections": int(max_connections or 0)}
