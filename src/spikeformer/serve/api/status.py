"""The public status page and the routes a remote smoke run needs.

- ``GET /status`` (HTML) and ``GET /status.json``: no key, no external assets (inline style, no script; a
  Content-Security-Policy forbids loading anything). Each component with its state from the live health checks,
  the active incidents with their public title, severity and latest *public* timeline entry, and 90 days of daily
  availability (from the inference records) with the incidents of each day. Nothing internal is shown: no keys,
  hosts, paths, error messages, internal timeline entries, summaries or commanders (docs/status-page.md).
- ``GET /v1/models/{name}/samples``: the reference images and labels the checkpoint's manifest carries (key
  ``infer`` where inference needs one), for ``spikeformer smoke``.
- ``GET /v1/records/{id}``: one inference record as written to the database (key ``alerts`` or ``admin``); an
  inference answer names its record in ``parameters.record_id``.

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

Day bars: ``ok / total`` of the day's inference records (UTC days); ``operational`` from 99.9 %, ``degraded``
from 99 %, else ``major_outage``; ``no_data`` for a day without requests. The database-derived part is cached for
``CACHE_TTL_S`` seconds, so a busy public page costs at most one set of queries per interval and replica.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import math
import time
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from spikeformer.ops.incident_common import format_duration
from spikeformer.ops.severity import get_severity
from spikeformer.serve import metrics
from spikeformer.serve.api.deps import AlertsKey, InferKey, State
from spikeformer.serve.errors import not_found, unavailable
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError
from spikeformer.serve.state import ServiceState
from spikeformer.store import (
    ACTIVE_STATUSES,
    IncidentRepository,
    InferenceRecordRepository,
    JobRepository,
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
    "day_state",
    "render_status_html",
    "router",
    "workers_state",
]

router = APIRouter(tags=["Status"])

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
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'"


# -- the routes a smoke run needs ----------------------------------------------------------------------------------

ModelName = Annotated[str, Path(min_length=1, max_length=200)]


def _finite(value: Any) -> Any:
    """JSON-safe metrics: NaN and infinities (an empty class) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    return value


@router.get(
    "/v1/models/{name}/samples",
    summary="The reference images and labels carried in the active version's manifest (for smoke tests)",
)
async def model_samples(name: ModelName, state: State, _key: InferKey) -> dict:
    try:
        mv = state.repo.get(name)
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    except ModelNotReadyError as e:
        raise unavailable(str(e), state.settings.retry_after_s) from None
    try:
        samples = mv.manifest.sample_images() if mv.manifest else None
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise not_found(f"model {name!r} version {mv.version!r}: the manifest's samples cannot be read ({e})") from None
    if samples is None:
        raise not_found(
            f"model {name!r} version {mv.version!r} carries no reference images (checkpoints written by "
            "`spikeformer train` carry one test image per class)"
        )
    images, labels = samples
    c, h, w = mv.pipeline.input_shape
    if images.numel() != len(labels) * c * h * w or not labels:
        raise not_found(f"model {name!r} version {mv.version!r}: the manifest's samples do not fit the model's input")
    images = images.reshape(len(labels), c, h, w).contiguous()
    metrics_ = mv.manifest.metrics
    return {
        "name": name,
        "version": mv.version,
        "datatype": "UINT8",
        "shape": list(images.shape),
        "data_b64": base64.b64encode(images.numpy().tobytes()).decode(),
        "labels": [int(v) for v in labels],
        "class_names": list(mv.manifest.class_names),
        "metrics": _finite({k: metrics_.get(k) for k in ("top1", "per_class", "evaluated_on") if k in metrics_}),
    }


RecordId = Annotated[str, Path(min_length=1, max_length=64, description="parameters.record_id of an answer")]


@router.get("/v1/records/{record_id}", summary="An inference record as written to the database (written in batches)")
async def get_record(record_id: RecordId, state: State, _key: AlertsKey) -> dict:
    def load() -> dict[str, Any] | None:
        with state.db.session() as s:
            r = InferenceRecordRepository(s).get(record_id)
            if r is None:
                return None
            return {
                "id": r.id,
                "created_at": r.created_at.isoformat(),
                **{
                    k: getattr(r, k)
                    for k in (
                        "model",
                        "version",
                        "backend",
                        "status",
                        "http_status",
                        "latency_ms",
                        "queue_ms",
                        "compute_ms",
                        "batch_size",
                        "spikes",
                        "energy_j",
                        "error",
                    )
                },
            }

    try:
        record = await asyncio.get_running_loop().run_in_executor(None, load)
    except (StoreError, SQLAlchemyError) as e:
        raise unavailable(f"cannot read the record: the database is unavailable ({type(e).__name__})") from None
    if record is None:
        raise not_found(
            f"no inference record {record_id!r}: unknown, or not written yet (records are written every "
            f"{state.settings.record_flush_interval_s:g} s, and buffered while the database is down)"
        )
    return record


# -- the status page -----------------------------------------------------------------------------------------------


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
        "title": incident.title,
        "sev": sev.name,
        "severity": sev.title,
        "status": incident.status,
        "started_at": incident.started_at.isoformat(),
        "resolved_at": end.isoformat() if end else None,
        "duration": format_duration((end or now) - incident.started_at),
    }
    if last_public is not None:
        view["latest_update"] = {"time": last_public.created_at.isoformat(), "message": last_public.message}
    return view


def _read_database(state: ServiceState, now: datetime) -> dict[str, Any]:
    """Incidents (public fields only), the day bars and the jobs' state; raises StoreError / SQLAlchemyError."""
    start = datetime.combine(now.date() - timedelta(days=HISTORY_DAYS - 1), datetime.min.time(), tzinfo=UTC)
    with state.db.session() as s:
        repo = IncidentRepository(s)
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
        days = InferenceRecordRepository(s).daily_availability(HISTORY_DAYS, now)
        jobs = JobRepository(s)
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
        state: the running service.
        now: the time the page describes (UTC).
        database: what `_read_database` read, or None when the database could not be read.
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


async def _status(request: Request, state: ServiceState) -> dict[str, Any]:
    """The status document, with the database part cached for CACHE_TTL_S on the application."""
    now = datetime.now(UTC)
    cached = getattr(request.app.state, "status_cache", None)
    if cached is not None and time.monotonic() < cached[0]:
        database = cached[1]
    else:
        try:
            database = await asyncio.get_running_loop().run_in_executor(None, _read_database, state, now)
        except (StoreError, SQLAlchemyError):
            database = None
        request.app.state.status_cache = (time.monotonic() + CACHE_TTL_S, database)
    return build_status(state, now, database)


_HEADERS = {"Content-Security-Policy": _CSP, "Cache-Control": "max-age=5", "X-Content-Type-Options": "nosniff"}


@router.get("/status.json", summary="Public status: components, active incidents, 90 days of availability")
async def status_json(request: Request, state: State) -> JSONResponse:
    return JSONResponse(await _status(request, state), headers=_HEADERS)


@router.get("/status", summary="Public status page (HTML, no login, no external assets)", response_class=HTMLResponse)
async def status_page(request: Request, state: State) -> HTMLResponse:
    return HTMLResponse(render_status_html(await _status(request, state)), headers=_HEADERS)


# -- HTML ----------------------------------------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:860px;margin:0 auto;padding:24px 16px}
h1{font-size:22px;margin:0 0 16px}h2{font-size:17px;margin:28px 0 10px}
.overall{padding:14px 18px;border-radius:8px;color:#fff;font-weight:600;font-size:17px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px;margin:8px 0}
ul.components{list-style:none;margin:0;padding:0;background:#fff;border:1px solid #dde1e7;border-radius:8px}
ul.components li{display:flex;gap:12px;align-items:baseline;padding:10px 16px;border-top:1px solid #eef0f3}
ul.components li:first-child{border-top:0}
.name{font-weight:600;min-width:210px}.desc{color:#5b6372;flex:1}.label{font-weight:600}
.bars{display:flex;gap:2px;height:38px;align-items:stretch}.bar{flex:1;border-radius:2px}
.legend{display:flex;justify-content:space-between;color:#5b6372;font-size:13px;margin-top:4px}
.meta{color:#5b6372;font-size:13px}time{color:#5b6372}
.s-operational{background:#2f9e44;color:#fff}.t-operational{color:#2f9e44}
.s-maintenance{background:#1c7ed6;color:#fff}.t-maintenance{color:#1c7ed6}
.s-degraded{background:#f59f00;color:#fff}.t-degraded{color:#e67700}
.s-partial_outage{background:#f76707;color:#fff}.t-partial_outage{color:#e8590c}
.s-major_outage{background:#e03131;color:#fff}.t-major_outage{color:#e03131}
.s-no_data{background:#ced4da}
.sev{display:inline-block;padding:0 6px;border-radius:4px;background:#e03131;color:#fff;font-size:12px}
footer{margin:32px 0;color:#5b6372;font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    t = datetime.fromisoformat(iso).astimezone(UTC)
    return f'<time datetime="{_e(iso)}">{t:%Y-%m-%d %H:%M} UTC</time>'


def _percent(ratio: float | None) -> str:
    return "no data" if ratio is None else f"{100 * ratio:.2f} %"


def render_status_html(doc: dict[str, Any]) -> str:
    """The status document as one self-contained HTML page (inline style, no script, no external reference)."""
    overall = doc["status"]
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<meta http-equiv="refresh" content="60"><title>spikeformer status</title>',
        f"<style>{_STYLE}</style></head><body><main>",
        "<h1>spikeformer status</h1>",
        f'<div class="overall s-{_e(overall["state"])}" data-testid="overall" data-state="{_e(overall["state"])}">'
        f"{_e(overall['description'])}</div>",
        "<h2>Active incidents</h2>",
    ]
    if not doc["incidents_available"]:
        parts.append('<p class="card">Incident information is temporarily unavailable.</p>')
    elif not doc["incidents"]:
        parts.append('<p class="card" data-testid="no-incidents">No active incidents.</p>')
    for i in doc["incidents"]:
        update = i.get("latest_update")
        parts.append(
            f'<article class="card" data-testid="incident" data-incident="{i["id"]}">'
            f'<div><span class="sev">{_e(i["sev"])} {_e(i["severity"])}</span> <strong>{_e(i["title"])}</strong></div>'
            f'<div class="meta">{_e(i["status"].capitalize())} · started {_when(i["started_at"])} · '
            f"{_e(i['duration'])}</div>"
            + (f'<p data-testid="public-update">{_when(update["time"])} {_e(update["message"])}</p>' if update else "")
            + "</article>"
        )
    parts.append('<h2>Components</h2><ul class="components">')
    for c in doc["components"]:
        parts.append(
            f'<li data-testid="component" data-component="{_e(c["id"])}" data-state="{_e(c["state"])}">'
            f'<span class="name">{_e(c["name"])}</span><span class="desc">{_e(c["description"])}</span>'
            f'<span class="label t-{_e(c["state"])}">{_e(STATES[c["state"]])}</span></li>'
        )
    parts.append("</ul>")
    availability = doc["availability"]
    parts.append(
        f"<h2>Availability, last {availability['days']} days</h2>"
        f'<div class="card"><div class="meta">{_percent(availability["ratio"])} of '
        f"{availability['total']:,} inference requests answered successfully</div>"
        '<div class="bars" data-testid="bars">'
    )
    for b in availability["bars"]:
        label = f"{b['date']}: " + (
            "no data (no requests)" if b["total"] == 0 else f"{_percent(b['availability'])} of {b['total']:,} requests"
        )
        if b["incidents"]:
            label += "; " + "; ".join(f"#{i['id']} {i['sev']} {i['title']}" for i in b["incidents"])
        parts.append(
            f'<span class="bar s-{_e(b["state"])}" data-testid="bar" data-date="{_e(b["date"])}" '
            f'data-state="{_e(b["state"])}" title="{_e(label)}"></span>'
        )
    first = availability["bars"][0]["date"] if availability["bars"] else ""
    parts.append(f'</div><div class="legend"><span>{_e(first)}</span><span>today</span></div></div>')
    parts.append("<h2>Incident history</h2>")
    past = [i for i in doc["history"] if i["status"] not in ACTIVE_STATUSES]
    if not doc["incidents_available"]:
        parts.append('<p class="card">Incident history is temporarily unavailable.</p>')
    elif not past:
        parts.append(f'<p class="card">No incidents in the last {availability["days"]} days.</p>')
    for i in past:
        parts.append(
            f'<div class="card" data-testid="past-incident" data-incident="{i["id"]}">'
            f'<span class="sev">{_e(i["sev"])}</span> <strong>{_e(i["title"])}</strong>'
            f'<div class="meta">{_e(i["status"].capitalize())} · {_when(i["started_at"])} · '
            f"lasted {_e(i['duration'])}</div></div>"
        )
    parts.append(
        f'<footer>Updated {_when(doc["generated_at"])}. Machine-readable: <a href="/status.json">status.json</a>.'
        "</footer></main></body></html>"
    )
    return "".join(parts)
