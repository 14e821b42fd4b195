"""The one checkpoint format: a folder with ``model.safetensors`` and ``manifest.json``.

The manifest records what is needed to rebuild, feed and trust the model: architecture and full config, timesteps,
preprocessing, class names, data set, measured accuracy, the sha256 of the weights file, package version and creation
time. ``load_checkpoint`` verifies the sha256 before it reads a single weight; nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from spikeformer.data.transforms import Preprocess
from spikeformer.models import build_architecture

__all__ = [
    "CheckpointError",
    "IntegrityError",
    "Manifest",
    "WEIGHTS_FILE",
    "MANIFEST_FILE",
    "sha256_file",
    "save_checkpoint",
    "read_manifest",
    "verify_checkpoint",
    "load_checkpoint",
]

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used (missing file, bad manifest, wrong weights)."""


class IntegrityError(CheckpointError):
    """The weights file is not the one the manifest describes (sha256 mismatch)."""


@dataclass
class Manifest:
    """The contents of ``manifest.json``. Every field without a default is required."""

    model_name: str
    architecture: str
    config: dict[str, Any]
    timesteps: int
    preprocessing: dict[str, Any]
    class_names: list[str]
    dataset: str
    metrics: dict[str, Any]
    sha256: str
    package_version: str
    created_at: str
    format_version: int = FORMAT_VERSION
    weights_file: str = WEIGHTS_FILE
    training: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def required_fields(cls) -> list[str]:
        return [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> Manifest:
        if not isinstance(d, dict):
            raise CheckpointError(f"{where}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in cls.required_fields() if k not in d]
        if missing:
            raise CheckpointError(f"{where} is missing required field(s) {missing}; required: {cls.required_fields()}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"{where} has unknown field(s) {unknown}; accepted: {sorted(known)}")
        if d.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: format_version {d['format_version']} is not supported (this is {FORMAT_VERSION})"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.preprocessing)

    def sample_images(self) -> tuple[torch.Tensor, list[int]] | None:
        """The reference images carried in the manifest (uint8 ``[N, C, H, W]``) and their labels, if any."""
        s = self.samples
        if not s or "data_b64" not in s:
            return None
        import base64

        import numpy as np

        arr = np.frombuffer(base64.b64decode(s["data_b64"]), dtype=np.uint8).reshape(s["shape"])
        return torch.from_numpy(arr.copy()), list(s["labels"])


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(
    model: nn.Module,
    folder: str | Path,
    preprocess: Preprocess,
    class_names: list[str] | tuple[str, ...],
    dataset: str,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    samples: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``model.safetensors`` and ``manifest.json`` into ``folder`` (created if needed).

    The model must carry a ``config`` with ``to_dict()`` (every registered model does).
    """
    from spikeformer import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.module if hasattr(model, "module") else model  # DistributedDataParallel
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = folder / WEIGHTS_FILE
    tmp = weights.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, weights)
    config = model.config.to_dict()
    manifest = Manifest(
        model_name=getattr(model, "model_name", type(model).__name__),
        architecture=type(model).__name__,
        config=config,
        timesteps=int(config.get("timesteps", 1)),
        preprocessing=preprocess.to_dict(),
        class_names=list(class_names),
        dataset=dataset,
        metrics=dict(metrics or {}),
        sha256=sha256_file(weights),
        package_version=__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        training=dict(training or {}),
        samples=dict(samples or {}),
    )
    _atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest


def read_manifest(folder: str | Path) -> Manifest:
    """Parse and validate ``manifest.json`` (no weights are read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint folder {str(folder)!r} does not exist (expected a folder with "
            f"{WEIGHTS_FILE} and {MANIFEST_FILE})"
        )
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a checkpoint folder holds {WEIGHTS_FILE} and {MANIFEST_FILE}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    return Manifest.from_dict(data, where=str(path))


def verify_checkpoint(folder: str | Path) -> Manifest:
    """Check the manifest and the sha256 of the weights; raises ``CheckpointError`` or ``IntegrityError``."""
    manifest = read_manifest(folder)
    weights = Path(folder) / manifest.weights_file
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    actual = sha256_file(weights)
    if actual != manifest.sha256:
        raise IntegrityError(
            f"integrity check failed for {weights}: sha256 is {actual}, the manifest expects {manifest.sha256}. "
            "The weights were altered or replaced; restore the file or retrain"
        )
    return manifest


def load_checkpoint(folder: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Manifest]:
    """Verify, rebuild and load a checkpoint; returns ``(model in eval mode, manifest)``."""
    manifest = verify_checkpoint(folder)
    try:
        model = build_architecture(manifest.architecture, manifest.config, name=manifest.model_name)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(folder) / MANIFEST_FILE}: cannot rebuild the model: {e}") from None
    try:
        state = load_file(str(Path(folder) / manifest.weights_file), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {Path(folder) / manifest.weights_file}: {e}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not match the manifest's {manifest.architecture} config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.to(map_location).eval(), manifest
