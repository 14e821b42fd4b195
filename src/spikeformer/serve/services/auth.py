"""API keys for the routes: the scopes a presented key grants."""

from __future__ import annotations

from spikeformer.store import ApiKeyStore, Database

__all__ = ["key_scopes"]


def key_scopes(db: Database, key: str) -> set[str] | None:
    """The scopes of a valid key, or ``None`` when it is unknown or revoked. Blocking; raises ``StoreError``.

    Args:
        db: The service's database.
        key: The key as presented (``Authorization: Bearer <key>`` or ``X-API-Key``).
    """
    with db.session() as s:
        row = ApiKeyStore(s).verify(key)
        return None if row is None else set(row.scope_list)
