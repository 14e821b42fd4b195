"""Request dependencies: the service state and API-key scopes (``Annotated`` aliases)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from spikeformer.serve.errors import forbidden, unauthorized, unavailable
from spikeformer.serve.state import ServiceState
from spikeformer.store import ApiKeyRepository, StoreError

__all__ = ["State", "get_state", "require_scope", "AdminKey", "InferKey", "AlertsKey"]


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

        def verify():
            with state.db.session() as s:
                row = ApiKeyRepository(s).verify(key)
                return None if row is None else set(row.scope_list)

        try:
            granted = await asyncio.get_running_loop().run_in_executor(None, verify)
        except StoreError as e:
            raise unavailable(f"cannot check the API key: the database is unavailable ({e})") from None
        if granted is None:
            raise unauthorized("the API key is not valid (unknown or revoked)")
        if "admin" not in granted and not granted & set(scopes):
            raise forbidden(f"the API key lacks scope {' or '.join(scopes)} (it has: {', '.join(sorted(granted))})")
        return key

    return check


AdminKey = Annotated[str | None, Depends(require_scope("admin"))]
InferKey = Annotated[str | None, Depends(require_scope("infer", optional_setting="require_api_key"))]
AlertsKey = Annotated[str | None, Depends(require_scope("alerts"))]
