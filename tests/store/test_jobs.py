"""Job queue: claims are atomic and exclusive, leases expire, and a result is written exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from spikeformer.store import Database, JobStore


def _submit(db: Database, count: int = 1) -> list[str]:
    with db.session() as session:
        jobs = JobStore(session)
        return [jobs.submit("spikformer", {"images": [i]}, total=4, version="1").id for i in range(count)]


def _claim(db: Database, worker: str, lease: float = 30.0):
    with db.session() as session:
        return JobStore(session).claim(worker, lease)


def test_submit_claim_complete(db):
    (job_id,) = _submit(db)
    with db.session() as session:
        job = JobStore(session).get(job_id)
        assert (job.status, job.attempts, job.progress, job.worker_id) == ("queued", 0, 0, None)
        assert job.payload_data == {"images": [0]}

    job = _claim(db, "w1", lease=30)
    assert job.id == job_id
    assert (job.status, job.worker_id, job.attempts) == ("running", "w1", 1)
    assert job.started_at is not None and job.lease_expires_at > job.started_at
    assert _claim(db, "w2") is None  # nothing else is claimable: the lease is live

    with db.session() as session:
        assert JobStore(session).complete(job_id, "w1", {"top1": [3]}) is True
    with db.session() as session:
        job = JobStore(session).get(job_id)
        assert (job.status, job.progress, job.lease_expires_at) == ("done", 4, None)
        assert job.result_data == {"top1": [3]} and job.finished_at is not None
        assert JobStore(session).count_by_status() == {"queued": 0, "running": 0, "done": 1, "failed": 0}


def test_jobs_are_claimed_oldest_first(db):
    ids = _submit(db, 3)
    assert [_claim(db, "w").id for _ in ids] == ids


@pytest.mark.timeout(60)
def test_two_concurrent_claimers_never_take_the_same_job(db):
    ids = _submit(db, 5)
    barrier = threading.Barrier(2)
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        try:
            barrier.wait()
            while True:
                with db.session() as session:  # each claim in its own session and transaction
                    job = JobStore(session).claim(worker, lease_seconds=30)
                    if job is None:
                        return
                    claimed[worker].append(job.id)
                    time.sleep(0.1)  # hold the claim's row lock (PostgreSQL) or write lock (SQLite) a while
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(50)
    assert errors == []
    taken = claimed["a"] + claimed["b"]
    assert sorted(taken) == sorted(ids)  # every job once, none twice
    with db.session() as session:
        jobs = JobStore(session)
        for worker, job_ids in claimed.items():
            for job_id in job_ids:
                job = jobs.get(job_id)
                assert (job.status, job.worker_id, job.attempts) == ("running", worker, 1)
    if db.is_postgresql:  # SKIP LOCKED: the second claimer took other rows while the first held its lock
        assert claimed["a"] and claimed["b"]


def test_postgresql_claim_skips_a_locked_row_instead_of_waiting(pg_db):
    first, second = _submit(pg_db, 2)
    with pg_db.session() as holding:
        assert JobStore(holding).claim("a", 30).id == first  # row locked until this block ends
        started = time.monotonic()
        assert _claim(pg_db, "b").id == second
        assert _claim(pg_db, "c") is None
        assert time.monotonic() - started < 2


def test_expired_lease_is_reclaimed_and_only_the_new_owner_writes_the_result(db):
    (job_id,) = _submit(db)
    assert _claim(db, "w1", lease=0.2).id == job_id
    time.sleep(0.4)  # w1 "crashed": no heartbeat
    job = _claim(db, "w2", lease=30)
    assert job is not None and job.id == job_id
    assert (job.worker_id, job.attempts) == ("w2", 2)

    with db.session() as session:
        jobs = JobStore(session)
        assert jobs.heartbeat(job_id, "w1", 30) is False
        assert jobs.complete(job_id, "w1", {"by": "w1"}) is False
        assert jobs.fail(job_id, "w1", "late") is False
        assert jobs.complete(job_id, "w2", {"by": "w2"}) is True
        assert jobs.complete(job_id, "w2", {"by": "w2 again"}) is False  # exactly once
    with db.session() as session:
        job = JobStore(session).get(job_id)
        assert (job.status, job.worker_id, job.error) == ("done", "w2", None)
        assert job.result_data == {"by": "w2"}


def test_complete_by_another_worker_is_refused(db):
    (job_id,) = _submit(db)
    _claim(db, "owner")
    with db.session() as session:
        assert JobStore(session).complete(job_id, "intruder", {"x": 1}) is False
    with db.session() as session:
        job = JobStore(session).get(job_id)
        assert (job.status, job.result, job.worker_id) == ("running", None, "owner")


def test_queued_job_cannot_be_completed(db):
    (job_id,) = _submit(db)
    with db.session() as session:
        assert JobStore(session).complete(job_id, "w1", {}) is False
        assert JobStore(session).get(job_id).status == "queued"


def test_heartbeat_renews_the_lease_and_records_progress(db):
    (job_id,) = _submit(db)
    _claim(db, "w1", lease=0.3)
    with db.session() as session:
        assert JobStore(session).heartbeat(job_id, "w1", lease_seconds=30, progress=2) is True
    time.sleep(0.4)
    assert _claim(db, "w2") is None  # the renewed lease holds
    with db.session() as session:
        job = JobStore(session).get(job_id)
        assert (job.progress, job.worker_id, job.attempts) == (2, "w1", 1)


def test_fail_records_the_error(db):
    first, second = _submit(db, 2)
    _claim(db, "w1")
    with db.session() as session:
        assert JobStore(session).fail(first, "w1", "CUDA out of memory") is True
    with db.session() as session:
        jobs = JobStore(session)
        job = jobs.get(first)
        assert (job.status, job.error, job.result) == ("failed", "CUDA out of memory", None)
        assert job.finished_at is not None
        assert jobs.count_by_status() == {"queued": 1, "running": 0, "done": 0, "failed": 1}
        assert [j.id for j in jobs.list_recent(status="queued")] == [second]


@pytest.mark.security
def test_pending_counts_per_key_and_the_keyless_bucket(db):
    # The jobs table records who queued a job, so the service can cap pending jobs per API key.
    with db.session() as session:
        jobs = JobStore(session)
        ids = [jobs.submit("m", {}, total=1, api_key_id=key).id for key in (7, 7, 8, None, None)]
    _claim(db, "w1")  # the oldest (key 7) is running: still pending
    with db.session() as session:
        jobs = JobStore(session)
        assert jobs.get(ids[0]).api_key_id == 7 and jobs.get(ids[3]).api_key_id is None
        assert jobs.pending_counts(7) == (5, 2)
        assert jobs.pending_counts(8) == (5, 1)
        assert jobs.pending_counts(None) == (5, 2)  # keyless submissions share one bucket
        assert jobs.pending_counts(9) == (5, 0)
        assert jobs.complete(ids[0], "w1", {}) is True
    with db.session() as session:  # finished jobs no longer count
        assert JobStore(session).pending_counts(7) == (4, 1)
