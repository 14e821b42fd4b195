"""Inference records, model versions and settings on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from spikeformer.store import InferenceRecordStore, ModelVersionStore, SettingsStore

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def _record(**overrides):
    record = {"model": "spikformer", "version": "1", "backend": "torch", "latency_ms": 10.0, "status": "ok"}
    return record | {"http_status": 200, "created_at": NOW} | overrides


def test_add_many_count_and_get(db):
    records = [
        _record(spikes=2**40, energy_j=1.5e-6, queue_ms=1.0, compute_ms=8.0, batch_size=4),
        _record(),
        _record(status="error", http_status=500, error="boom"),
        _record(model="other", status="rejected", http_status=429),
    ]
    with db.session() as session:
        ids = InferenceRecordStore(session).add_many(records)
    assert len(set(ids)) == 4
    with db.session() as session:
        repo = InferenceRecordStore(session)
        assert repo.count() == 4
        assert repo.count(status="ok") == 2
        assert repo.count(model="spikformer", status="error") == 1
        assert repo.count(since=NOW + timedelta(seconds=1)) == 0
        first = repo.get(ids[0])
        assert (first.spikes, first.energy_j, first.batch_size) == (2**40, 1.5e-6, 4)
        assert first.created_at == NOW
        with pytest.raises(ValueError, match="unknown"):
            repo.count(colour="red")
        with pytest.raises(ValueError, match="unknown"):
            repo.add_many([_record(colour="red")])


def test_list_recent_is_newest_first(db):
    with db.session() as session:
        repo = InferenceRecordStore(session)
        repo.add_many([_record(created_at=NOW + timedelta(seconds=i), latency_ms=float(i)) for i in range(5)])
        repo.add_many([_record(model="other", created_at=NOW + timedelta(minutes=1))])
    with db.session() as session:
        repo = InferenceRecordStore(session)
        assert [r.latency_ms for r in repo.list_recent(limit=3, model="spikformer")] == [4.0, 3.0, 2.0]
        assert repo.list_recent(limit=1)[0].model == "other"


def test_window_stats(db):
    inside = [_record(latency_ms=float(ms), created_at=NOW + timedelta(seconds=ms)) for ms in range(1, 101)]
    errors = [_record(status="timeout", http_status=504, latency_ms=5000.0) for _ in range(3)]
    outside = [_record(latency_ms=1e6, created_at=NOW - timedelta(hours=2))]
    with db.session() as session:
        InferenceRecordStore(session).add_many(inside + errors + outside + [_record(model="other")])
    with db.session() as session:
        repo = InferenceRecordStore(session)
        stats = repo.window_stats(NOW, NOW + timedelta(hours=1), model="spikformer")
        assert stats == {"total": 103, "ok": 100, "errors": 3, "p50_latency_ms": 50.0, "p99_latency_ms": 99.0}
        assert repo.window_stats(NOW, NOW + timedelta(hours=1))["total"] == 104
        empty = repo.window_stats(NOW + timedelta(days=1), NOW + timedelta(days=2))
        assert empty == {"total": 0, "ok": 0, "errors": 0, "p50_latency_ms": None, "p99_latency_ms": None}


def test_daily_availability_counts_per_utc_day_and_fills_gaps(db):
    records = [
        _record(created_at=NOW),
        _record(created_at=NOW.replace(hour=0, minute=0, second=0)),  # midnight belongs to today
        _record(created_at=NOW - timedelta(days=2), status="error", http_status=500),
        _record(created_at=NOW - timedelta(days=2)),
        _record(created_at=NOW.replace(hour=23, minute=59) - timedelta(days=2)),
        _record(created_at=NOW - timedelta(days=3)),  # before the window
        _record(created_at=NOW + timedelta(days=1)),  # after it
    ]
    with db.session() as session:
        InferenceRecordStore(session).add_many(records)
    with db.session() as session:
        days = InferenceRecordStore(session).daily_availability(3, now=NOW)
    assert days == [
        {"date": date(2025, 3, 8), "total": 3, "ok": 2},
        {"date": date(2025, 3, 9), "total": 0, "ok": 0},
        {"date": date(2025, 3, 10), "total": 2, "ok": 2},
    ]


def test_model_versions_upsert_get_list_and_status(db):
    with db.session() as session:
        repo = ModelVersionStore(session)
        first = repo.upsert("spikformer", "1", "/models/a", "aa" * 32, "ready", required=True)
        repo.upsert("spikformer", "2", "/models/b", "bb" * 32, "failed", error="sha256 mismatch")
        repo.upsert("driven", "1", "/models/c", "cc" * 32, "unloaded")
    assert first.loaded_at is not None and first.required is True
    with db.session() as session:
        repo = ModelVersionStore(session)
        again = repo.upsert("spikformer", "1", "/models/a2", "dd" * 32, "ready")
        assert again.id == first.id and (again.path, again.sha256, again.required) == ("/models/a2", "dd" * 32, False)
        assert [(m.name, m.version) for m in repo.list()] == [("driven", "1"), ("spikformer", "1"), ("spikformer", "2")]
        assert [m.version for m in repo.list("spikformer")] == ["1", "2"]
        assert repo.get("spikformer", "2").error == "sha256 mismatch"
        assert repo.get("spikformer", "3") is None

        assert repo.set_status("spikformer", "1", "failed", error="out of memory") is True
        assert repo.set_status("spikformer", "9", "ready") is False
        with pytest.raises(ValueError, match="ready, failed, unloaded"):
            repo.set_status("spikformer", "1", "broken")
    with db.session() as session:
        row = ModelVersionStore(session).get("spikformer", "1")
        assert (row.status, row.error) == ("failed", "out of memory")
        assert row.loaded_at == again.loaded_at  # kept: when it was last loaded


def test_settings_round_trip(db):
    with db.session() as session:
        settings = SettingsStore(session)
        assert settings.get("maintenance") is None
        assert settings.get("maintenance", {"enabled": False}) == {"enabled": False}
        settings.set("maintenance", {"enabled": True, "message": "upgrading", "until": None})
        settings.set("threshold", 0.5)
    with db.session() as session:
        settings = SettingsStore(session)
        assert settings.get("maintenance") == {"enabled": True, "message": "upgrading", "until": None}
        settings.set("maintenance", False)
    with db.session() as session:
        settings = SettingsStore(session)
        assert settings.get("maintenance") is False
        assert settings.all() == {"maintenance": False, "threshold": 0.5}
