"""PostgreSQL administration against the test cluster: long queries are found and cancelled or terminated."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from spikeformer.store import (
    StoreError,
    cancel_backend,
    connection_stats,
    long_running_queries,
    terminate_backend,
)


def _sleep_in_background(db, seconds: float = 5.0):
    """Run `SELECT pg_sleep(seconds)` on its own connection; returns the thread and where its error lands."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            with db.engine.connect() as connection:
                connection.execute(text(f"SELECT pg_sleep({seconds})"))
        except DBAPIError as exc:
            outcome["error"] = exc.orig
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _find_sleep(db, timeout: float = 4.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [q for q in long_running_queries(db.engine, older_than_seconds=0.2) if "pg_sleep" in q["query"]]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("the sleeping query was not listed")


@pytest.mark.timeout(30)
def test_long_running_query_is_found_and_cancelled(pg_db):
    thread, outcome = _sleep_in_background(pg_db)
    query = _find_sleep(pg_db)
    assert query["state"] == "active" and query["seconds"] >= 0.2
    with pg_db.session() as session:
        own_pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        assert all(q["pid"] != own_pid for q in long_running_queries(session, 0))  # the caller is left out
    cancelled_at = time.monotonic()
    assert cancel_backend(pg_db.engine, query["pid"]) is True
    thread.join(10)
    assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled)
    assert outcome["ended"] - cancelled_at < 3  # stopped, did not run its 5 s
    assert not [q for q in long_running_queries(pg_db, 0) if "pg_sleep" in q["query"]]


@pytest.mark.timeout(30)
def test_terminate_backend_closes_the_connection(pg_db):
    thread, outcome = _sleep_in_background(pg_db)
    query = _find_sleep(pg_db)
    assert terminate_backend(pg_db, query["pid"]) is True
    thread.join(10)
    assert isinstance(outcome.get("error"), psycopg.errors.AdminShutdown)


def test_connection_stats(pg_db):
    with pg_db.session() as session:
        stats = connection_stats(session)
    assert stats["max_connections"] == 60  # as the test cluster is configured
    assert 1 <= stats["in_use"] < stats["max_connections"]


def test_admin_is_postgresql_only(sqlite_db):
    for call in (
        lambda: long_running_queries(sqlite_db.engine, 1),
        lambda: cancel_backend(sqlite_db, 1),
        lambda: terminate_backend(sqlite_db, 1),
        lambda: connection_stats(sqlite_db),
    ):
        with pytest.raises(StoreError, match="PostgreSQL only"):
            call()
