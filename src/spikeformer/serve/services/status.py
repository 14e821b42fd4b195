"""The public status: the document behind ``GET /status.json`` and ``GET /status``, gathered from the live health
checks and the database. Nothing internal is shown: no keys, hosts, paths, error messages, internal timeline entries,
summaries or commanders (docs/status-page.md); the HTML page is ``services/status_page.py``.

Component states, best to worst: ``operational``, ``maintenance``, ``degraded``, ``partial_outage``,
``major_outage``; the page's overall state is the worst component's.

- Inference API: ``maintenance`` in maintenance mode; ``major_outage`` when no required model is ready, or when
  inference needs an API key and the database (which checks keys) is unavailable; ``partial_outage`` when some
  required model is not ready; ``degraded`` under thermal protection; else ``operational``.
- Model: ``operational`` while a version serves; ``maintenance`` when an operator unloaded every version;
  else ``major_outage``.
- Backend (``spikeformer_backend_up``): ``operational`` at 1, else ``major_outage``.
- Database: ``major_outage`` when this page's queries fail; ``degraded`` while record writes have not yet
  recovered (records buffered); else ``operational``.
- Batch workers (jobs table): ``operational`` when no job has waited longer than ``JOB_WAIT_LIMIT`` (5 min);
  ``degraded`` when one has but a job finished within ``JOB_RECENT`` (15 min: workers run, behind);
  ``major_outage`` when one has and none finished (no worker takes jobs) or the database is unavailable.

Day bars: ``ok / total`` of the day's inference requests (UTC days), read from the daily aggregates, which outlive
the raw records' retention (today, and yesterday until it is rolled up, from the raw records); ``operational`` from
99.9 %, ``degraded`` from 99 %, else ``major_outage``; ``no_data`` for a day without requests. The database-derived
part is cached for ``CACHE_TTL_S`` seconds, so a busy public page costs at most one set of queries per interval and
replica.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from spikeformer.ops.incidents import format_duration, redact_keys
from spikeformer.ops.severity import get_severity
from spikeformer.serve import metrics
from spikeformer.serve.state import ServiceState
from spikeformer.store import (
    ACTIVE_STATUSES,
    Database,
    IncidentStore,
    InferenceRecordStore,
    JobStore,
    StoreError,
)

__all__ = [
    "AVAILABILITY_DEGRADED",
    "AVAILABILITY_OK",
    "CACHE_TTL_S",
    "HISTORY_DAYS",
    "JOB_RECENT",
    "JOB_WAIT_LIMIT",
    "STATES",
    "build_status",
    "current_status",
    "day_state",
    "workers_state",
]

HISTORY_DAYS = 90
AVAILABILITY_OK = 0.999
AVAILABILITY_DEGRADED = 0.99
JOB_WAIT_LIMIT = timedelta(minutes=5)
JOB_RECENT = timedelta(minutes=15)
CACHE_TTL_S = 5.0
_JOBS_SCANNED = 1000  # queued jobs looked at for the oldest wait (the queue is claimed oldest first)
_INCIDENTS_SCANNED = 1000
# Best to worst, with the words the page uses.
STATES: dict[str, str] = {
    "operational": "Operational",
    "maintenance": "Under maintenance",
    "degraded": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
}
_OVERALL = {
    "operational": "All systems operational",
    "maintenance": "Scheduled maintenance in progress",
    "degraded": "Some systems are degraded",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
}
_RANK = {s: i for i, s in enumerate(STATES)}


def day_state(total: int, ok: int) -> str:
    """The state of a day bar: `no_data`, `operational` (>= 99.9 % ok), `degraded` (>= 99 %) or `major_outage`."""
    if total <= 0:
        return "no_data"
    ratio = ok / total
    if ratio >= AVAILABILITY_OK:
        return "operational"
    if ratio >= AVAILABILITY_DEGRADED:
        return "degraded"
    return "major_outage"


def workers_state(
    queued: int, oldest_queued_at: datetime | None, last_finished_at: datetime | None, now: datetime
) -> tuple[str, str]:
    """The batch workers' state and a public description (rules in the module docstring)."""
    if queued == 0 or oldest_queued_at is None:
        return "operational", "No job is waiting"
    waited = now - oldest_queued_at
    if waited <= JOB_WAIT_LIMIT:
        return "operational", f"{queued} job(s) queued, the oldest for {format_duration(waited)}"
    if last_finished_at is not None and now - last_finished_at <= JOB_RECENT:
        return "degraded", f"Jobs wait longer than usual (the oldest for {format_duration(waited)})"
    return "major_outage", f"Jobs are not being processed (the oldest has waited {format_duration(waited)})"


def _worst(states: list[str]) -> str:
    return max(states, key=lambda s: _RANK[s], default="operational")


def _public_incident(incident: Any, last_public: Any | None, now: datetime) -> dict[str, Any]:
    sev = get_severity(incident.sev)
    end = incident.resolved_at if incident.status not in ACTIVE_STATUSES else None
    view = {
        "id": incident.id,
        "title": redact_keys(incident.title),
        "sev": sev.name,
        "severity": sev.title,
        "status": incident.status,
        "started_at": incident.started_at.isoformat(),
        "resolved_at": end.isoformat() if end else None,
        "duration": format_duration((end or now) - incident.started_at),
    }
    if last_public is not None:
        message = redact_keys(last_public.message)  # no API key prefixes on the public page
        view["latest_update"] = {"time": last_public.created_at.isoformat(), "message": message}
    return view


def _read_database(db: Database, now: datetime) -> dict[str, Any]:
    """Incidents (public fields only), the day bars and the jobs' state; raises StoreError / SQLAlchemyError."""
    start = datetime.combine(now.date() - timedelta(days=HISTORY_DAYS - 1), datetime.min.time(), tzinfo=UTC)
    with db.session() as s:
        repo = IncidentStore(s)
        active = []
        for incident in repo.list_active():
            public = repo.events(incident.id, "public")
            active.append(_public_incident(incident, public[-1] if public else None, now))
        active.sort(key=lambda i: (get_severity(i["sev"]).level, i["started_at"]))
        history = []
        for incident in repo.list_recent(None, _INCIDENTS_SCANNED):
            end = incident.resolved_at or incident.closed_at
            if incident.started_at >= start or incident.status in ACTIVE_STATUSES or (end and end >= start):
                history.append(_public_incident(incident, None, now))
        days = InferenceRecordStore(s).daily_availability(HISTORY_DAYS, now)
        jobs = JobStore(s)
        queued = jobs.count_by_status().get("queued", 0)
        waiting = jobs.list_recent(_JOBS_SCANNED, "queued") if queued else []
        finished = [j.finished_at for st in ("done", "failed") for j in jobs.list_recent(50, st) if j.finished_at]
    bars = []
    for day in days:
        d: date = day["date"]
        lo = datetime.combine(d, datetime.min.time(), tzinfo=UTC)
        hi = lo + timedelta(days=1)
        on_day = [
            {"id": i["id"], "sev": i["sev"], "title": i["title"]}
            for i in history
            if datetime.fromisoformat(i["started_at"]) < hi
            and (i["resolved_at"] is None or datetime.fromisoformat(i["resolved_at"]) >= lo)
        ]
        total, ok = int(day["total"]), int(day["ok"])
        bars.append(
            {
                "date": d.isoformat(),
                "total": total,
                "ok": ok,
                "availability": round(ok / total, 6) if total else None,
                "state": day_state(total, ok),
                "incidents": on_day,
            }
        )
    workers = workers_state(
        queued, min((j.created_at for j in waiting), default=None), max(finished, default=None), now
    )
    return {"active": active, "history": history, "bars": bars, "workers": workers}


def _gauge_values(metric: Any, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for family in metric.collect() for s in family.samples if label in s.labels}


def build_status(state: ServiceState, now: datetime, database: dict[str, Any] | None) -> dict[str, Any]:
    """The status document (`/status.json`): overall state, components, active incidents, 90 day bars, history.

    Args:
        state: The running service.
        now: The time the page describes (UTC).
        database: What `_read_database` read, or None when the database could not be read.
    """
    ready_required = [state.repo.active_version(n) is not None for n in state.required_models]
    maintenance = state.inference.maintenance.enabled
    db_ok = database is not None
    components: list[dict[str, Any]] = []

    if maintenance:
        api = ("maintenance", "Inference is paused for maintenance")
    elif not ready_required or not any(ready_required):
        api = ("major_outage", "No model can answer requests")
    elif state.settings.require_api_key and not db_ok:
        api = ("major_outage", "Requests cannot be authenticated")
    elif not all(ready_required):
        api = ("partial_outage", "Some models cannot answer requests")
    elif state.thermal.active:
        api = ("degraded", "Answers are slower than usual (hardware protection)")
    else:
        api = ("operational", "Inference requests are answered")
    components.append({"id": "api", "name": "Inference API", "state": api[0], "description": api[1]})

    backends: dict[str, list[str]] = {}
    for name in state.repo.model_names():
        mv = state.repo.active_version(name)
        versions = state.repo.versions(name)
        if mv is not None:
            st, text = "operational", f"Version {mv.version} is serving"
            backends.setdefault(mv.pipeline.runner.backend, []).append(name)
        elif versions and all(v.status == "unloaded" for v in versions):
            st, text = "maintenance", "Taken out of service by an operator"
        else:
            st, text = "major_outage", "Not serving"
        components.append({"id": f"model:{name}", "name": f"Model {name}", "state": st, "description": text})

    up = _gauge_values(metrics.BACKEND_UP, "backend")
    for backend in sorted(set(up) | set(backends)):
        st = "operational" if up.get(backend, 1.0) >= 1 else "major_outage"
        used = ", ".join(sorted(backends.get(backend, []))) or "no model at present"
        components.append(
            {"id": f"backend:{backend}", "name": f"Backend {backend}", "state": st, "description": f"Runs {used}"}
        )

    if not db_ok:
        database_state = ("major_outage", "Unavailable; inference requests are recorded when it is back")
    elif not state.records.healthy:
        database_state = ("degraded", "Recovering; buffered request records are being written")
    else:
        database_state = ("operational", "Reachable")
    components.append(
        {"id": "database", "name": "Database", "state": database_state[0], "description": database_state[1]}
    )
    workers = database["workers"] if db_ok else ("major_outage", "Jobs cannot be claimed while the database is down")
    components.append({"id": "workers", "name": "Batch workers", "state": workers[0], "description": workers[1]})

    overall = _worst([c["state"] for c in components])
    bars = database["bars"] if db_ok else []
    total = sum(b["total"] for b in bars)
    ok = sum(b["ok"] for b in bars)
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "status": {"state": overall, "description": _OVERALL[overall]},
        "components": components,
        "incidents": database["active"] if db_ok else [],
        "incidents_available": db_ok,
        "availability": {
            "days": HISTORY_DAYS,
            "total": total,
            "ok": ok,
            "ratio": round(ok / total, 6) if total else None,
            "bars": bars,
        },
        "history": database["history"] if db_ok else [],
    }


async def current_status(state: ServiceState) -> dict[str, Any]:
    """The status document now, with the database part cached for ``CACHE_TTL_S`` on the service state.

    A database that cannot be read is part of the answer (its components show the outage), never an error.
    """
    now = datetime.now(UTC)
    cached = state.status_cache
    if cached is not None and time.monotonic() < cached[0]:
        database = cached[1]
    else:
        try:
            database = await asyncio.get_running_loop().run_in_executor(None, _read_database, state.db, now)
        except (StoreError, SQLAlchemyError):
            database = None
        state.status_cache = (time.monotonic() + CACHE_TTL_S, database)
    return build_status(state, now, database)
