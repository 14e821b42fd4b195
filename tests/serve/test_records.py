"""The inference records' crash spool: journaled before the answer, replayed once, truncated, capped."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest

from spikeformer.serve import metrics
from spikeformer.serve.records import RecordBuffer, RecordSpool, spool_key
from spikeformer.serve.services.background import record_writer
from spikeformer.settings import Settings
from spikeformer.store import Database, InferenceRecordStore


@pytest.fixture
def db(sqlite_db):
    return sqlite_db


def _record() -> dict:
    return {
        "id": str(uuid.uuid4()),
        "model": "tiny",
        "version": "1",
        "backend": "cpu",
        "batch_size": 1,
        "status": "ok",
        "http_status": 200,
        "latency_ms": 1.5,
        "created_at": dt.datetime.now(dt.UTC),
    }


def _buffer(db, folder, max_bytes=1 << 20, capacity=1000) -> RecordBuffer:
    spool = RecordSpool(folder, spool_key(db.url), max_bytes)
    return RecordBuffer(record_writer(db), capacity, interval_s=3600, spool=spool)


def _crash(buffer: RecordBuffer) -> None:
    """What SIGKILL leaves: the spool files as written, the lock released, nothing flushed."""
    buffer.spool.close(remove=False)


def _stored(db) -> list[str]:
    with db.session() as s:
        return [r.id for r in InferenceRecordStore(s).list_recent(10_000)]


def _spooled_lines(folder) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in folder.glob("*.jsonl"))


@pytest.mark.security
def test_a_record_is_in_the_spool_when_add_returns_and_a_restart_replays_it_once(db, tmp_path):
    folder = tmp_path / "spool"
    first = _buffer(db, folder)
    first.start()
    records = [_record() for _ in range(30)]
    for r in records[:10]:
        first.add(r)
    assert first.flush() == 10  # stored, but their lines may still be in the spool when the process dies
    for r in records[10:]:
        first.add(r)
    assert _spooled_lines(folder) >= 20  # on disk (page cache) before anything answers the client
    _crash(first)

    second = _buffer(db, folder)
    before = metrics.RECORDS_REPLAYED._value.get()
    second.start()
    try:
        stored = _stored(db)
        assert sorted(stored) == sorted(r["id"] for r in records)  # every record once: no loss, no duplicate
        assert metrics.RECORDS_REPLAYED._value.get() - before == second.replayed >= 20
        assert not [p for p in folder.iterdir() if first.spool.owner in p.name]  # the dead spool is gone
        third = _buffer(db, folder)  # a second restart finds nothing left to replay
        third.start()
        assert third.replayed == 0
        third.stop(1)
    finally:
        second.stop(1)
    assert len(_stored(db)) == 30


@pytest.mark.security
def test_the_spool_is_truncated_once_its_records_are_stored_and_removed_on_a_clean_stop(db, tmp_path):
    folder = tmp_path / "spool"
    buffer = _buffer(db, folder, max_bytes=1 << 20)  # 64 KiB segments: a few hundred records rotate
    buffer.start()
    for _ in range(600):
        buffer.add(_record())
    assert len(list(folder.glob("*.jsonl"))) > 1
    assert buffer.flush() == 600
    assert buffer.spool.bytes == 0 and _spooled_lines(folder) == 0
    buffer.add(_record())
    assert _spooled_lines(folder) == 1
    buffer.stop(1)
    assert list(folder.iterdir()) == []
    assert len(_stored(db)) == 601


@pytest.mark.security
def test_beyond_the_spool_cap_records_are_still_buffered_and_the_loss_is_counted_and_logged(db, tmp_path, caplog):
    folder = tmp_path / "spool"
    buffer = _buffer(db, folder, max_bytes=1000)  # room for a few records
    buffer.start()
    full = metrics.RECORDS_NOT_SPOOLED.labels("full")
    before = full._value.get()
    with caplog.at_level(logging.ERROR, "spikeformer.serve.records"):
        for _ in range(20):
            buffer.add(_record())
    assert len(buffer) == 20  # every request is still answered and recorded in memory
    assert 0 < buffer.not_spooled < 20
    assert full._value.get() - before == buffer.not_spooled
    assert "spool is at its cap of 1000 bytes" in caplog.text and "lost if the process crashed" in caplog.text
    assert buffer.flush() == 20
    buffer.stop(1)
    assert len(_stored(db)) == 20


@pytest.mark.security
def test_replay_skips_a_torn_line_another_database_s_spool_and_a_live_process_s_spool(db, tmp_path, caplog):
    folder = tmp_path / "spool"
    dead = _buffer(db, folder)
    dead.start()
    kept = _record()
    dead.add(kept)
    torn = dead.spool._current.path
    _crash(dead)
    with torn.open("ab") as f:
        f.write(b'{"id": "cut-by-a-power-loss", "mod')  # a machine crash can tear the last line
    other_db = RecordSpool(folder, spool_key("sqlite:///elsewhere.db"), 1 << 20)
    other_db.open()
    other_db.append(1, _record())
    other_db.close(remove=False)
    live = _buffer(db, folder)
    live.start()
    live_record = _record()
    live.add(live_record)  # its process is alive: never replayed by another one

    restarted = _buffer(db, folder)
    with caplog.at_level(logging.WARNING, "spikeformer.serve.records"):
        restarted.start()
    try:
        assert _stored(db) == [kept["id"]]
        assert "skipped 1 unreadable lines" in caplog.text
        assert list(folder.glob(f"records-{other_db.key}-*.jsonl"))  # left for its own database
        assert list(folder.glob(f"*{live.spool.owner}*.jsonl"))
    finally:
        live.stop(1)
        restarted.stop(1)
    assert sorted(_stored(db)) == sorted([kept["id"], live_record["id"]])


@pytest.mark.security
def test_replay_waits_for_the_database_and_keeps_the_spool_meanwhile(db, tmp_path):
    folder = tmp_path / "spool"
    dead = _buffer(db, folder)
    dead.start()
    record = _record()
    dead.add(record)
    _crash(dead)
    calls = []

    def down(records):
        calls.append(len(records))
        raise ConnectionError("database down")

    spool = RecordSpool(folder, spool_key(db.url), 1 << 20)
    restarted = RecordBuffer(down, 100, interval_s=3600, spool=spool)
    restarted.start()
    assert calls == [1] and restarted.replayed == 0 and not restarted.healthy
    assert list(folder.glob(f"*{dead.spool.owner}*.jsonl"))  # kept for the next attempt
    restarted._write = record_writer(db)
    assert restarted.replay() == 1
    assert _stored(db) == [record["id"]]
    restarted.stop(1)


def test_the_spool_folder_defaults_under_home_and_a_zero_cap_turns_it_off(tmp_path):
    from spikeformer.serve.services.background import record_spool

    settings = Settings(home=tmp_path)
    assert settings.record_spool_dir == tmp_path / "spool"
    assert Settings(home=tmp_path, record_spool_dir="  ").record_spool_dir == tmp_path / "spool"
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert record_spool(settings, db).folder == (tmp_path / "spool").resolve()
    assert record_spool(Settings(home=tmp_path, record_spool_max_bytes=0), db) is None
    db.dispose()
