"""Store of batch jobs: submission, claiming with a lease, heartbeats and exactly-once results.

A worker owns a job while the job is `running` with the worker's id. A lease that is not renewed (`heartbeat`)
expires, and any worker may then claim the job again (the first worker crashed or hung); the first worker's later
`heartbeat`, `complete` or `fail` finds another id on the row and is refused. Every transition is one conditional
UPDATE, so it is atomic without application locks. Lease times come from the database clock on PostgreSQL (workers
on several machines agree on it) and from this machine's clock on SQLite (one machine).

A job records the API key that queued it (`api_key_id`, NULL for keyless submissions), so that the jobs still
pending can be counted per key (`pending_counts`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from spikeformer._deprecation import moved_names
from spikeformer.store._sql import dialect_name
from spikeformer.store._types import UTCDateTime, utcnow
from spikeformer.store.tables import JOB_STATUSES, Job

__all__ = ["PENDING_STATUSES", "JobStore"]

_FETCH = {"synchronize_session": "fetch"}
#: Statuses of jobs not finished yet.
PENDING_STATUSES = ("queued", "running")


class JobStore:
    """SQL for `jobs`; the caller's session owns the transaction (commit it soon after `claim`)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._postgresql = dialect_name(session) == "postgresql"

    # -- clock ------------------------------------------------------------------------------------------------

    def _clock(self, lease_seconds: float = 0.0) -> tuple[ColumnElement[datetime], ColumnElement[datetime]]:
        """(now, now + lease) as SQL expressions."""
        if lease_seconds < 0:
            raise ValueError(f"lease_seconds must not be negative, got {lease_seconds}")
        if self._postgresql:
            now: ColumnElement[datetime] = func.clock_timestamp(type_=UTCDateTime())
            return now, now + literal(timedelta(seconds=lease_seconds), Interval())
        current = utcnow()
        return literal(current, UTCDateTime()), literal(current + timedelta(seconds=lease_seconds), UTCDateTime())

    @staticmethod
    def _owned(job_id: str, worker_id: str) -> tuple[ColumnElement[bool], ...]:
        return Job.id == job_id, Job.status == "running", Job.worker_id == worker_id

    # -- commands ---------------------------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        payload: dict[str, Any],
        total: int,
        version: str | None = None,
        api_key_id: int | None = None,
    ) -> Job:
        """Queue a job.

        Args:
            model: model name.
            payload: the work (images, a data-set slice), stored as JSON and opaque to the store.
            total: number of items, the scale of `progress`.
            version: model version, or None for the default one.
            api_key_id: id of the API key that queued the job; None for a keyless submission.
        """
        if total < 0:
            raise ValueError(f"total must not be negative, got {total}")
        job = Job(
            model=model,
            version=version,
            status="queued",
            payload=json.dumps(payload),
            total=total,
            progress=0,
            attempts=0,
            api_key_id=api_key_id,
            created_at=utcnow(),
        )
        self._session.add(job)
        self._session.flush()
        return job

    def claim(self, worker_id: str, lease_seconds: float) -> Job | None:
        """Atomically take the oldest job that is `queued`, or `running` with an expired lease; None if none is.

        The job becomes `running` under `worker_id` with a lease of `lease_seconds`, and `attempts` grows by one.
        PostgreSQL: `UPDATE ... WHERE id = (SELECT id ... FOR UPDATE SKIP LOCKED LIMIT 1)`, so concurrent claimers
        skip each other's rows instead of waiting. SQLite: the same UPDATE runs under SQLite's single write lock,
        and the claim condition is checked again on the row being updated.

        Args:
            worker_id: unique per worker process (host, pid and a random part), not per machine.
            lease_seconds: how long the job stays ours without a `heartbeat`.
        """
        now, expires = self._clock(lease_seconds)
        claimable = or_(Job.status == "queued", and_(Job.status == "running", Job.lease_expires_at < now))
        candidate = (
            select(Job.id)
            .where(claimable)
            .order_by(Job.created_at, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)  # dropped by the SQLite compiler, where the write lock serialises
            .scalar_subquery()
        )
        stmt = (
            update(Job)
            .where(Job.id == candidate, claimable)
            .values(
                status="running",
                worker_id=worker_id,
                attempts=Job.attempts + 1,
                lease_expires_at=expires,
                started_at=now,
            )
            .returning(Job)
        )
        options = {"synchronize_session": False, "populate_existing": True}
        return self._session.scalars(stmt, execution_options=options).one_or_none()

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float, progress: int | None = None) -> bool:
        """Renew the lease (and record `progress`); False if the job is no longer running under `worker_id`.

        A lease that expired but was not claimed by another worker is still ours and is renewed.
        """
        _, expires = self._clock(lease_seconds)
        values: dict[str, Any] = {"lease_expires_at": expires}
        if progress is not None:
            values["progress"] = progress
        stmt = update(Job).where(*self._owned(job_id, worker_id)).values(**values)
        return self._session.execute(stmt, execution_options=_FETCH).rowcount == 1

    def complete(self, job_id: str, worker_id: str, result: dict[str, Any]) -> bool:
        """Write the result and mark the job `done`, once: only while it runs under `worker_id`.

        Returns False (and writes nothing) when the job is not running, or another worker has claimed it since.
        """
        now, _ = self._clock()
        stmt = (
            update(Job)
            .where(*self._owned(job_id, worker_id))
            .values(
                status="done",
                result=json.dumps(result),
                progress=Job.total,
                error=None,
                lease_expires_at=None,
                finished_at=now,
            )
        )
        return self._session.execute(stmt, execution_options=_FETCH).rowcount == 1

    def fail(self, job_id: str, worker_id: str, error: str) -> bool:
        """Mark the job `failed` with `error`, under the same condition as `complete`."""
        now, _ = self._clock()
        stmt = (
            update(Job)
            .where(*self._owned(job_id, worker_id))
            .values(status="failed", error=error, lease_expires_at=None, finished_at=now)
        )
        return self._session.execute(stmt, execution_options=_FETCH).rowcount == 1

    # -- queries ----------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job as the database has it now, or None."""
        return self._session.get(Job, job_id, populate_existing=True)

    def list_recent(self, limit: int = 100, status: str | None = None) -> Sequence[Job]:
        """The newest `limit` jobs (with `status` when given), newest first."""
        stmt = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
        if status is not None:
            stmt = stmt.where(Job.status == status)
        return self._session.scalars(stmt).all()

    def pending_counts(self, api_key_id: int | None) -> tuple[int, int]:
        """`(pending jobs in all, pending jobs of api_key_id)`, in one query; pending means queued or running.

        Args:
            api_key_id: the key whose jobs are counted; None counts the keyless jobs (one shared bucket).
        """
        mine = Job.api_key_id.is_(None) if api_key_id is None else Job.api_key_id == api_key_id
        stmt = select(func.count(), func.coalesce(func.sum(case((mine, 1), else_=0)), 0)).where(
            Job.status.in_(PENDING_STATUSES)
        )
        total, of_key = self._session.execute(stmt).one()
        return int(total), int(of_key)

    def count_by_status(self) -> dict[str, int]:
        """Number of jobs per status, every status present (zero when none)."""
        counts = dict.fromkeys(JOB_STATUSES, 0)
        stmt = select(Job.status, func.count()).group_by(Job.status)
        for status, count in self._session.execute(stmt):
            counts[status] = int(count)
        return counts


# the SQL classes are stores ("repository" names the model folder); the old name warns
__getattr__ = moved_names(__name__, {"JobRepository": "spikeformer.store.jobs:JobStore"})
