"""Model repository (Triton's extension) and operator endpoints; changes need an ``admin`` key."""

from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, Field

from spikeformer.serve.api.deps import AdminKey, State
from spikeformer.serve.errors import ServiceError, not_found, unavailable
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError
from spikeformer.serve.services.inference import Maintenance
from spikeformer.store import SettingsRepository, StoreError

router = APIRouter(tags=["Model repository and operations"])


@router.post("/v2/repository/index", summary="Every model version and its state (Triton repository extension)")
async def repository_index(state: State) -> list[dict]:
    return state.repo.index()


def _load(state, name: str) -> list[dict]:
    try:
        versions = state.repo.load_model(name)
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    return [
        {
            "name": v.name,
            "version": v.version,
            "state": "READY" if v.ready else v.status.upper(),
            "reason": v.error or "",
        }
        for v in versions
    ]


@router.post("/v2/repository/models/{name}/load", summary="(Re)load every version of a model from disk")
async def load_model(name: str, state: State, _key: AdminKey) -> dict:
    versions = await asyncio.get_running_loop().run_in_executor(None, _load, state, name)
    return {"name": name, "versions": versions}


@router.post("/v2/repository/models/{name}/unload", summary="Unload a model (all versions, or ?version=)")
async def unload_model(name: str, state: State, _key: AdminKey, version: str | None = None) -> dict:
    try:
        gone = state.repo.unload(name, version)
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    return {"name": name, "unloaded": [v.version for v in gone]}


@router.post("/v1/admin/models/{name}/rollback", summary="Serve the previous ready version")
async def rollback(name: str, state: State, _key: AdminKey) -> dict:
    try:
        mv = state.repo.rollback(name)
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    except ModelNotReadyError as e:
        raise ServiceError(409, str(e), kind="conflict") from None
    return {"name": name, "active_version": mv.version}


class MaintenanceBody(BaseModel):
    enabled: bool
    message: str = Field("", max_length=500)


@router.get("/v1/admin/maintenance", summary="Maintenance mode")
async def get_maintenance(state: State) -> dict:
    return state.inference.maintenance.to_dict()


@router.post("/v1/admin/maintenance", summary="Turn maintenance mode on or off")
async def set_maintenance(body: MaintenanceBody, state: State, _key: AdminKey) -> dict:
    m = Maintenance(body.enabled, body.message, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def save():
        with state.db.session() as s:
            SettingsRepository(s).set("maintenance", m.to_dict())

    try:
        await asyncio.get_running_loop().run_in_executor(None, save)
    except StoreError as e:
        raise unavailable(f"cannot store maintenance mode: the database is unavailable ({e})") from None
    state.inference.maintenance = m
    return m.to_dict()
