"""``POST /v1/classify``: one PNG or JPEG image, for people and scripts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from spikeformer.serve.api.deps import InferKey, State
from spikeformer.serve.errors import bad_request, too_large

router = APIRouter(tags=["Classification"])


@router.post("/v1/classify", summary="Classify an uploaded image (multipart field 'file')")
async def classify(
    state: State,
    _key: InferKey,
    file: Annotated[UploadFile, File(description="PNG or JPEG")],
    model: Annotated[str | None, Form()] = None,
    version: Annotated[str | None, Form()] = None,
) -> dict:
    data = await read_upload(state, file)
    return await state.inference.classify(default_model(state, model), version, data)


async def read_upload(state, file: UploadFile) -> bytes:
    """The uploaded image's bytes, within the body limit and not empty (else 413 / 400)."""
    data = await file.read(state.settings.max_body_bytes + 1)
    if len(data) > state.settings.max_body_bytes:
        raise too_large(f"the image is larger than {state.settings.max_body_bytes} bytes")
    if not data:
        raise bad_request("the uploaded file is empty; send a PNG or JPEG image in the multipart field 'file'")
    return data


def default_model(state, model: str | None) -> str:
    """The named model, else the configured default, else the first model in the repository."""
    return model or state.settings.default_model or (state.repo.model_names() or [""])[0]
