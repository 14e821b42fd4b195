"""Incident routes (``/v1/incidents``) and the Alertmanager webhook (``/v1/alertmanager/webhook``).

Reading needs no key, but only a key with scope ``alerts`` (or ``admin``) sees ``internal`` timeline entries;
without one the timeline holds the ``public`` entries only (what a status page may show). Every change needs an
``admin`` key; the webhook needs ``alerts`` (or ``admin``), sent by Alertmanager as ``http_config.authorization``.
The logic is ``spikeformer.ops.incidents.IncidentService``; the routes validate, call it off the event loop, and
refresh the incident gauges of ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from spikeformer.ops.incidents import (
    IncidentConflictError,
    IncidentError,
    IncidentInputError,
    IncidentNotFoundError,
    IncidentService,
)
from spikeformer.ops.severity import SEVERITIES, render_markdown_table
from spikeformer.serve import metrics
from spikeformer.serve.api.deps import AdminKey, AlertsKey, State, require_scope
from spikeformer.serve.errors import ServiceError, bad_request, not_found, unavailable
from spikeformer.serve.state import ServiceState
from spikeformer.store import StoreError

__all__ = ["INCIDENT_METRICS_INTERVAL_S", "router", "update_incident_metrics", "watch_incidents"]

log = logging.getLogger("spikeformer.serve.incidents")
router = APIRouter(tags=["Incidents"])

INCIDENT_METRICS_INTERVAL_S = 15.0  # how often the overdue gauges are recomputed while nothing changes
MessageKind = Literal["initial", "update", "resolution"]
Text = Annotated[str, Field(max_length=20_000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


# -- helpers --------------------------------------------------------------------------------------------------------


def update_incident_metrics(state: ServiceState) -> None:
    """Set ``spikeformer_incidents_open``, ``..._ack_overdue`` and ``..._update_overdue`` per SEV from the database."""
    counts = IncidentService(state.db).severity_metrics()
    for sev, row in counts.items():
        metrics.INCIDENTS_OPEN.labels(sev).set(row["open"])
        metrics.INCIDENT_ACK_OVERDUE.labels(sev).set(row["ack_overdue"])
        metrics.INCIDENT_UPDATE_OVERDUE.labels(sev).set(row["update_overdue"])


async def watch_incidents(state: ServiceState, interval_s: float = INCIDENT_METRICS_INTERVAL_S) -> None:
    """Background task: recompute the incident gauges every ``interval_s`` (targets lapse without any change)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, update_incident_metrics, state)
        except StoreError as e:
            log.debug("incident metrics not updated: %s", e)  # the record writer reports database outages
        except Exception:  # noqa: BLE001 - a background task must keep running
            log.exception("incident metrics not updated")
        await asyncio.sleep(interval_s)


async def _call(state: ServiceState, fn: Callable[..., Any], *args: Any, refresh: bool = True, **kwargs: Any) -> Any:
    """Run an incident operation off the event loop and turn its errors into HTTP answers."""
    loop = asyncio.get_running_loop()

    def run() -> Any:
        result = fn(*args, **kwargs)
        if refresh:
            try:
                update_incident_metrics(state)
            except StoreError:
                pass
        return result

    try:
        return await loop.run_in_executor(None, run)
    except IncidentNotFoundError as e:
        raise not_found(str(e)) from None
    except IncidentConflictError as e:
        raise ServiceError(409, str(e), kind="conflict") from None
    except (IncidentInputError, ValueError) as e:
        raise bad_request(str(e)) from None
    except IncidentError as e:
        raise bad_request(str(e)) from None
    except StoreError as e:
        raise unavailable(f"the database is unavailable ({e})") from None


def _service(state: ServiceState) -> IncidentService:
    return IncidentService(state.db)


def _author(author: str | None, key: str | None) -> str:
    if author and author.strip():
        return author
    return f"api key {key[:8]}" if key else "api"


async def _sees_internal(request: Request, state: State) -> bool:
    """True when the request carries a valid key with scope ``alerts`` or ``admin``; 401/403 for a bad key."""
    if not (request.headers.get("authorization") or request.headers.get("x-api-key")):
        return False
    await require_scope("alerts")(request, state)
    return True


SeesInternal = Annotated[bool, Depends(_sees_internal)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenBody(_Body):
    title: Name
    sev: str | int = Field(description="SEV-1 .. SEV-4 (or 1..4)")
    summary: Text = ""
    impact: Text = ""
    commander: Name | None = None
    started_at: datetime | None = Field(None, description="Detection time, with a time zone (default: now)")
    author: Name | None = Field(None, description="Who makes the change (default: the API key's prefix)")
    notify: bool = Field(False, description="Post the initial incident report to the chat webhook")
    webhook_url: str | None = Field(None, max_length=2000, description="Chat webhook (default: env)")


class AckBody(_Body):
    author: Name | None = None
    silence: bool = Field(False, description="Create an Alertmanager silence for the incident's alerts")
    silence_minutes: int = Field(240, ge=1, le=7 * 24 * 60, description="How long the silence lasts")
    alertmanager_url: str | None = Field(
        None, max_length=2000, description="Alertmanager base URL (default: SPIKEFORMER_ALERTMANAGER_URL)"
    )


class CommanderBody(_Body):
    commander: Name
    author: Name | None = None


class NoteBody(_Body):
    message: Annotated[str, Field(min_length=1, max_length=20_000)]
    visibility: Literal["public", "internal"] = "internal"
    author: Name | None = None


class UpdateBody(_Body):
    message: Annotated[str, Field(min_length=1, max_length=20_000)]
    progress: Text | None = None
    next_steps: Text | None = None
    eta: datetime | None = None
    visibility: Literal["public", "internal"] = "public"
    author: Name | None = None
    notify: bool = False
    webhook_url: str | None = Field(None, max_length=2000)


class SeverityBody(_Body):
    sev: str | int
    reason: Text = ""
    author: Name | None = None


class MitigateBody(_Body):
    message: Text = ""
    author: Name | None = None


class ResolveBody(_Body):
    root_cause: Text | None = None
    resolution: Text | None = None
    message: Text = ""
    postmortem_meeting_at: datetime | None = None
    author: Name | None = None
    notify: bool = False
    webhook_url: str | None = Field(None, max_length=2000)
    expire_silences: bool = Field(True, description="Expire the silences created when it was acknowledged")


class SmokeCheckBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    status: Literal["pass", "fail", "skip"]
    seconds: float = Field(0.0, ge=0, le=86_400)
    detail: Annotated[str, Field(max_length=2000)] = ""


class SmokeBody(BaseModel):
    """The JSON printed by `spikeformer smoke --json` (fields it adds are ignored; `ok` is recomputed)."""

    model_config = ConfigDict(extra="ignore")
    url: Annotated[str, Field(max_length=2000)] = ""
    started_at: datetime
    finished_at: datetime
    checks: Annotated[list[SmokeCheckBody], Field(min_length=1, max_length=500)]


class CloseBody(_Body):
    message: Text = ""
    author: Name | None = None
    smoke: SmokeBody | None = Field(None, description="A passing `spikeformer smoke --json` result (within 1 h)")
    force: bool = Field(False, description="Close without a passing smoke run; needs `reason` (recorded)")
    reason: Text | None = None


class PostMessageBody(_Body):
    webhook_url: str | None = Field(None, max_length=2000, description="Chat webhook (default: env)")
    author: Name | None = None


IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The incident's id")]


# -- reading --------------------------------------------------------------------------------------------------------


@router.get("/v1/incidents/severities", summary="The severity table (SEV-1..SEV-4): meaning and response targets")
async def severities() -> dict:
    return {
        "severities": [
            {
                "name": s.name,
                "level": s.level,
                "title": s.title,
                "definition": s.definition,
                "response_minutes": s.response_minutes,
                "update_interval_minutes": s.update_interval_minutes,
                "alert_severity": s.alert_severity,
                "routing": s.routing,
                "examples": list(s.examples),
            }
            for s in SEVERITIES
        ],
        "markdown": render_markdown_table(),
    }


@router.get(
    "/v1/incidents", summary="Incidents, newest first, with overdue flags (acknowledgement, update, post-mortem)"
)
async def list_incidents(
    state: State,
    status: Annotated[
        list[str] | None, Query(description="active, open, acknowledged, mitigated, resolved, closed (repeatable)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    items = await _call(state, _service(state).list_incidents, status, limit, refresh=False)
    return {"incidents": items}


@router.get("/v1/incidents/{incident_id}", summary="An incident with its timeline and alerts")
async def get_incident(incident_id: IncidentId, state: State, internal: SeesInternal) -> dict:
    return await _call(state, _service(state).get, incident_id, None if internal else "public", refresh=False)


@router.get(
    "/v1/incidents/{incident_id}/messages/{kind}",
    summary="The runbook's initial report, progress update or resolution notice, filled from the incident",
)
async def get_message(incident_id: IncidentId, kind: MessageKind, state: State) -> dict:
    text = await _call(state, _service(state).message, incident_id, kind, refresh=False)
    return {"incident_id": incident_id, "kind": kind, "text": text}


@router.get(
    "/v1/incidents/{incident_id}/postmortem",
    summary="Post-mortem draft (Markdown) with impact measured from the inference records",
    response_class=PlainTextResponse,
)
async def get_postmortem(incident_id: IncidentId, state: State, _key: AlertsKey) -> PlainTextResponse:
    text = await _call(state, _service(state).postmortem, incident_id, refresh=False)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


# -- changes --------------------------------------------------------------------------------------------------------


@router.post("/v1/incidents", summary="Open an incident", status_code=201)
async def open_incident(body: OpenBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state,
        _service(state).open,
        body.title,
        body.sev,
        _author(body.author, key),
        summary=body.summary,
        impact=body.impact,
        commander=body.commander,
        started_at=body.started_at,
        notify=body.notify,
        webhook_url=body.webhook_url,
    )


@router.post("/v1/incidents/{incident_id}/acknowledge", summary="Acknowledge (optionally silence its alerts)")
async def acknowledge(incident_id: IncidentId, state: State, key: AdminKey, body: AckBody | None = None) -> dict:
    body = body or AckBody()
    return await _call(
        state,
        _service(state).acknowledge,
        incident_id,
        _author(body.author, key),
        silence=body.silence,
        silence_duration=timedelta(minutes=body.silence_minutes),
        alertmanager_url=body.alertmanager_url,
    )


@router.post("/v1/incidents/{incident_id}/commander", summary="Assign the incident commander")
async def assign(incident_id: IncidentId, body: CommanderBody, state: State, key: AdminKey) -> dict:
    return await _call(state, _service(state).assign, incident_id, body.commander, _author(body.author, key))


@router.post("/v1/incidents/{incident_id}/events", summary="Add a timeline entry (internal by default)")
async def add_note(incident_id: IncidentId, body: NoteBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state, _service(state).note, incident_id, body.message, _author(body.author, key), body.visibility
    )


@router.post("/v1/incidents/{incident_id}/updates", summary="Post a progress update (public by default)")
async def post_update(incident_id: IncidentId, body: UpdateBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state,
        _service(state).post_update,
        incident_id,
        body.message,
        _author(body.author, key),
        progress=body.progress,
        next_steps=body.next_steps,
        eta=body.eta,
        visibility=body.visibility,
        notify=body.notify,
        webhook_url=body.webhook_url,
    )


@router.post("/v1/incidents/{incident_id}/severity", summary="Change the severity (recorded with the reason)")
async def set_severity(incident_id: IncidentId, body: SeverityBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state, _service(state).set_severity, incident_id, body.sev, _author(body.author, key), body.reason
    )


@router.post("/v1/incidents/{incident_id}/mitigate", summary="Mark the impact as stopped")
async def mitigate(incident_id: IncidentId, state: State, key: AdminKey, body: MitigateBody | None = None) -> dict:
    body = body or MitigateBody()
    return await _call(state, _service(state).mitigate, incident_id, _author(body.author, key), body.message)


@router.post("/v1/incidents/{incident_id}/resolve", summary="Resolve (the post-mortem falls due 48 h later)")
async def resolve(incident_id: IncidentId, state: State, key: AdminKey, body: ResolveBody | None = None) -> dict:
    body = body or ResolveBody()
    return await _call(
        state,
        _service(state).resolve,
        incident_id,
        _author(body.author, key),
        root_cause=body.root_cause,
        resolution=body.resolution,
        message=body.message,
        postmortem_meeting_at=body.postmortem_meeting_at,
        notify=body.notify,
        webhook_url=body.webhook_url,
        expire_silences=body.expire_silences,
    )


@router.post(
    "/v1/incidents/{incident_id}/close",
    summary="Close a resolved incident (post-mortem done) with a passing smoke run, or force and a reason",
)
async def close(incident_id: IncidentId, state: State, key: AdminKey, body: CloseBody | None = None) -> dict:
    body = body or CloseBody()
    return await _call(
        state,
        _service(state).close,
        incident_id,
        _author(body.author, key),
        body.message,
        smoke=body.smoke.model_dump(mode="json") if body.smoke else None,
        force=body.force,
        reason=body.reason,
    )


@router.post(
    "/v1/incidents/{incident_id}/messages/{kind}/post",
    summary="Post a message to the chat webhook (a failure is recorded in the timeline and returned, not raised)",
)
async def post_message(
    incident_id: IncidentId, kind: MessageKind, state: State, key: AdminKey, body: PostMessageBody | None = None
) -> dict:
    body = body or PostMessageBody()
    return await _call(
        state,
        _service(state).post_message,
        incident_id,
        kind,
        _author(body.author, key),
        webhook_url=body.webhook_url,
        refresh=False,
    )


@router.post(
    "/v1/alertmanager/webhook",
    summary="Alertmanager webhook (payload version 4): open or update the incident of the alert group",
)
async def alertmanager_webhook(
    state: State, _key: AlertsKey, payload: Annotated[dict[str, Any], Body(description="webhook payload")]
) -> dict:
    return await _call(state, _service(state).handle_alertmanager, payload)
