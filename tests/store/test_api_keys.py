"""API keys: the plaintext is returned once and never stored; wrong and revoked keys fail."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from spikeformer.store import ApiKeyStore


def test_created_key_verifies_and_is_not_stored(db):
    with db.session() as session:
        plaintext, key = ApiKeyStore(session).create("ci", ["infer", "alerts"])
    assert plaintext.startswith("sfk_") and len(plaintext) >= 40
    assert key.prefix == plaintext[:8]
    assert key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert key.scope_list == ["infer", "alerts"] and key.has_scope("infer") and not key.has_scope("admin")

    with db.session() as session:
        rows = session.execute(text("SELECT * FROM api_keys")).all()
    assert len(rows) == 1
    secret = plaintext[len("sfk_") :]
    for value in rows[0]:
        assert plaintext not in str(value) and secret not in str(value)

    with db.session() as session:
        found = ApiKeyStore(session).verify(plaintext)
        assert found is not None and found.id == key.id
        assert found.last_used_at is not None


def test_wrong_keys_do_not_verify(db):
    with db.session() as session:
        keys = ApiKeyStore(session)
        plaintext, _ = keys.create("ci", ["infer"])
        same_prefix = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
        for wrong in (same_prefix, plaintext + "x", "sfk_", "", "Bearer " + plaintext, plaintext.upper()):
            assert keys.verify(wrong) is None


def test_revoked_key_does_not_verify(db):
    with db.session() as session:
        keys = ApiKeyStore(session)
        plaintext, key = keys.create("old", ["admin"])
        other, _ = keys.create("new", ["admin"])
    with db.session() as session:
        keys = ApiKeyStore(session)
        assert keys.revoke(key.id) is True
        assert keys.revoke(key.id) is False  # already revoked
        assert keys.revoke(10_000) is False
    with db.session() as session:
        keys = ApiKeyStore(session)
        assert keys.verify(plaintext) is None
        assert keys.verify(other) is not None
        listed = {k.name: k for k in keys.list()}
        assert set(listed) == {"old", "new"}
        assert listed["old"].revoked and not listed["new"].revoked


@pytest.mark.parametrize("scopes", [["infer", "root"], []])
def test_unknown_or_missing_scope_is_refused(db, scopes):
    with db.session() as session, pytest.raises(ValueError, match="infer, admin, alerts"):
        ApiKeyStore(session).create("bad", scopes)
