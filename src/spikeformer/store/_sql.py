"""Small helpers for statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

__all__ = ["dialect_name", "upsert_insert"]


def dialect_name(session: Session) -> str:
    """`"sqlite"` or `"postgresql"` for the session's bind."""
    return session.get_bind().dialect.name


def upsert_insert(session: Session, entity: Any) -> Any:
    """An INSERT for `entity` that supports `on_conflict_do_update` on the session's backend."""
    return postgresql.insert(entity) if dialect_name(session) == "postgresql" else sqlite.insert(entity)
