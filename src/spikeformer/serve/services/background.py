"""The running service's background work: writing inference records, mirroring the model versions into the database,
re-reading maintenance mode and the job counts, and applying thermal protection.

``create_app``'s lifespan starts these; none of them answers a request.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from spikeformer.ops.database import Maintenance, read_maintenance
from spikeformer.serve import metrics
from spikeformer.serve.records import RecordSpool, spool_key
from spikeformer.serve.state import ServiceState
from spikeformer.settings import Settings
from spikeformer.store import (
    Database,
    InferenceRecordStore,
    JobStore,
    ModelVersionStore,
    StoreError,
    connection_stats,
    long_running_queries,
)

__all__ = [
    "apply_retention",
    "expire_records",
    "poll_settings",
    "record_spool",
    "record_writer",
    "sync_model_versions",
    "watch_temperature",
]

log = logging.getLogger("spikeformer.serve")


def record_writer(db: Database) -> Callable[[list[dict]], None]:
    """The write function of the record buffer: one session per batch of inference records.

    Idempotent: a record whose id is already stored is skipped (a spool replayed after a crash, or a batch retried
    after a commit whose answer was lost, presents records again).
    """

    def write(records: list[dict]) -> None:
        with db.session() as s:
            InferenceRecordStore(s).add_many(records, skip_existing=True)

    return write


def record_spool(settings: Settings, db: Database) -> RecordSpool | None:
    """The crash spool of the inference records bound for ``db`` (None when ``record_spool_max_bytes`` is 0)."""
    if settings.record_spool_max_bytes <= 0 or settings.record_spool_dir is None:
        return None
    folder = settings.record_spool_dir.expanduser().resolve()
    return RecordSpool(folder, spool_key(db.url), settings.record_spool_max_bytes)


def sync_model_versions(state: ServiceState) -> None:
    """Best effort: mirror the repository's versions into the model_versions table."""
    try:
        with state.db.session() as s:
            repo = ModelVersionStore(s)
            for mv in state.repo.all_versions():
                repo.upsert(
                    mv.name,
                    mv.version,
                    str(mv.path),
                    mv.manifest.sha256 if mv.manifest else "",
                    "ready" if mv.ready else mv.status,
                    error=mv.error,
                    required=mv.name in state.required_models,
                )
    except StoreError as e:
        log.warning("could not record model versions in the database: %s", e)


def _read_settings(state: ServiceState) -> tuple[Maintenance | None, dict[str, int]]:
    """Maintenance mode and the job counts; on PostgreSQL also the connection and query gauges."""
    m = read_maintenance(state.db)
    with state.db.session() as s:
        counts = JobStore(s).count_by_status()
    if state.db.is_postgresql:
        stats = connection_stats(state.db)
        metrics.DB_CONNECTIONS_IN_USE.set(stats["in_use"])
        metrics.DB_CONNECTIONS_MAX.set(stats["max_connections"])
        running = long_running_queries(state.db, 0)
        metrics.DB_LONGEST_QUERY.set(max((q["seconds"] for q in running), default=0))
    return m, counts


async def poll_settings(state: ServiceState) -> None:
    """Re-read maintenance mode and job counts so changes made by the CLI reach every replica (runs until cancelled)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            m, counts = await loop.run_in_executor(None, _read_settings, state)
            if m is not None:
                state.inference.maintenance = m
            for st in ("queued", "running", "done", "failed"):
                metrics.JOBS.labels(st).set(counts.get(st, 0))
        except StoreError:
            pass  # the record writer reports the outage; keep the last known state
        metrics.MAINTENANCE.set(1 if state.inference.maintenance.enabled else 0)
        await asyncio.sleep(state.settings.settings_poll_interval_s)


async def watch_temperature(state: ServiceState) -> None:
    """Read device temperatures off the event loop and apply thermal protection's limits (runs until cancelled)."""
    loop = asyncio.get_running_loop()
    while True:
        await loop.run_in_executor(None, state.thermal.update)
        state.apply_thermal_limits()
        await asyncio.sleep(state.settings.thermal_poll_interval_s)


def apply_retention(db: Database, retention_days: int, batch_size: int, max_batches: int, now: datetime) -> int:
    """One retention run: expire raw inference records, roll up the completed days, refresh the storage gauges.

    Whole UTC days older than `retention_days` (counted back from the day of `now`) expire, oldest first; each day's
    aggregates are rolled up and sealed in the transaction of its first deletion, then at most `max_batches`
    transactions of at most `batch_size` records each delete raw records (a bounded run: the rest waits for the
    next one). Then the completed days since the last rolled-up one get their aggregates. The daily aggregates are
    never deleted by the service.

    Returns:
        The number of raw records deleted.
    """
    keep_from = now.astimezone(UTC).date() - timedelta(days=retention_days) if retention_days > 0 else None
    deleted = 0
    if keep_from is not None:
        for _ in range(max_batches):
            with db.session() as s:
                n = InferenceRecordStore(s).delete_expired(keep_from, batch_size)
            if n == 0:
                break
            deleted += n
            metrics.RECORDS_DELETED.inc(n)
    with db.session() as s:
        store = InferenceRecordStore(s)
        store.rollup_pending(now, not_before=keep_from)
        oldest = store.oldest_created_at()
        size = store.database_bytes()
    metrics.RECORDS_RETENTION.set(retention_days * 86400)
    metrics.RECORDS_OLDEST_AGE.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0)
    metrics.DB_SIZE.set(size)
    database = db.engine.url.database if db.is_sqlite else None
    if database and not database.startswith(":memory:") and not database.startswith("file:"):
        usage = shutil.disk_usage(Path(database).expanduser().resolve().parent)
        metrics.DB_DISK_FREE.set(usage.free)
        metrics.DB_DISK_SIZE.set(usage.total)
    if deleted:
        log.info("retention: deleted %d inference record(s) older than %s", deleted, keep_from)
    return deleted


async def expire_records(state: ServiceState) -> None:
    """Run `apply_retention` off the event loop every `record_retention_interval_s` (runs until cancelled)."""
    settings = state.settings
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(
                None,
                apply_retention,
                state.db,
                settings.record_retention_days,
                settings.record_retention_batch,
                settings.record_retention_max_batches,
                datetime.now(UTC),
            )
        except (StoreError, SQLAlchemyError) as e:
            log.warning("retention run failed, retried in %.0f s: %s", settings.record_retention_interval_s, e)
        await asyncio.sleep(settings.record_retention_interval_s)
