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


# -- retention and daily aggregates -------------------------------------------------------------------------------


def _day(n: int, hour: int = 12) -> datetime:
    """`n` days before NOW's day, at `hour` UTC."""
    return (NOW - timedelta(days=n)).replace(hour=hour)


@pytest.mark.security
def test_expired_records_are_rolled_up_then_deleted_in_bounded_batches(db):
    old = [_record(created_at=_day(40, h), latency_ms=float(h + 1)) for h in range(5)]
    old += [_record(created_at=_day(40, 23), status="timeout", http_status=504, latency_ms=20000.0)]
    kept = [_record(created_at=_day(29, 0)), _record(created_at=_day(1))]
    with db.session() as session:
        InferenceRecordStore(session).add_many(old + kept)
    keep_from = (NOW - timedelta(days=30)).date()
    deleted = []
    for _ in range(5):
        with db.session() as session:
            deleted.append(InferenceRecordStore(session).delete_expired(keep_from, batch_size=4))
    assert deleted == [4, 2, 0, 0, 0]  # bounded: at most 4 per transaction, only the expired day
    with db.session() as session:
        store = InferenceRecordStore(session)
        assert store.count() == 2 and store.oldest_created_at() == _day(29, 0)
        assert store.is_sealed(_day(40).date()) and not store.is_sealed(_day(29).date())
        assert store.raw_complete_since() == datetime.combine(_day(39).date(), datetime.min.time(), tzinfo=UTC)
        # the aggregates were written from the complete day before its first row went
        stats = store.daily_stats(_day(40).date(), _day(40).date())
        assert (stats["total"], stats["ok"], stats["errors"]) == (6, 5, 1)
        assert stats["by_status"] == {"ok": 5, "timeout": 1}
        assert (stats["p50_latency_ms"], stats["p99_latency_ms"]) == (5.0, 5.0)  # 1..5 ms: bucket bounds 2.5 / 5
        # a sealed day is final: rolling it up again from what is left changes nothing
        assert store.rollup_day(_day(40).date()) == 0
        assert store.daily_stats(_day(40).date(), _day(40).date())["total"] == 6


@pytest.mark.security
def test_daily_availability_outlives_the_raw_records(db):
    records = [_record(created_at=_day(60))] * 3 + [_record(created_at=_day(60), status="error", http_status=500)]
    records += [_record(created_at=_day(2))] * 2 + [_record(created_at=NOW)]
    with db.session() as session:
        InferenceRecordStore(session).add_many([dict(r) for r in records])
    with db.session() as session:
        before = InferenceRecordStore(session).daily_availability(90, now=NOW)
    with db.session() as session:
        assert InferenceRecordStore(session).delete_expired((NOW - timedelta(days=30)).date(), 1000) == 4
    with db.session() as session:
        store = InferenceRecordStore(session)
        assert store.rollup_pending(NOW, not_before=(NOW - timedelta(days=30)).date()) == [
            _day(2).date(),
            _day(1).date(),
        ]
        after = store.daily_availability(90, now=NOW)
    assert after == before
    by_date = {d["date"]: (d["total"], d["ok"]) for d in after}
    assert by_date[_day(60).date()] == (4, 3) and by_date[_day(2).date()] == (2, 2) and by_date[NOW.date()] == (1, 1)


def test_rollup_pending_rolls_up_the_latest_day_again_and_daily_stats_filter_by_model(db):
    with db.session() as session:
        InferenceRecordStore(session).add_many([_record(created_at=_day(1)), _record(created_at=_day(3))])
    just_after_midnight = NOW.replace(hour=0, minute=30)
    with db.session() as session:
        assert InferenceRecordStore(session).rollup_pending(just_after_midnight) == [_day(d).date() for d in (3, 2, 1)]
    with db.session() as session:  # a record written late (after an outage) for the latest rolled-up day
        InferenceRecordStore(session).add_many([_record(created_at=_day(1), model="other", latency_ms=30000.0)])
    with db.session() as session:
        store = InferenceRecordStore(session)
        assert store.rollup_pending(NOW) == [_day(1).date()]  # rolled up again: it was done right after midnight
        assert store.rollup_pending(NOW) == []  # now settled (done more than ROLLUP_SETTLE after the day ended)
        assert store.daily_stats(_day(1).date(), _day(1).date())["total"] == 2
        other = store.daily_stats(_day(3).date(), _day(1).date(), model="other")
        assert (other["total"], other["p99_latency_ms"]) == (1, 30000.0)  # above the last bound: the largest
        assert store.database_bytes() > 0
