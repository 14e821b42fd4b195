"""InferenceRecordStore.add_many(skip_existing=True): a record presented twice (spool replay) is stored once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from spikeformer.store import InferenceRecordStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _record(**kw):
    base = {"id": str(uuid.uuid4()), "model": "m", "version": "1", "latency_ms": 3.0, "status": "ok"}
    return base | {"http_status": 200, "created_at": NOW} | kw


@pytest.mark.security
def test_add_many_skip_existing_inserts_each_id_once_and_keeps_the_first(db):
    first = [_record(), _record()]
    with db.session() as s:
        InferenceRecordStore(s).add_many(first)
    again = [first[0] | {"latency_ms": 99.0}, first[1], _record()]
    with db.session() as s:
        ids = InferenceRecordStore(s).add_many(again, skip_existing=True)
    assert ids == [r["id"] for r in again]
    with db.session() as s:
        store = InferenceRecordStore(s)
        assert store.count() == 3
        assert store.get(first[0]["id"]).latency_ms == 3.0  # the stored record is left as it was
    with pytest.raises(IntegrityError), db.session() as s:  # without the flag a duplicate id is still an error
        InferenceRecordStore(s).add_many([first[0]])
