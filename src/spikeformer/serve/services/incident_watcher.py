"""The incident gauges of ``/metrics``, and the background task that keeps them current.

``spikeformer_incidents_open``, ``spikeformer_incident_ack_overdue`` and ``spikeformer_incident_update_overdue``
(per SEV) are counted from the database by ``IncidentService.severity_metrics``. The incident routes refresh them
after each change; :func:`watch_incidents` recomputes them every ``interval_s`` as well, because a target lapses
without any change (an incident nobody acknowledged becomes overdue by the clock alone).
"""

from __future__ import annotations

import asyncio
import logging

from spikeformer.ops.incidents import IncidentService
from spikeformer.serve import metrics
from spikeformer.serve.state import ServiceState
from spikeformer.store import StoreError

__all__ = ["INCIDENT_METRICS_INTERVAL_S", "update_incident_metrics", "watch_incidents"]

log = logging.getLogger("spikeformer.serve.incidents")

INCIDENT_METRICS_INTERVAL_S = 15.0  # how often the overdue gauges are recomputed while nothing changes


def update_incident_metrics(state: ServiceState) -> None:
    """Set ``spikeformer_incidents_open``, ``..._ack_overdue`` and ``..._update_overdue`` per SEV from the database.

    Raises:
        StoreError: the database is unavailable.
    """
    counts = IncidentService(state.db).severity_metrics()
    for sev, row in counts.items():
        metrics.INCIDENTS_OPEN.labels(sev).set(row["open"])
        metrics.INCIDENT_ACK_OVERDUE.labels(sev).set(row["ack_overdue"])
        metrics.INCIDENT_UPDATE_OVERDUE.labels(sev).set(row["update_overdue"])


async def watch_incidents(state: ServiceState, interval_s: float = INCIDENT_METRICS_INTERVAL_S) -> None:
    """Background task: recompute the incident gauges every ``interval_s`` (targets lapse without any change).

    Runs until cancelled; the counting runs off the event loop, and a failure is logged, never raised.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, update_incident_metrics, state)
        except StoreError as e:
            log.debug("incident metrics not updated: %s", e)  # the record writer reports database outages
        except Exception:  # noqa: BLE001 - a background task must keep running
            log.exception("incident metrics not updated")
        await asyncio.sleep(interval_s)
