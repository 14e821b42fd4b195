"""Inference logic: validate, batch, run, answer, record. Routes call this; it never sees HTTP objects."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from spikeformer.ops.database import Maintenance
from spikeformer.serve import metrics
from spikeformer.serve.batcher import BatchResult, DynamicBatcher, QueueFullError
from spikeformer.serve.errors import ServiceError, not_found, timeout, unavailable
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError, ModelRepository, ModelVersion
from spikeformer.serve.records import RecordBuffer
from spikeformer.serve.services.tensors import decode_image, parse_input_tensor, requested_outputs
from spikeformer.settings import Settings

__all__ = ["InferenceService", "Maintenance", "EnergyEstimate"]


@dataclass
class EnergyEstimate:
    """Energy per image measured by the profiler on the checkpoint's sample images when the version loaded.

    A request's estimate scales ``joules_per_image`` by its spike count relative to ``spikes_per_image`` (the
    synaptic operations, which dominate the 45 nm model, grow with the spikes).
    """

    hardware: str
    joules_per_image: float
    spikes_per_image: float
    assumption: str = ""

    def for_spikes(self, spikes: float) -> float:
        if self.spikes_per_image <= 0:
            return self.joules_per_image
        return self.joules_per_image * spikes / self.spikes_per_image


ENERGY_HARDWARE = "cmos45nm"


def estimate_energy(mv: ModelVersion, n_random: int = 4) -> EnergyEstimate:
    """Profile a version once at load on its manifest's sample images (or seeded random images)."""
    from spikeformer.energy import profile

    samples = mv.manifest.sample_images()
    if samples is not None:
        images, source = samples[0], f"{len(samples[0])} reference images from the manifest"
    else:
        c, h, w = mv.pipeline.input_shape
        images = torch.randint(
            0, 256, (n_random, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        source = f"{n_random} random images (the manifest carries no samples)"
    report = profile(mv.pipeline.model, mv.pipeline.preprocess(images))
    for layer in report.layers:
        if layer.is_neuron and layer.firing_rate is not None:
            metrics.LAYER_FIRING_RATE.labels(mv.name, layer.name).set(layer.firing_rate)
    note = (
        f"45 nm CMOS energy model (E_MAC 4.6 pJ, E_AC 0.9 pJ; Horowitz, ISSCC 2014) profiled at load on "
        f"{source}, scaled by each image's spike count"
    )
    return EnergyEstimate(ENERGY_HARDWARE, report.energy(ENERGY_HARDWARE), report.total_spikes, note)


@dataclass
class InferenceService:
    repo: ModelRepository
    settings: Settings
    records: RecordBuffer
    executor: ThreadPoolExecutor
    maintenance: Maintenance = field(default_factory=Maintenance)
    batchers: dict[tuple[str, str], DynamicBatcher] = field(default_factory=dict)
    energy: dict[tuple[str, str], EnergyEstimate] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ model lifecycle hooks
    def attach(self, mv: ModelVersion) -> None:
        """Create the batcher of a version that became ready (called from the repository, any thread).

        The energy profile runs first: when it raises, no batcher is left behind (the repository fails the version).
        """
        energy = estimate_energy(mv)
        runner = mv.pipeline.runner

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, stats = runner.run_with_stats(x)
            return logits, stats.spikes

        batcher = DynamicBatcher(
            run,
            self.executor,
            self.settings.max_batch_size,
            self.settings.max_queue_delay_ms / 1000,
            self.settings.queue_capacity,
            f"{mv.name}",
            enabled=self.settings.dynamic_batching,
            capacity_images=self.settings.queue_capacity_images,
            idle_trim_s=self.settings.idle_trim_s,
        )
        self.energy[(mv.name, mv.version)] = energy
        self.batchers[(mv.name, mv.version)] = batcher
        metrics.BACKEND_UP.labels(runner.backend).set(1)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(batcher.start)

    def detach(self, mv: ModelVersion) -> None:
        batcher = self.batchers.pop((mv.name, mv.version), None)
        if batcher is not None and self.loop is not None:
            asyncio.run_coroutine_threadsafe(batcher.stop(), self.loop)

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop(self.settings.shutdown_timeout_s) for b in self.batchers.values()))

    # ------------------------------------------------------------------ lookup
    def default_model(self, model: str | None) -> str:
        """The named model, else the configured default, else the first model in the repository."""
        return model or self.settings.default_model or (self.repo.model_names() or [""])[0]

    def resolve(self, name: str, version: str | None) -> ModelVersion:
        try:
            return self.repo.get(name, version)
        except ModelNotFoundError as e:
            raise not_found(str(e)) from None
        except ModelNotReadyError as e:
            raise unavailable(str(e), self.settings.retry_after_s) from None

    def check_maintenance(self) -> None:
        if self.maintenance.enabled:
            raise unavailable(
                f"maintenance mode: {self.maintenance.message or 'inference is paused'}", self.settings.retry_after_s
            )

    def queue_full(self, name: str, version: str | None) -> str | None:
        """Why a request for this model would be turned away now (its batch queue is full), else ``None``; unknown or
        unready models are left to the endpoint's own answer."""
        try:
            mv = self.repo.get(name, version)
        except (ModelNotFoundError, ModelNotReadyError):
            return None
        batcher = self.batchers.get((mv.name, mv.version))
        if batcher is None or batcher.depth < batcher.capacity:
            return None
        metrics.REQUESTS.labels(mv.name, mv.version, "rejected").inc()
        return f"the queue of {mv.name} is full ({batcher.capacity} requests); retry later"

    # ------------------------------------------------------------------ running
    async def _run(self, mv: ModelVersion, x: torch.Tensor) -> BatchResult:
        batcher = self.batchers.get((mv.name, mv.version))
        if batcher is None:
            raise unavailable(f"model {mv.name!r} version {mv.version!r} is not serving", self.settings.retry_after_s)
        try:
            return await asyncio.wait_for(batcher.submit(x), self.settings.request_timeout_s)
        except QueueFullError as e:
            raise ServiceError(
                503, f"{e}; retry later", {"Retry-After": str(self.settings.retry_after_s)}, kind="rejected"
            ) from None
        except TimeoutError:
            raise timeout(f"inference did not finish within {self.settings.request_timeout_s:g} s") from None

    async def predict(self, name: str, version: str | None, make_input) -> tuple[ModelVersion, BatchResult, dict]:
        """Common path of every inference endpoint: maintenance, lookup, input, batch, metrics, record.

        ``make_input(mv) -> (x [B, C, H, W] preprocessed float, extra info dict)``, or an awaitable of it, raises 400
        errors itself.
        """
        start = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        mv: ModelVersion | None = None
        record: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "model": name,
            "version": version or "",
            "backend": "",
            "batch_size": 0,
        }
        try:
            self.check_maintenance()
            mv = self.resolve(name, version)
            record.update(version=mv.version, backend=mv.pipeline.runner.backend)
            made = make_input(mv)
            x, info = await made if inspect.isawaitable(made) else made
            result = await self._run(mv, x)
            spikes = result.spikes.double()
            est = self.energy.get((mv.name, mv.version))
            energy = [est.for_spikes(float(s)) for s in spikes] if est else None
            latency = time.perf_counter() - start
            metrics.REQUESTS.labels(mv.name, mv.version, "ok").inc()
            metrics.LATENCY.labels(mv.name).observe(latency)
            metrics.QUEUE_LATENCY.labels(mv.name).observe(result.queue_s)
            for s in spikes.tolist():
                metrics.SPIKES.labels(mv.name).observe(s)
            for e in energy or []:
                metrics.ENERGY.labels(mv.name).observe(e)
            record.update(
                status="ok",
                http_status=200,
                latency_ms=latency * 1e3,
                queue_ms=result.queue_s * 1e3,
                compute_ms=result.compute_s * 1e3,
                batch_size=result.batch_size,
                spikes=int(spikes.sum()),
                energy_j=float(sum(energy)) if energy else None,
            )
            info.update(
                spikes=[int(s) for s in spikes.tolist()],
                energy=energy,
                estimate=est,
                latency_s=latency,
                record_id=record["id"],
            )
            return mv, result, info
        except ServiceError as e:
            latency = time.perf_counter() - start
            status = {"timeout": "timeout", "rejected": "rejected"}.get(e.kind, "error")
            if mv is not None:
                labels = (mv.name, mv.version)
            else:  # the client's names become labels only when the repository holds them
                held = self.repo.versions(name)
                labels = metrics.request_labels({name: [v.version for v in held]} if held else {}, name, version)
            metrics.REQUESTS.labels(*labels, e.kind).inc()
            if mv is not None:  # only attempts that reached a model are inference records
                record.update(status=status, http_status=e.status, latency_ms=latency * 1e3, error=e.message[:500])
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            if "status" in record:
                record["created_at"] = dt.datetime.now(dt.UTC)
                self.records.add(record)

    # ------------------------------------------------------------------ endpoints' logic
    async def infer(self, name: str, version: str | None, body: Any) -> dict[str, Any]:
        """Open Inference Protocol ``infer``."""
        outputs = requested_outputs(body) if isinstance(body, dict) else None

        def make_input(mv: ModelVersion):
            x, dtype = parse_input_tensor(body, mv.pipeline.input_shape, self.settings.max_images_per_request)
            if dtype == "UINT8":
                x = mv.pipeline.preprocess(x)
            return x, {}

        mv, result, info = await self.predict(name, version, make_input)
        logits = result.logits
        out = []
        for n in outputs or []:
            if n == "logits":
                out.append(
                    {
                        "name": "logits",
                        "shape": list(logits.shape),
                        "datatype": "FP32",
                        "data": logits.flatten().tolist(),
                    }
                )
            else:
                out.append(
                    {"name": "class", "shape": [len(logits)], "datatype": "INT64", "data": logits.argmax(1).tolist()}
                )
        response = {
            "model_name": mv.name,
            "model_version": mv.version,
            "outputs": out,
            "parameters": self._parameters(mv, result, info),
        }
        if isinstance(body, dict) and "id" in body:
            response["id"] = body["id"]
        return response

    def _parameters(self, mv: ModelVersion, result: BatchResult, info: dict) -> dict[str, Any]:
        est: EnergyEstimate | None = info.get("estimate")
        p = {
            "backend": mv.pipeline.runner.backend,
            "spikes": info["spikes"],
            "spikes_total": sum(info["spikes"]),
            "batch_size": result.batch_size,
            "queue_ms": round(result.queue_s * 1e3, 3),
            "compute_ms": round(result.compute_s * 1e3, 3),
            "record_id": info.get("record_id"),
        }
        if est is not None:
            p.update(energy_j=info["energy"], energy_model=est.hardware, energy_note=est.assumption)
        return p

    async def classify(self, name: str, version: str | None, data: bytes) -> dict[str, Any]:
        """One PNG/JPEG image -> class, probabilities, spikes, energy."""
        return (await self.classify_image(name, version, data))[0]

    async def classify_image(
        self, name: str, version: str | None, data: bytes
    ) -> tuple[dict[str, Any], ModelVersion, torch.Tensor]:
        """:meth:`classify`, and also the version that answered and the image as it entered the model.

        The image is decoded and preprocessed once; callers that look further at the same input (the console's
        profile) reuse it.

        Returns:
            ``(answer, version, x)``: the ``/v1/classify`` answer, the model version, and the preprocessed
            input ``[1, C, H, W]``.
        """

        def decode(mv: ModelVersion) -> tuple[torch.Tensor, dict[str, Any]]:
            images, original = decode_image(data, mv.pipeline.input_shape, self.settings.max_image_pixels)
            x = mv.pipeline.preprocess(images)
            return x, {"original_size": original, "input": x}

        async def make_input(mv: ModelVersion) -> tuple[torch.Tensor, dict[str, Any]]:
            # decoding is CPU work on the client's bytes: a worker thread, never the event loop
            return await asyncio.to_thread(decode, mv)

        mv, result, info = await self.predict(name, version, make_input)
        probs = torch.softmax(result.logits[0], 0)
        k = int(probs.argmax())
        names = mv.manifest.class_names
        return (
            {
                "model_name": mv.name,
                "model_version": mv.version,
                "class_index": k,
                "class_name": names[k] if k < len(names) else str(k),
                "probabilities": {
                    names[i] if i < len(names) else str(i): round(float(p), 6) for i, p in enumerate(probs)
                },
                "original_size": info["original_size"],
                "parameters": self._parameters(mv, result, info),
            },
            mv,
            info["input"],
        )
