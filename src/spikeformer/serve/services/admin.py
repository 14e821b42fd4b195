"""Operator actions on the in-process model repository: load, unload and roll back model versions.

They raise :class:`ServiceError` (404 unknown model, 409 nothing to roll back to). Maintenance mode is stored by
``spikeformer.ops.database`` (shared with the CLI).
"""

from __future__ import annotations

from typing import Any

from spikeformer.serve.errors import ServiceError, not_found
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError, ModelRepository

__all__ = ["load_model", "rollback", "unload_model"]


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
