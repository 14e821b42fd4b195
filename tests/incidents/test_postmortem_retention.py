"""The post-mortem's impact figures outlive the raw inference records: once their retention has deleted them, the
figures come from the daily aggregates written before they went."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spikeformer.store import InferenceRecordStore

pytestmark = pytest.mark.security


def _records(db, at: datetime, ok: int, error: int = 0, timeout: int = 0) -> None:
    rows = [{"status": "ok", "http_status": 200, "latency_ms": 4.0}] * ok
    rows += [{"status": "error", "http_status": 500, "latency_ms": 1.0}] * error
    rows += [{"status": "timeout", "http_status": 504, "latency_ms": 10000.0}] * timeout
    with db.session() as s:
        InferenceRecordStore(s).add_many([{"model": "tiny", "created_at": at} | r for r in rows])


def _expire(db, now: datetime, retention_days: int) -> int:
    deleted = 0
    while True:
        with db.session() as s:
            n = InferenceRecordStore(s).delete_expired((now - timedelta(days=retention_days)).date(), 1000)
        if not n:
            return deleted
        deleted += n


def test_impact_figures_come_from_the_daily_aggregates_after_retention(svc, db, clock):
    clock.now = datetime(2025, 4, 10, 9, 0, tzinfo=UTC)
    iid = svc.open("Classify fails", "SEV-2", "alice")["id"]
    _records(db, clock.now + timedelta(minutes=5), ok=30, error=6, timeout=4)
    _records(db, clock.now - timedelta(days=1), ok=50)  # the day before: the baseline
    clock.advance(hours=1)
    svc.resolve(iid, "alice", root_cause="a", resolution="b")
    fresh = svc.postmortem(iid)
    assert "Measured from the inference records, incident window 2025-04-10 09:00:00 UTC" in fresh
    assert "| Incident | 40 | 10 | 25.00 % | 6 | 4 | 0 |" in fresh

    clock.advance(days=60)
    assert _expire(db, clock.now, 30) == 90
    with db.session() as s:
        assert InferenceRecordStore(s).count() == 0
    later = svc.postmortem(iid)
    assert "measured from the daily aggregates" in later
    assert "incident 2025-04-10 00:00:00 UTC to 2025-04-11 00:00:00 UTC" in later
    assert "| Incident | 40 | 10 | 25.00 % | 6 | 4 | 0 | 5.0 ms | 5.0 ms |" in later
    assert "| Before | 50 | 0 | 0.00 % | 0 | 0 | 0 | 5.0 ms | 5.0 ms |" in later
