"""The service's background work: the retention of raw inference records (bounded deletes, aggregates, gauges)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from spikeformer.serve import metrics
from spikeformer.serve.app import create_app
from spikeformer.serve.services.background import apply_retention
from spikeformer.store import Database, InferenceRecordStore
from support import make_settings

NOW = datetime(2025, 6, 20, 12, 0, tzinfo=UTC)


def _records(db: Database, at: datetime, n: int, status: str = "ok") -> None:
    row = {"model": "tiny", "latency_ms": 3.0, "status": status, "http_status": 200 if status == "ok" else 500}
    with db.session() as s:
        InferenceRecordStore(s).add_many([row | {"created_at": at} for _ in range(n)])


@pytest.fixture
def db(sqlite_db):
    return sqlite_db


@pytest.mark.security
def test_retention_deletes_expired_records_in_bounded_runs_and_counts_them(db):
    _records(db, NOW - timedelta(days=31), 7)
    _records(db, NOW - timedelta(days=31), 3, status="error")
    _records(db, NOW - timedelta(days=29), 2)
    before = metrics.RECORDS_DELETED._value.get()
    # 2 transactions of at most 4 rows per run: a run deletes at most 8, the rest waits for the next run
    assert apply_retention(db, 30, batch_size=4, max_batches=2, now=NOW) == 8
    assert apply_retention(db, 30, batch_size=4, max_batches=2, now=NOW) == 2
    assert apply_retention(db, 30, batch_size=4, max_batches=2, now=NOW) == 0
    assert metrics.RECORDS_DELETED._value.get() - before == 10
    with db.session() as s:
        store = InferenceRecordStore(s)
        assert store.count() == 2
        day = (NOW - timedelta(days=31)).date()
        assert {k: v for k, v in store.daily_stats(day, day).items() if k in ("total", "ok")} == {"total": 10, "ok": 7}
    assert metrics.RECORDS_RETENTION._value.get() == 30 * 86400
    assert metrics.RECORDS_OLDEST_AGE._value.get() == pytest.approx(29 * 86400)
    assert (
        metrics.DB_SIZE._value.get() > 0 and 0 < metrics.DB_DISK_FREE._value.get() <= metrics.DB_DISK_SIZE._value.get()
    )


def test_retention_zero_keeps_every_record_but_still_rolls_up(db):
    _records(db, NOW - timedelta(days=400), 2)
    assert apply_retention(db, 0, batch_size=10, max_batches=10, now=NOW) == 0
    with db.session() as s:
        store = InferenceRecordStore(s)
        assert store.count() == 2
        day = (NOW - timedelta(days=400)).date()
        assert store.daily_stats(day, day)["total"] == 2


@pytest.mark.security
def test_the_service_runs_the_retention_at_start_up(repository, tmp_path):
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    db = Database(url)
    db.upgrade()
    old = datetime.now(UTC) - timedelta(days=45)
    _records(db, old, 5)
    _records(db, datetime.now(UTC), 1)
    settings = make_settings(repository, url, record_retention_days=30, record_retention_batch=2)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with db.session() as s:
                if InferenceRecordStore(s).count(until=old + timedelta(days=1)) == 0:
                    break
            time.sleep(0.05)
        text = client.get("/metrics").text
    with db.session() as s:
        store = InferenceRecordStore(s)
        assert store.count() == 1
        assert store.daily_stats(old.date(), old.date())["total"] == 5
    assert "spikeformer_inference_records_retention_seconds 2.592e+06" in text
    assert "spikeformer_inference_records_deleted_total" in text
    db.dispose()
