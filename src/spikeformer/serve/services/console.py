"""What the operations console shows besides the inference protocol: this process's counters and the profile of an
uploaded image (firing rates, energy per hardware model, a spike raster)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import torch
from prometheus_client.metrics import MetricWrapperBase

from spikeformer.ops.database import Maintenance
from spikeformer.serve import metrics
from spikeformer.serve.services.inference import InferenceService

__all__ = ["RASTER_LAYERS", "RASTER_NEURONS", "TRY_HARDWARE", "process_stats", "profile_image", "try_image"]

TRY_HARDWARE = ("cmos45nm", "loihi", "loihi2", "spinnaker2")
RASTER_LAYERS = 4  # neuron layers shown in the raster, spread over the depth of the model
RASTER_NEURONS = 64  # neurons per layer shown (evenly spaced over the layer)


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


def process_stats(started_at: float, maintenance: Maintenance) -> dict[str, Any]:
    """This process's counters read from the Prometheus registry (``GET /v1/stats``).

    Args:
        started_at: When the service started (``time.time()``), for the uptime.
        maintenance: Maintenance mode in force.
    """
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
        "uptime_s": time.time() - started_at,
        "requests": {"total": sum(by_status.values()), "by_status": by_status, "by_model": by_model},
        "latency_seconds": _histogram(metrics.LATENCY),
        "energy_joules": _histogram(metrics.ENERGY),
        "spikes": _histogram(metrics.SPIKES),
        "in_flight": in_flight,
        "queue_depth": queued,
        "maintenance": maintenance.to_dict(),
    }


def profile_image(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Profile one preprocessed image and record a spike raster of a few neuron layers.

    Args:
        model: The model of the version that classified the image.
        x: The preprocessed image ``[1, C, H, W]``.

    Returns:
        ``timesteps``, ``firing_rates`` per neuron layer, ``total_spikes``, ``energy`` per hardware model of
        ``TRY_HARDWARE`` (with whether it rests on assumed constants) and ``raster``: up to ``RASTER_LAYERS`` layers
        of up to ``RASTER_NEURONS`` neurons, ``spikes[t][i]`` 1 where neuron ``indices[i]`` fired at step ``t``.
    """
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


async def try_image(inference: InferenceService, data: bytes, model: str | None, version: str | None) -> dict[str, Any]:
    """Classify an uploaded image like ``/v1/classify`` and profile the same decoded input (``POST /v1/console/try``).

    Args:
        inference: The inference service.
        data: The PNG or JPEG bytes.
        model: The model named in the form, if any (else the default model).
        version: The version named in the form, if any (else the active one).
    """
    prediction, mv, x = await inference.classify_image(inference.default_model(model), version, data)
    # The inference executor runs one task at a time: the profile never overlaps a batch on the same model.
    details = await asyncio.get_running_loop().run_in_executor(inference.executor, profile_image, mv.pipeline.model, x)
    return {"prediction": prediction, **details}
