"""Operator actions: load, unload and roll back model versions, and maintenance mode.

The model actions work on the in-process model repository and raise :class:`ServiceError` (404 unknown model,
409 nothing to roll back to); ``save_maintenance`` is a blocking store call that routes run through ``run_store``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from spikeformer.serve.errors import ServiceError, not_found
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError, ModelRepository
from spikeformer.serve.services.inference import Maintenance
from spikeformer.store import Database, SettingsRepository

__all__ = ["load_model", "maintenance_now", "rollback", "save_maintenance", "unload_model"]


def load_model(repo: ModelRepository, name: str) -> list[dict[str, Any]]:
    """(Re)load every version of ``name`` from disk (blocking: verifies and builds each version).

    Returns:
        One ``{"name", "version", "state", "reason"}`` per version, ``state`` as the repository extension spells it
        (``READY``, ``FAILED`` ...).
    """
    try:
        versions = repo.load_model(name)
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


def unload_model(repo: ModelRepository, name: str, version: str | None) -> list[str]:
    """Unload every version of ``name`` (or only ``version``); the versions unloaded."""
    try:
        gone = repo.unload(name, version)
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    return [v.version for v in gone]


def rollback(repo: ModelRepository, name: str) -> str:
    """Serve the previous ready version of ``name``; the version now active (409 when there is none)."""
    try:
        mv = repo.rollback(name)
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    except ModelNotReadyError as e:
        raise ServiceError(409, str(e), kind="conflict") from None
    return mv.version


def maintenance_now(enabled: bool, message: str) -> Maintenance:
    """Maintenance mode as an operator sets it now (``since``: the current UTC time, to the second)."""
    return Maintenance(enabled, message, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def save_maintenance(db: Database, maintenance: Maintenance) -> None:
    """Store maintenance mode, where every replica's settings poll reads it. Blocking; raises ``StoreError``."""
    with db.session() as s:
        SettingsRepository(s).set("maintenance", maintenance.to_dict())
