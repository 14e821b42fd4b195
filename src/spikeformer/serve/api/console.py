"""The operations console (``GET /console``) and the small JSON routes it reads besides the inference protocol.

- ``GET /console``: one HTML page; its script and style are served from ``serve/static`` by
  ``GET /console/assets/{name}`` (no CDN: the page works offline). Changes (acknowledge, update, resolve) need an
  ``admin`` key, typed into the page and kept in the tab's ``sessionStorage``; so the page and its assets carry a
  Content-Security-Policy that runs only the service's own script and style (nothing inline, no other origin, no
  framing: ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``) and ``X-Content-Type-Options: nosniff``.
- ``GET /v1/hardware``: ``spikeformer.hardware.hardware_status()`` (real readings only).
- ``GET /v1/stats``: counters of this process read from the Prometheus registry (requests by status, latency
  histogram, energy and spikes per inference); the page polls it and computes rates from the differences.
- ``POST /v1/console/try``: classify an uploaded image like ``/v1/classify`` and profile it: firing rate per layer,
  energy per hardware model with its assumptions, and a spike raster of a few neuron layers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, HTMLResponse

from spikeformer._deprecation import moved_names
from spikeformer.serve.api.deps import InferKey, State, read_upload
from spikeformer.serve.errors import not_found
from spikeformer.serve.services import console as console_service

__all__ = ["CONSOLE_CSP", "router"]

router = APIRouter(tags=["Console"])

STATIC = Path(__file__).resolve().parent.parent / "static"
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
# the profile's constants live in services.console; importing them from here warns
__getattr__ = moved_names(
    __name__, dict.fromkeys(("RASTER_LAYERS", "RASTER_NEURONS", "TRY_HARDWARE"), "spikeformer.serve.services.console")
)


@router.get("/console", include_in_schema=False)
async def console_page() -> HTMLResponse:
    return HTMLResponse((STATIC / "console.html").read_text(encoding="utf-8"), headers=_HEADERS)


@router.get("/console/assets/{name}", include_in_schema=False)
async def console_asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise not_found(f"no console asset {name!r}; assets: {', '.join(sorted(_ASSETS))}")
    return FileResponse(STATIC / name, media_type=_ASSETS[name], headers=_HEADERS)


@router.get("/v1/hardware", summary="Backends and their real telemetry (nothing invented for absent hardware)")
async def hardware() -> dict:
    from spikeformer.hardware import hardware_status

    return await asyncio.get_running_loop().run_in_executor(None, hardware_status)


@router.get("/v1/stats", summary="This process's request counters, latency and energy (poll and diff for rates)")
async def stats(state: State) -> dict:
    return console_service.process_stats(state.started_at, state.inference.maintenance)


@router.post("/v1/console/try", summary="Classify an image and show its firing rates, spike raster and energy")
async def try_model(
    state: State,
    _key: InferKey,
    file: Annotated[UploadFile, File(description="PNG or JPEG")],
    model: Annotated[str | None, Form()] = None,
    version: Annotated[str | None, Form()] = None,
) -> dict:
    data = await read_upload(state, file)
    return await console_service.try_image(state.inference, data, model, version)
