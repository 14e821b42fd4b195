"""Store of API keys: only a lookup prefix and a sha256 of each key are stored, never the key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from spikeformer._deprecation import moved_names
from spikeformer.store._types import utcnow
from spikeformer.store.tables import API_KEY_SCOPES, ApiKey

__all__ = ["KEY_PREFIX", "ApiKeyStore", "hash_key"]

KEY_PREFIX = "sfk_"
PREFIX_LENGTH = 8  # characters of the key kept in clear, to find its row and to show it to the owner
TOKEN_BYTES = 32
# `last_used_at` is written at most this often per key, so that verifying is not a write on every request.
TOUCH_INTERVAL = timedelta(seconds=60)


def hash_key(plaintext: str) -> str:
    """The sha256 hex digest of a key.

    A fast unsalted hash is enough: keys are 256-bit random tokens, so there is nothing to guess by brute force.
    """
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(scopes))
    unknown = [s for s in unique if s not in API_KEY_SCOPES]
    if unknown or not unique:
        what = f"unknown scopes {unknown}" if unknown else "no scope given"
        raise ValueError(f"{what}: accepted scopes are {', '.join(API_KEY_SCOPES)}")
    return unique


class ApiKeyStore:
    """SQL for `api_keys`; the caller's session owns the transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def create(self, name: str, scopes: Sequence[str]) -> tuple[str, ApiKey]:
        """Create a key and return `(plaintext, row)`; the plaintext cannot be recovered afterwards.

        Args:
            name: what the key is for (shown in listings).
            scopes: a non-empty subset of `API_KEY_SCOPES` (`infer`, `admin`, `alerts`).

        Raises:
            ValueError: an unknown scope, or none.
        """
        granted = _check_scopes(scopes)
        plaintext = KEY_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        row = ApiKey(
            name=name,
            prefix=plaintext[:PREFIX_LENGTH],
            key_hash=hash_key(plaintext),
            scopes=",".join(granted),
            created_at=utcnow(),
        )
        self._session.add(row)
        self._session.flush()
        return plaintext, row

    def verify(self, plaintext: str) -> ApiKey | None:
        """The live (not revoked) key whose hash matches `plaintext`, or None.

        Hashes are compared in constant time. `last_used_at` is refreshed when it is older than a minute.
        """
        if not plaintext.startswith(KEY_PREFIX) or len(plaintext) <= PREFIX_LENGTH:
            return None
        digest = hash_key(plaintext)
        stmt = select(ApiKey).where(ApiKey.prefix == plaintext[:PREFIX_LENGTH], ApiKey.revoked_at.is_(None))
        match = None
        for candidate in self._session.scalars(stmt):
            if hmac.compare_digest(candidate.key_hash, digest):
                match = candidate
        if match is None:
            return None
        now = utcnow()
        if match.last_used_at is None or now - match.last_used_at >= TOUCH_INTERVAL:
            match.last_used_at = now
            self._session.flush()
        return match

    def get(self, key_id: int) -> ApiKey | None:
        """The key with `key_id`, or None."""
        return self._session.get(ApiKey, key_id)

    def revoke(self, key_id: int) -> bool:
        """Revoke the key; False if there is no such key or it was already revoked."""
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
        return self._session.execute(stmt).rowcount == 1

    def list(self) -> Sequence[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return self._session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()


# the SQL classes are stores ("repository" names the model folder); the old name warns
__getattr__ = moved_names(__name__, {"ApiKeyRepository": "spikeformer.store.api_keys:ApiKeyStore"})
