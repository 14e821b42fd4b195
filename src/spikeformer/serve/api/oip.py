"""Open Inference Protocol (KServe V2) routes: health, server and model metadata, inference."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from spikeformer import __version__
from spikeformer.serve.api.deps import InferKey, State, json_body
from spikeformer.serve.errors import ServiceError, not_found
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError, ModelVersion

router = APIRouter(tags=["Open Inference Protocol"])


@router.get("/v2/health/live", summary="Liveness: 200 while the process serves HTTP")
async def live() -> Response:
    return JSONResponse({"live": True})


@router.get("/v2/health/ready", summary="Readiness: 200 when every required model is ready, else 503")
async def ready(state: State) -> Response:
    ok, body = state.readiness()
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/v2", summary="Server metadata")
async def server_metadata() -> dict:
    return {"name": "spikeformer", "version": __version__, "extensions": ["model_repository", "classification"]}


def _metadata(state, name: str, version: str | None) -> dict:
    versions = state.repo.versions(name)
    if not versions:
        raise not_found(f"unknown model {name!r}; available: {state.repo.model_names()}")
    mv: ModelVersion | None
    if version is None:
        mv = state.repo.active_version(name) or versions[-1]
    else:
        mv = next((v for v in versions if v.version == version), None)
        if mv is None:
            raise not_found(f"model {name!r} has no version {version!r}; versions: {[v.version for v in versions]}")
    body = {
        "name": name,
        "versions": [v.version for v in versions],
        "platform": "pytorch_spikeformer",
        "parameters": {"state": "READY" if mv.ready else mv.status.upper(), "reason": mv.error or ""},
    }
    if mv.manifest is not None:
        c, h, w = (
            mv.pipeline.input_shape
            if mv.pipeline
            else (mv.manifest.preprocess.channels, *mv.manifest.preprocess.image_size)
        )
        k = len(mv.manifest.class_names)
        body["inputs"] = [
            {
                "name": "images",
                "datatype": "UINT8",
                "shape": [-1, c, h, w],
                "parameters": {"also_accepted": "FP32 (preprocessed input); [-1, H, W] when C = 1"},
            }
        ]
        body["outputs"] = [
            {"name": "logits", "datatype": "FP32", "shape": [-1, k]},
            {"name": "class", "datatype": "INT64", "shape": [-1]},
        ]
        body["parameters"].update(
            sha256=mv.manifest.sha256,
            class_names=mv.manifest.class_names,
            timesteps=mv.manifest.timesteps,
            model=mv.manifest.model_name,
            metrics={k2: v for k2, v in mv.manifest.metrics.items() if k2 != "per_class"},
        )
    return body


@router.get("/v2/models/{name}", summary="Model metadata (active version)")
async def model_metadata(name: str, state: State) -> dict:
    return _metadata(state, name, None)


@router.get("/v2/models/{name}/versions/{version}", summary="Model version metadata")
async def model_version_metadata(name: str, version: str, state: State) -> dict:
    return _metadata(state, name, version)


def _ready_response(state, name: str, version: str | None) -> Response:
    try:
        state.repo.get(name, version)
        return JSONResponse({"name": name, "ready": True})
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    except ModelNotReadyError as e:
        return JSONResponse({"name": name, "ready": False, "reason": str(e)}, status_code=400)


@router.get("/v2/models/{name}/ready", summary="Model readiness (200 ready, 400 not ready)")
async def model_ready(name: str, state: State) -> Response:
    return _ready_response(state, name, None)


@router.get("/v2/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def model_version_ready(name: str, version: str, state: State) -> Response:
    return _ready_response(state, name, version)


_INFER_DOC = (
    'Body: `{"id"?, "inputs": [{"name", "shape", "datatype": "UINT8"|"FP32", "data"}], "outputs"?: '
    '[{"name": "logits"|"class"}]}`'
)


@router.post("/v2/models/{name}/infer", summary="Inference (active version)", description=_INFER_DOC)
async def infer(name: str, request: Request, state: State, _key: InferKey) -> dict:
    body = await json_body(request, state.settings.max_body_bytes)
    return await state.inference.infer(name, None, body)


@router.post("/v2/models/{name}/versions/{version}/infer", summary="Inference (given version)", description=_INFER_DOC)
async def infer_version(name: str, version: str, request: Request, state: State, _key: InferKey) -> dict:
    body = await json_body(request, state.settings.max_body_bytes)
    return await state.inference.infer(name, version, body)


__all__ = ["router", "ServiceError"]
