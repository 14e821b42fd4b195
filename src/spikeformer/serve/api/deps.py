"""Request dependencies: the service state and API-key scopes (``Annotated`` aliases), and reading request bodies."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

from fastapi import Depends, Request, UploadFile

from spikeformer.serve.errors import bad_request, forbidden, too_large, unauthorized
from spikeformer.serve.services.auth import key_scopes
from spikeformer.serve.services.store_calls import run_store
from spikeformer.serve.state import ServiceState

__all__ = [
    "AdminKey",
    "AlertsKey",
    "InferKey",
    "State",
    "get_state",
    "json_body",
    "read_upload",
    "require_scope",
]


def get_state(request: Request) -> ServiceState:
    return request.app.state.svc


State = Annotated[ServiceState, Depends(get_state)]


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def require_scope(*scopes: str, optional_setting: str | None = None):
    """A dependency accepting a key that holds any of ``scopes`` (``admin`` holds every scope)."""

    async def check(request: Request, state: State) -> str | None:
        if optional_setting and not getattr(state.settings, optional_setting):
            return None
        key = _presented_key(request)
        if not key:
            raise unauthorized(
                f"this endpoint needs an API key with scope {' or '.join(scopes)}: send "
                "'Authorization: Bearer <key>' (create one with: spikeformer keys create)"
            )
        granted = await run_store(partial(key_scopes, state.db, key), "check the API key")
        if granted is None:
            raise unauthorized("the API key is not valid (unknown or revoked)")
        if "admin" not in granted and not granted & set(scopes):
            raise forbidden(f"the API key lacks scope {' or '.join(scopes)} (it has: {', '.join(sorted(granted))})")
        return key

    return check


AdminKey = Annotated[str | None, Depends(require_scope("admin"))]
InferKey = Annotated[str | None, Depends(require_scope("infer", optional_setting="require_api_key"))]
AlertsKey = Annotated[str | None, Depends(require_scope("alerts"))]


async def json_body(request: Request, limit: int) -> object:
    """The request's JSON body, parsed; 413 over ``limit`` bytes, 400 when empty or not JSON."""
    raw = await request.body()
    if len(raw) > limit:
        raise too_large(f"request body is {len(raw)} bytes; the limit is {limit}")
    if not raw:
        raise bad_request("empty request body; expected a JSON inference request")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"the body is not valid JSON: {e}") from None


async def read_upload(state: ServiceState, file: UploadFile) -> bytes:
    """The uploaded image's bytes, within the body limit and not empty (else 413 / 400)."""
    data = await file.read(state.settings.max_body_bytes + 1)
    if len(data) > state.settings.max_body_bytes:
        raise too_large(f"the image is larger than {state.settings.max_body_bytes} bytes")
    if not data:
        raise bad_request("the uploaded file is empty; send a PNG or JPEG image in the multipart field 'file'")
    return data
