"""Model repository (Triton's extension) and operator endpoints; changes need an ``admin`` key."""

from __future__ import annotations

import asyncio
from functools import partial

from fastapi import APIRouter
from pydantic import BaseModel, Field

from spikeformer.ops.database import Maintenance, save_maintenance
from spikeformer.serve.api.deps import AdminKey, State
from spikeformer.serve.services import admin as admin_service
from spikeformer.serve.services.store_calls import run_store

__all__ = ["MaintenanceBody", "router"]

router = APIRouter(tags=["Model repository and operations"])


@router.post("/v2/repository/index", summary="Every model version and its state (Triton repository extension)")
async def repository_index(state: State) -> list[dict]:
    return state.repo.index()


@router.post("/v2/repository/models/{name}/load", summary="(Re)load every version of a model from disk")
async def load_model(name: str, state: State, _key: AdminKey) -> dict:
    versions = await asyncio.get_running_loop().run_in_executor(None, admin_service.load_model, state.repo, name)
    return {"name": name, "versions": versions}


@router.post("/v2/repository/models/{name}/unload", summary="Unload a model (all versions, or ?version=)")
async def unload_model(name: str, state: State, _key: AdminKey, version: str | None = None) -> dict:
    return {"name": name, "unloaded": admin_service.unload_model(state.repo, name, version)}


@router.post("/v1/admin/models/{name}/rollback", summary="Serve the previous ready version")
async def rollback(name: str, state: State, _key: AdminKey) -> dict:
    return {"name": name, "active_version": admin_service.rollback(state.repo, name)}


class MaintenanceBody(BaseModel):
    enabled: bool
    message: str = Field("", max_length=500)


@router.get("/v1/admin/maintenance", summary="Maintenance mode")
async def get_maintenance(state: State) -> dict:
    return state.inference.maintenance.to_dict()


@router.post("/v1/admin/maintenance", summary="Turn maintenance mode on or off")
async def set_maintenance(body: MaintenanceBody, state: State, _key: AdminKey) -> dict:
    m = Maintenance.now(body.enabled, body.message)
    await run_store(partial(save_maintenance, state.db, m), "store maintenance mode")
    state.inference.maintenance = m
    return m.to_dict()
