"""The model repository: ``<root>/<model>/<version>/`` checkpoint folders, each verified (sha256) before loading.

A version that is missing, corrupt or fails to load is recorded as ``failed`` with its reason; the other versions
and models keep serving. The active version of a model is the newest ready one unless an operator pinned another
(``rollback`` pins the previous ready version).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikeformer.checkpoint import MANIFEST_FILE, CheckpointError, IntegrityError, Manifest
from spikeformer.pipeline import Pipeline, load_pipeline
from spikeformer.serve import metrics

__all__ = ["ModelVersion", "ModelRepository", "ModelNotFoundError", "ModelNotReadyError"]

log = logging.getLogger("spikeformer.serve.models")


class ModelNotFoundError(LookupError):
    """No such model or version in the repository."""


class ModelNotReadyError(RuntimeError):
    """The model version exists but is not loaded."""


def _version_key(v: str) -> tuple[int, int | str]:
    return (0, int(v)) if v.isdigit() else (1, v)


@dataclass
class ModelVersion:
    """One version folder and what became of it."""

    name: str
    version: str
    path: Path
    status: str = "unloaded"  # ready | failed | unloaded
    error: str | None = None
    pipeline: Pipeline | None = None
    manifest: Manifest | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == "ready" and self.pipeline is not None


class ModelRepository:
    """Scan, verify, load, unload and roll back model versions.

    Args:
        root: repository folder.
        device, precision: passed to every ``Runner``.
        on_load: called with each ``ModelVersion`` that became ready (the service attaches its batcher there).
    """

    def __init__(
        self, root: str | Path, device: str = "cpu", precision: str = "fp32", on_load=None, on_unload=None
    ) -> None:
        self.root = Path(root)
        self.device = device
        self.precision = precision
        self._on_load = on_load
        self._on_unload = on_unload
        self._versions: dict[tuple[str, str], ModelVersion] = {}
        self._pinned: dict[str, str] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ discovery and loading
    def scan(self) -> list[tuple[str, str, Path]]:
        """Every ``<model>/<version>/`` folder under the root (a folder that holds a manifest or weights)."""
        if not self.root.is_dir():
            return []
        found = []
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for vdir in sorted((p for p in model_dir.iterdir() if p.is_dir()), key=lambda p: _version_key(p.name)):
                found.append((model_dir.name, vdir.name, vdir))
        return found

    def load_all(self) -> list[ModelVersion]:
        return [self.load(name, version) for name, version, _ in self.scan()]

    def load(self, name: str, version: str) -> ModelVersion:
        """Verify and load one version; failures are recorded, logged and counted, never raised."""
        path = self.root / name / version
        mv = ModelVersion(name, version, path)
        try:
            if not path.is_dir():
                raise CheckpointError(f"{path} does not exist")
            mv.pipeline = load_pipeline(path, device=self.device, precision=self.precision)
            mv.manifest = mv.pipeline.manifest
            mv.status, mv.error = "ready", None
        except IntegrityError as e:
            mv.status, mv.error = "failed", str(e)
            metrics.MODEL_LOAD_FAILURES.labels(name, version, "integrity").inc()
        except (CheckpointError, ValueError, OSError, RuntimeError) as e:
            mv.status, mv.error = "failed", str(e)
            metrics.MODEL_LOAD_FAILURES.labels(name, version, "load").inc()
        if mv.status == "failed":
            log.error("model %s version %s is NOT ready: %s", name, version, mv.error)
        else:
            log.info("model %s version %s ready (sha256 %s)", name, version, mv.manifest.sha256[:12])
        with self._lock:
            old = self._versions.get((name, version))
            self._versions[(name, version)] = mv
        if old is not None and old.ready and self._on_unload:
            self._on_unload(old)
        metrics.MODEL_READY.labels(name, version).set(1 if mv.ready else 0)
        if mv.ready and self._on_load:
            self._on_load(mv)
        return mv

    def load_model(self, name: str) -> list[ModelVersion]:
        """(Re)load every version folder of ``name``."""
        versions = [(n, v) for n, v, _ in self.scan() if n == name]
        if not versions:
            raise ModelNotFoundError(f"no model {name!r} in {self.root}; models: {self.model_names()}")
        return [self.load(n, v) for n, v in versions]

    def unload(self, name: str, version: str | None = None) -> list[ModelVersion]:
        with self._lock:
            targets = [mv for (n, v), mv in self._versions.items() if n == name and (version is None or v == version)]
        if not targets:
            raise ModelNotFoundError(f"no loaded model {name!r}" + (f" version {version!r}" if version else ""))
        for mv in targets:
            if mv.ready and self._on_unload:
                self._on_unload(mv)
            mv.status, mv.pipeline = "unloaded", None
            metrics.MODEL_READY.labels(mv.name, mv.version).set(0)
        return targets

    # ------------------------------------------------------------------ lookup
    def model_names(self) -> list[str]:
        with self._lock:
            return sorted({n for n, _ in self._versions})

    def versions(self, name: str) -> list[ModelVersion]:
        with self._lock:
            out = [mv for (n, _), mv in self._versions.items() if n == name]
        return sorted(out, key=lambda mv: _version_key(mv.version))

    def all_versions(self) -> list[ModelVersion]:
        with self._lock:
            return sorted(self._versions.values(), key=lambda mv: (mv.name, _version_key(mv.version)))

    def active_version(self, name: str) -> ModelVersion | None:
        """The pinned version if ready, else the newest ready version."""
        versions = self.versions(name)
        pinned = self._pinned.get(name)
        for mv in versions:
            if mv.version == pinned and mv.ready:
                return mv
        ready = [mv for mv in versions if mv.ready]
        return ready[-1] if ready else None

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The version to serve; raises ``ModelNotFoundError`` / ``ModelNotReadyError``."""
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(f"unknown model {name!r}; available: {self.model_names()}")
        if version is None:
            mv = self.active_version(name)
            if mv is None:
                reasons = "; ".join(f"version {v.version}: {v.status} ({v.error})" for v in versions)
                raise ModelNotReadyError(f"model {name!r} has no ready version: {reasons}")
            return mv
        for mv in versions:
            if mv.version == version:
                if not mv.ready:
                    raise ModelNotReadyError(
                        f"model {name!r} version {version!r} is not ready: {mv.status}"
                        + (f" ({mv.error})" if mv.error else "")
                    )
                return mv
        raise ModelNotFoundError(
            f"model {name!r} has no version {version!r}; versions: {[v.version for v in versions]}"
        )

    def is_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.get(name, version)
            return True
        except (ModelNotFoundError, ModelNotReadyError):
            return False

    def rollback(self, name: str) -> ModelVersion:
        """Pin the newest ready version older than the active one."""
        if not self.versions(name):
            raise ModelNotFoundError(f"unknown model {name!r}; available: {self.model_names()}")
        current = self.active_version(name)
        if current is None:
            raise ModelNotReadyError(f"model {name!r} has no ready version to roll back from")
        older = [
            mv for mv in self.versions(name) if mv.ready and _version_key(mv.version) < _version_key(current.version)
        ]
        if not older:
            raise ModelNotReadyError(f"model {name!r}: no ready version older than {current.version}")
        self._pinned[name] = older[-1].version
        return older[-1]

    def pin(self, name: str, version: str | None) -> None:
        if version is None:
            self._pinned.pop(name, None)
        else:
            self.get(name, version)
            self._pinned[name] = version

    def index(self) -> list[dict[str, Any]]:
        """Triton's repository index: one entry per version with its state and reason."""
        return [
            {
                "name": mv.name,
                "version": mv.version,
                "state": "READY" if mv.ready else mv.status.upper(),
                "reason": mv.error or "",
            }
            for mv in self.all_versions()
        ]

    def manifest_on_disk(self, name: str, version: str) -> Path:
        return self.root / name / version / MANIFEST_FILE
