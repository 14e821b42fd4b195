"""The runbook's database operations on SQLite: API keys, maintenance mode, and the long-query action check."""

from __future__ import annotations

import datetime as dt

import pytest

from spikeformer.ops.database import (
    Maintenance,
    create_api_key,
    read_maintenance,
    revoke_api_key,
    save_maintenance,
    signal_long_queries,
)
from spikeformer.store import ApiKeyStore


@pytest.fixture
def db(sqlite_db):
    return sqlite_db


def test_maintenance_round_trip(db):
    assert read_maintenance(db) is None
    m = Maintenance.now(True, "moving racks")
    assert dt.datetime.fromisoformat(m.since).tzinfo is not None
    save_maintenance(db, m)
    assert read_maintenance(db) == m
    save_maintenance(db, Maintenance.now(False))
    assert read_maintenance(db).enabled is False


def test_maintenance_from_an_older_row_takes_defaults():
    assert Maintenance.from_dict({"enabled": 1}) == Maintenance(True, "", None)


def test_create_and_revoke_api_key(db):
    info = create_api_key(db, "ci", ["infer", "alerts"])
    assert info["key"].startswith("sfk_") and info["scopes"] == ["infer", "alerts"] and info["name"] == "ci"
    with db.session() as s:
        assert ApiKeyStore(s).verify(info["key"]) is not None
    assert revoke_api_key(db, info["id"]) is True
    assert revoke_api_key(db, info["id"] + 1000) is False
    with db.session() as s:
        assert ApiKeyStore(s).verify(info["key"]) is None


def test_unknown_scope_is_refused(db):
    with pytest.raises(ValueError, match="scope"):
        create_api_key(db, "ci", ["root"])


def test_unknown_query_action_is_refused_before_any_query(db):
    with pytest.raises(ValueError, match="unknown action 'kill'; accepted: cancel, terminate"):
        signal_long_queries(db, 60, "kill")
