"""What the running service holds (one object on ``app.state.svc``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spikeformer.serve.model_repository import ModelRepository
from spikeformer.serve.records import RecordBuffer
from spikeformer.serve.services.inference import InferenceService
from spikeformer.serve.thermal import ThermalGuard
from spikeformer.settings import Settings
from spikeformer.store import Database

__all__ = ["ServiceState"]


@dataclass
class ServiceState:
    settings: Settings
    db: Database
    repo: ModelRepository
    records: RecordBuffer
    inference: InferenceService
    thermal: ThermalGuard
    started_at: float = 0.0
    # The status page's database part: (time.monotonic() it expires at, what was read or None when it failed).
    status_cache: tuple[float, dict[str, Any] | None] | None = None

    def apply_thermal_limits(self) -> None:
        """Push the thermal guard's batch size and queue capacity to every batcher."""
        batch, capacity = self.thermal.limits()
        for b in self.inference.batchers.values():
            if self.settings.dynamic_batching:
                b.max_batch_size = batch
            b.capacity = capacity

    @property
    def required_models(self) -> list[str]:
        return self.settings.required_models or self.repo.model_names()

    def readiness(self) -> tuple[bool, dict]:
        """Ready when every required model has a ready version; the body also says if the database is degraded."""
        models = {}
        for name in self.required_models:
            mv = self.repo.active_version(name)
            models[name] = {"ready": mv is not None, "version": mv.version if mv else None}
        ready = bool(models) and all(m["ready"] for m in models.values())
        db_state = "ok" if self.records.healthy else "degraded"
        body = {
            "ready": ready,
            "status": "ready" if ready else "not ready",
            "database": db_state,
            "records_buffered": len(self.records),
            "records_dropped": self.records.dropped,
            "maintenance": self.inference.maintenance.to_dict(),
            "models": models,
            "thermal_protection": self.thermal.active,
        }
        if not self.records.healthy:
            body["database_error"] = self.records.last_error
        return ready, body
