"""The runbook's database operations: API keys, maintenance mode and long-running queries.

The CLI (``spikeformer keys``, ``maintenance``, ``db long-queries``) and the service's admin API call these; each
takes a :class:`~spikeformer.store.Database`, opens its own transaction and raises ``StoreError`` (database down) or
``ValueError`` (bad input) with a message that says what is accepted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from spikeformer.store import (
    ApiKeyStore,
    Database,
    SettingsStore,
    cancel_backend,
    long_running_queries,
    terminate_backend,
)

__all__ = [
    "MAINTENANCE_KEY",
    "QUERY_ACTIONS",
    "Maintenance",
    "create_api_key",
    "read_maintenance",
    "revoke_api_key",
    "save_maintenance",
    "signal_long_queries",
]

MAINTENANCE_KEY = "maintenance"  # the settings row every replica's poll reads
QUERY_ACTIONS = ("cancel", "terminate")  # pg_cancel_backend (the gentle first step), pg_terminate_backend


@dataclass
class Maintenance:
    """Maintenance mode: while ``enabled``, inference answers 503 with ``message``; ``since`` is an ISO UTC time."""

    enabled: bool = False
    message: str = ""
    since: str | None = None

    @classmethod
    def now(cls, enabled: bool, message: str = "") -> Maintenance:
        """Maintenance mode as an operator sets it now (``since``: the current UTC time, to the second)."""
        return cls(enabled, message, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Maintenance:
        """The stored form back (fields missing from an older row take their defaults)."""
        return cls(bool(value.get("enabled")), str(value.get("message", "")), value.get("since"))

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "message": self.message, "since": self.since}


def save_maintenance(db: Database, maintenance: Maintenance) -> None:
    """Store maintenance mode, where every replica's settings poll reads it (blocking)."""
    with db.session() as s:
        SettingsStore(s).set(MAINTENANCE_KEY, maintenance.to_dict())


def read_maintenance(db: Database) -> Maintenance | None:
    """The stored maintenance mode; None when it was never set (blocking)."""
    with db.session() as s:
        value = SettingsStore(s).get(MAINTENANCE_KEY)
    return Maintenance.from_dict(value) if isinstance(value, dict) else None


def create_api_key(db: Database, name: str, scopes: list[str]) -> dict[str, Any]:
    """Create an API key; returns ``{"key", "id", "scopes", "name"}``. The key is in this answer only (its hash is
    stored). Raises ``ValueError`` for an unknown scope."""
    with db.session() as s:
        key, row = ApiKeyStore(s).create(name, scopes)
        return {"key": key, "id": row.id, "scopes": row.scope_list, "name": row.name}


def revoke_api_key(db: Database, key_id: int) -> bool:
    """Revoke key ``key_id``; False when there is no such key."""
    with db.session() as s:
        return ApiKeyStore(s).revoke(key_id)


def signal_long_queries(db: Database, older_than_s: float, action: str | None = None) -> list[dict[str, Any]]:
    """PostgreSQL queries running longer than ``older_than_s`` seconds; with ``action`` each is cancelled or
    terminated and its row says whether the signal was delivered (``signalled``).

    Raises:
        ValueError: ``action`` is neither None nor one of :data:`QUERY_ACTIONS`.
    """
    if action is not None and action not in QUERY_ACTIONS:
        raise ValueError(f"unknown action {action!r}; accepted: {', '.join(QUERY_ACTIONS)}")
    rows = long_running_queries(db, older_than_s)
    if action is not None:
        signal = cancel_backend if action == "cancel" else terminate_backend
        for row in rows:
            row["signalled"] = bool(signal(db, row["pid"]))
    return rows
