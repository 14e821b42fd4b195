"""The operations console (``GET /console``) and the small JSON routes it reads besides the inference protocol.

- ``GET /console``: one HTML page; its script and style are served from ``serve/static`` by
  ``GET /console/assets/{name}`` (no CDN: the page works offline). Changes (acknowledge, update, resolve) need an
  ``admin`` key, typed into the page and kept in the tab's ``sessionStorage``.
- ``GET /v1/hardware``: ``spikeformer.hardware.hardware_status()`` (real readings only).
- ``GET /v1/stats``: counters of this process read from the Prometheus registry (requests by status, latency
  histogram, energy and spikes per inference); the page polls it and computes rates from the differences.
- ``POST /v1/console/try``: classify an uploaded image like ``/v1/classify`` and profile it: firing rate per layer,
  energy per hardware model with its assumptions, and a spike raster of a few neuron layers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, HTMLResponse
from prometheus_client.metrics import MetricWrapperBase

from spikeformer.serve import metrics
from spikeformer.serve.api.classify import default_model, read_upload
from spikeformer.serve.api.deps import InferKey, State
from spikeformer.serve.errors import not_found
from spikeformer.serve.services.tensors import decode_image

__all__ = ["RASTER_LAYERS", "RASTER_NEURONS", "TRY_HARDWARE", "router"]

router = APIRouter(tags=["Console"])

STATIC = Path(__file__).resolve().parent.parent / "static"
_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
TRY_HARDWARE = ("cmos45nm", "loihi", "loihi2", "spinnaker2")
RASTER_LAYERS = 4  # neuron layers shown in the raster, spread over the depth of the model
RASTER_NEURONS = 64  # neurons per layer shown (evenly spaced over the layer)


@router.get("/console", include_in_schema=False)
async def console_page() -> HTMLResponse:
    return HTMLResponse((STATIC / "console.html").read_text(encoding="utf-8"))


@router.get("/console/assets/{name}", include_in_schema=False)
async def console_asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise not_found(f"no console asset {name!r}; assets: {', '.join(sorted(_ASSETS))}")
    return FileResponse(STATIC / name, media_type=_ASSETS[name])


@router.get("/v1/hardware", summary="Backends and their real telemetry (nothing invented for absent hardware)")
async def hardware() -> dict:
    from spikeformer.hardware import hardware_status

    return await asyncio.get_running_loop().run_in_executor(None, hardware_status)


def _samples(metric: MetricWrapperBase) -> list[Any]:
    return [s for family in metric.collect() for s in family.samples]


def _histogram(metric: MetricWrapperBase) -> dict[str, Any]:
    count = total = 0.0
    buckets: dict[float, float] = {}
    for s in _samples(metric):
        if s.name.endswith("_count"):
            count += s.value
        elif s.name.endswith("_sum"):
            total += s.value
        elif s.name.endswith("_bucket"):
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
    return {
        "count": count,
        "sum": total,
        "buckets": [[le if le != float("inf") else "+Inf", n] for le, n in sorted(buckets.items())],
    }


@router.get("/v1/stats", summary="This process's request counters, latency and energy (poll and diff for rates)")
async def stats(state: State) -> dict:
    by_status: dict[str, float] = {}
    by_model: dict[str, float] = {}
    for s in _samples(metrics.REQUESTS):
        if s.name.endswith("_total"):
            by_status[s.labels["status"]] = by_status.get(s.labels["status"], 0.0) + s.value
            by_model[s.labels["model"]] = by_model.get(s.labels["model"], 0.0) + s.value
    in_flight = sum(s.value for s in _samples(metrics.IN_FLIGHT))
    queued = sum(s.value for s in _samples(metrics.QUEUE_DEPTH))
    return {
        "time": time.time(),
        "uptime_s": time.time() - state.started_at,
        "requests": {"total": sum(by_status.values()), "by_status": by_status, "by_model": by_model},
        "latency_seconds": _histogram(metrics.LATENCY),
        "energy_joules": _histogram(metrics.ENERGY),
        "spikes": _histogram(metrics.SPIKES),
        "in_flight": in_flight,
        "queue_depth": queued,
        "maintenance": state.inference.maintenance.to_dict(),
    }


def _profile(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Profile one preprocessed image and record a spike raster of a few neuron layers."""
    from spikeformer.energy import profile
    from spikeformer.nn import BaseNeuron

    neurons = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseNeuron)]
    if neurons:
        picks = sorted(set(np.linspace(0, len(neurons) - 1, min(RASTER_LAYERS, len(neurons))).round().astype(int)))
    else:
        picks = []
    raster: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str):
        def record(_module: torch.nn.Module, _inputs: Any, out: Any) -> None:
            spikes = out[0] if isinstance(out, tuple) else out
            if isinstance(spikes, torch.Tensor) and name not in raster:
                raster[name] = spikes.detach()

        return record

    for i in picks:
        name, module = neurons[i]
        handles.append(module.register_forward_hook(hook(name)))
    try:
        report = profile(model, x)
    finally:
        for h in handles:
            h.remove()
    timesteps = report.timesteps
    layers = []
    for name, _ in (neurons[i] for i in picks):
        out = raster.get(name)
        if out is None:
            continue
        # [T, B, ...] (multi-step) -> first image: [T, N]
        per_step = out[:, 0].reshape(out.shape[0], -1) if out.dim() >= 2 else out.reshape(1, -1)
        n = per_step.shape[1]
        idx = np.linspace(0, n - 1, min(RASTER_NEURONS, n)).round().astype(int)
        shown = (per_step[:, torch.from_numpy(idx)] > 0).to(torch.int8)
        layers.append(
            {
                "name": name,
                "neurons": int(n),
                "indices": idx.tolist(),
                "spikes": shown.tolist(),  # [T][shown neurons], 1 = spike
                "firing_rate": float((per_step > 0).float().mean()),
            }
        )
    energy = []
    for hw in TRY_HARDWARE:
        lines = report.energy_lines(hw)
        energy.append(
            {
                "hardware": hw,
                "joules": sum(line.joules for line in lines),
                "assumed": any(line.assumed for line in lines),
                "notes": sorted({line.note for line in lines if line.assumed and line.note}),
                "sources": sorted({line.source for line in lines if line.source}),
            }
        )
    return {
        "timesteps": timesteps,
        "firing_rates": [
            {"layer": r.name, "kind": r.kind, "rate": r.firing_rate}
            for r in report.layers
            if r.is_neuron and r.firing_rate is not None
        ],
        "total_spikes": report.total_spikes,
        "energy": energy,
        "raster": layers,
    }


@router.post("/v1/console/try", summary="Classify an image and show its firing rates, spike raster and energy")
async def try_model(
    state: State,
    _key: InferKey,
    file: Annotated[UploadFile, File(description="PNG or JPEG")],
    model: Annotated[str | None, Form()] = None,
    version: Annotated[str | None, Form()] = None,
) -> dict:
    data = await read_upload(state, file)
    prediction = await state.inference.classify(default_model(state, model), version, data)
    mv = state.inference.resolve(prediction["model_name"], prediction["model_version"])
    x = mv.pipeline.preprocess(decode_image(data, mv.pipeline.input_shape)[0])
    # The inference executor runs one task at a time: the profile never overlaps a batch on the same model.
    details = await asyncio.get_running_loop().run_in_executor(state.inference.executor, _profile, mv.pipeline.model, x)
    return {"prediction": prediction, **details}
