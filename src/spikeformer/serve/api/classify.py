"""``POST /v1/classify``: one PNG or JPEG image, for people and scripts."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from spikeformer.serve.api import deps
from spikeformer.serve.api.deps import InferKey, State

__all__ = ["router"]

router = APIRouter(tags=["Classification"])


@router.post("/v1/classify", summary="Classify an uploaded image (multipart field 'file')")
async def classify(
    state: State,
    _key: InferKey,
    file: Annotated[UploadFile, File(description="PNG or JPEG")],
    model: Annotated[str | None, Form()] = None,
    version: Annotated[str | None, Form()] = None,
) -> dict:
    data = await deps.read_upload(state, file)
    return await state.inference.classify(state.inference.default_model(model), version, data)


def _default_model(state: Any, model: str | None) -> str:
    return state.inference.default_model(model)


_MOVED = {
    "read_upload": "spikeformer.serve.api.deps.read_upload",
    "default_model": "spikeformer.serve.services.inference.InferenceService.default_model",
}


def __getattr__(name: str) -> Any:
    """The upload helpers once defined here, with a DeprecationWarning (``default_model(state, model)`` forwards to
    ``state.inference.default_model(model)``)."""
    if name in _MOVED:
        warnings.warn(
            f"spikeformer.serve.api.classify.{name} moved to {_MOVED[name]}; use it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return deps.read_upload if name == "read_upload" else _default_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
