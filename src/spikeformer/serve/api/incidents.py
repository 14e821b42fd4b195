"""Incident routes (``/v1/incidents``) and the Alertmanager webhook (``/v1/alertmanager/webhook``).

Reading needs no key, but only a key with scope ``alerts`` (or ``admin``) sees everything. Without one, every read
route (the list, an incident, its messages) answers from public sources only (``public_incident_view``): public
timeline entries, the progress, next steps and ETA of public updates, alerts without labels or URLs, and no API
key prefixes (they read ``operator``). A key that is sent must be valid (401) and hold ``alerts`` (403). The
post-mortem draft needs a key. Every change needs an ``admin`` key; the webhook needs ``alerts`` (or ``admin``),
sent by Alertmanager as ``http_config.authorization``.
The logic is ``spikeformer.ops.incidents.IncidentService``; the routes validate, call it off the event loop, and
refresh the incident gauges of ``/metrics`` (``spikeformer.serve.services.incident_watcher``, which also keeps them
current in the background). An incident error is answered with its own ``http_status`` (400, 404 or 409) and
``{"error": message}``; a database that is down with 503.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from spikeformer._deprecation import moved_names
from spikeformer.ops.incidents import IncidentError, IncidentService
from spikeformer.ops.severity import SEVERITIES, render_markdown_table
from spikeformer.serve.api.deps import AdminKey, AlertsKey, State, require_scope
from spikeformer.serve.errors import ServiceError, bad_request
from spikeformer.serve.services import incident_watcher
from spikeformer.serve.services.store_calls import run_store
from spikeformer.serve.state import ServiceState
from spikeformer.store import StoreError

__all__ = ["router"]

router = APIRouter(tags=["Incidents"])

MessageKind = Literal["initial", "update", "resolution"]
Text = Annotated[str, Field(max_length=20_000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


# -- helpers --------------------------------------------------------------------------------------------------------


# The error kinds of ``ServiceError`` by the status an incident error carries (400 for any other).
_ERROR_KINDS = {404: "not_found", 409: "conflict"}
# Names that moved to ``spikeformer.serve.services.incident_watcher``; importing them from here warns.
__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        ("INCIDENT_METRICS_INTERVAL_S", "update_incident_metrics", "watch_incidents"),
        "spikeformer.serve.services.incident_watcher",
    ),
)


def _http_error(err: IncidentError) -> ServiceError:
    """The one mapping of incident errors to HTTP answers: the error's own status, its message as the body."""
    return ServiceError(err.http_status, str(err), kind=_ERROR_KINDS.get(err.http_status, "bad_request"))


async def _call(
    state: ServiceState, what: str, fn: Callable[..., Any], *args: Any, refresh: bool = True, **kwargs: Any
) -> Any:
    """Run an incident operation off the event loop (``run_store``) and turn its errors into HTTP answers.

    Args:
        state: the service state.
        what: what the call does, for the 503 answer when the database is down (``"open the incident"``).
        fn: the operation (an ``IncidentService`` method).
        *args: its arguments.
        refresh: recompute the incident gauges afterwards (after a change).
        **kwargs: its keyword arguments.
    """

    def run() -> Any:
        result = fn(*args, **kwargs)
        if refresh:
            with suppress(StoreError):
                incident_watcher.update_incident_metrics(state)
        return result

    try:
        return await run_store(run, what)
    except IncidentError as e:
        raise _http_error(e) from None
    except ValueError as e:
        raise bad_request(str(e)) from None


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
    internal: SeesInternal,
    status: Annotated[
        list[str] | None, Query(description="active, open, acknowledged, mitigated, resolved, closed (repeatable)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    items = await _call(
        state, "list the incidents", _service(state).list_incidents, status, limit, not internal, refresh=False
    )
    return {"incidents": items}


@router.get("/v1/incidents/{incident_id}", summary="An incident with its timeline and alerts")
async def get_incident(incident_id: IncidentId, state: State, internal: SeesInternal) -> dict:
    return await _call(
        state, "read the incident", _service(state).get, incident_id, None if internal else "public", refresh=False
    )


@router.get(
    "/v1/incidents/{incident_id}/messages/{kind}",
    summary="The runbook's initial report, progress update or resolution notice, filled from the incident",
)
async def get_message(incident_id: IncidentId, kind: MessageKind, state: State, internal: SeesInternal) -> dict:
    text = await _call(
        state, "render the message", _service(state).message, incident_id, kind, not internal, refresh=False
    )
    return {"incident_id": incident_id, "kind": kind, "text": text}


@router.get(
    "/v1/incidents/{incident_id}/postmortem",
    summary="Post-mortem draft (Markdown) with impact measured from the inference records",
    response_class=PlainTextResponse,
)
async def get_postmortem(incident_id: IncidentId, state: State, _key: AlertsKey) -> PlainTextResponse:
    text = await _call(state, "draft the post-mortem", _service(state).postmortem, incident_id, refresh=False)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


# -- changes --------------------------------------------------------------------------------------------------------


@router.post("/v1/incidents", summary="Open an incident", status_code=201)
async def open_incident(body: OpenBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state,
        "open the incident",
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
        "acknowledge the incident",
        _service(state).acknowledge,
        incident_id,
        _author(body.author, key),
        silence=body.silence,
        silence_duration=timedelta(minutes=body.silence_minutes),
        alertmanager_url=body.alertmanager_url,
    )


@router.post("/v1/incidents/{incident_id}/commander", summary="Assign the incident commander")
async def assign(incident_id: IncidentId, body: CommanderBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state, "assign the commander", _service(state).assign, incident_id, body.commander, _author(body.author, key)
    )


@router.post("/v1/incidents/{incident_id}/events", summary="Add a timeline entry (internal by default)")
async def add_note(incident_id: IncidentId, body: NoteBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state,
        "add the timeline entry",
        _service(state).note,
        incident_id,
        body.message,
        _author(body.author, key),
        body.visibility,
    )


@router.post("/v1/incidents/{incident_id}/updates", summary="Post a progress update (public by default)")
async def post_update(incident_id: IncidentId, body: UpdateBody, state: State, key: AdminKey) -> dict:
    return await _call(
        state,
        "post the update",
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
        state,
        "change the severity",
        _service(state).set_severity,
        incident_id,
        body.sev,
        _author(body.author, key),
        body.reason,
    )


@router.post("/v1/incidents/{incident_id}/mitigate", summary="Mark the impact as stopped")
async def mitigate(incident_id: IncidentId, state: State, key: AdminKey, body: MitigateBody | None = None) -> dict:
    body = body or MitigateBody()
    return await _call(
        state, "mitigate the incident", _service(state).mitigate, incident_id, _author(body.author, key), body.message
    )


@router.post("/v1/incidents/{incident_id}/resolve", summary="Resolve (the post-mortem falls due 48 h later)")
async def resolve(incident_id: IncidentId, state: State, key: AdminKey, body: ResolveBody | None = None) -> dict:
    body = body or ResolveBody()
    return await _call(
        state,
        "resolve the incident",
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
        "close the incident",
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
        "post the message",
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
    return await _call(state, "record the Alertmanager notification", _service(state).handle_alertmanager, payload)
