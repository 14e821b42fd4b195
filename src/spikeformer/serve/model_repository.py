"""The model repository: ``<root>/<model>/<version>/`` checkpoint folders, each verified (sha256) before loading.

A version that is missing, corrupt or fails to load is recorded as ``failed`` with its reason; the other versions
and models keep serving. Everything done when a version loads happens inside one failure boundary
(:meth:`ModelRepository.load`): manifest parsing and its schema, the weights' sha256, building the model and its runner,
and the ``on_load`` callback (where the service decodes the sample images, profiles energy and starts the batcher). A
version is published as ready only once all of that succeeded.

The reasons are shown to keyless readers (``/v2/repository/index``, readiness and metadata), so they name files
relative to the repository root (``tiny/3/model.safetensors``) and carry no absolute host path; the full message is
logged. The active version of a model is the newest ready one unless an operator pinned another (``rollback`` pins
the previous ready version).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikeformer.checkpoint import MANIFEST_FILE, CheckpointError, IntegrityError, Manifest
from spikeformer.pipeline import Pipeline, load_pipeline
from spikeformer.serve import metrics

__all__ = ["ModelVersion", "ModelRepository", "ModelNotFoundError", "ModelNotReadyError"]

log = logging.getLogger("spikeformer.serve.models")


_SHOWN_MAX = 80  # characters of a client-supplied name repeated in an error message


def _shown(text: str) -> str:
    """``repr(text)``, cut to its first characters when long (a client's name is echoed, never a megabyte of it)."""
    return repr(text) if len(text) <= _SHOWN_MAX else f"{text[:_SHOWN_MAX]!r}... ({len(text):,} characters)"


class ModelNotFoundError(LookupError):
    """No such model or version in the repository."""


class ModelNotReadyError(RuntimeError):
    """The model version exists but is not loaded."""


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/[^\s'\"(),;]+")


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

    def public_reason(self, message: str) -> str:
        """``message`` with paths under the repository made relative to it and any other absolute path hidden."""
        for root in sorted(
            {str(self.root.resolve()), str(self.root.absolute()), str(self.root)}, key=len, reverse=True
        ):
            if root not in (".", ""):
                message = message.replace(root.rstrip("/") + "/", "")
        return _ABSOLUTE_PATH.sub("<host path>", message)

    def _fail(self, mv: ModelVersion, error: BaseException, reason: str) -> None:
        log.error("model %s version %s is NOT ready: %s", mv.name, mv.version, error)
        mv.status, mv.error, mv.pipeline = "failed", self.public_reason(str(error)), None
        metrics.MODEL_LOAD_FAILURES.labels(mv.name, mv.version, reason).inc()

    def load(self, name: str, version: str) -> ModelVersion:
        """Verify and load one version, then hand it to ``on_load``; failures are recorded, logged and counted.

        Nothing raised while loading escapes: the version becomes ``failed`` with the reason, what ``on_load`` set up
        is handed to ``on_unload``, and the other versions keep serving. The new version replaces the previous one
        of the same name and version (handed to ``on_unload`` first) and is published once ``on_load`` returned.
        """
        path = self.root / name / version
        mv = ModelVersion(name, version, path)
        try:
            if not path.is_dir():
                raise CheckpointError(f"{path} does not exist")
            mv.pipeline = load_pipeline(path, device=self.device, precision=self.precision)
            mv.manifest = mv.pipeline.manifest
            mv.status, mv.error = "ready", None
        except IntegrityError as e:
            self._fail(mv, e, "integrity")
        except (CheckpointError, ValueError, OSError, RuntimeError) as e:
            self._fail(mv, e, "load")
        except Exception as e:  # noqa: BLE001 - the failure boundary: any error fails this version only
            log.exception("model %s version %s: unexpected error while loading", name, version)
            self._fail(mv, e, "load")
        with self._lock:
            old = self._versions.get((name, version))
        if old is not None and old.ready and self._on_unload:
            self._on_unload(old)
        if mv.ready and self._on_load:
            try:
                self._on_load(mv)
            except Exception as e:  # noqa: BLE001 - sample decoding, energy profiling, warm-up, batcher start
                log.exception("model %s version %s: cannot start serving it", name, version)
                if self._on_unload:
                    try:
                        self._on_unload(mv)
                    except Exception:  # noqa: BLE001
                        log.exception("model %s version %s: cleaning up after the failed load failed", name, version)
                self._fail(mv, e, "load")
                mv.error = f"cannot start serving it: {mv.error}"
        if mv.ready:
            log.info("model %s version %s ready (sha256 %s)", name, version, mv.manifest.sha256[:12])
        with self._lock:
            self._versions[(name, version)] = mv
        metrics.MODEL_READY.labels(name, version).set(1 if mv.ready else 0)
        return mv

    def load_model(self, name: str) -> list[ModelVersion]:
        """(Re)load every version folder of ``name``."""
        versions = [(n, v) for n, v, _ in self.scan() if n == name]
        if not versions:
            raise ModelNotFoundError(f"no model {_shown(name)} in {self.root}; models: {self.model_names()}")
        return [self.load(n, v) for n, v in versions]

    def unload(self, name: str, version: str | None = None) -> list[ModelVersion]:
        with self._lock:
            targets = [mv for (n, v), mv in self._versions.items() if n == name and (version is None or v == version)]
        if not targets:
            raise ModelNotFoundError(
                f"no loaded model {_shown(name)}" + (f" version {_shown(version)}" if version else "")
            )
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
            raise ModelNotFoundError(f"unknown model {_shown(name)}; available: {self.model_names()}")
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
            f"model {name!r} has no version {_shown(version)}; versions: {[v.version for v in versions]}"
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
            raise ModelNotFoundError(f"unknown model {_shown(name)}; available: {self.model_names()}")
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
