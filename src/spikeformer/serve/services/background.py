"""The running service's background work: writing inference records, mirroring the model versions into the database,
re-reading maintenance mode and the job counts, and applying thermal protection.

``create_app``'s lifespan starts these; none of them answers a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from spikeformer.ops.database import Maintenance, read_maintenance
from spikeformer.serve import metrics
from spikeformer.serve.state import ServiceState
from spikeformer.store import (
    Database,
    InferenceRecordStore,
    JobStore,
    ModelVersionStore,
    StoreError,
    connection_stats,
    long_running_queries,
)

__all__ = ["poll_settings", "record_writer", "sync_model_versions", "watch_temperature"]

log = logging.getLogger("spikeformer.serve")


def record_writer(db: Database) -> Callable[[list[dict]], None]:
    """The write function of the record buffer: one session per batch of inference records."""

    def write(records: list[dict]) -> None:
        with db.session() as s:
            InferenceRecordStore(s).add_many(records)

    return write


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
