"""The one checkpoint format: a folder with ``model.safetensors`` and ``manifest.json``.

The manifest records what is needed to rebuild, feed and trust the model: architecture and full config, timesteps,
preprocessing, class names, data set, measured accuracy, the sha256 of the weights file, package version and creation
time. ``load_checkpoint`` verifies the sha256 before it reads a single weight; nothing is ever unpickled.

Every loader reads the manifest through :func:`read_manifest`, which checks it against one schema
(:class:`ManifestSchema`, :class:`SamplesSchema`): the type of every field, the reference samples (their base64 data
holds exactly ``N*C*H*W`` bytes, their channels and size are those of the preprocessing, one label per image within the
class names), the class names and preprocessing against the model's config, and a ``weights_file`` that names a file
inside the checkpoint folder. :func:`verify_checkpoint` adds the sha256 and checks that the weights file is a
safetensors file (and says what it is when it is not: a pickle, a zip archive, an empty file ...).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from spikeformer.data.transforms import Preprocess
from spikeformer.models import build_architecture

__all__ = [
    "CheckpointError",
    "IntegrityError",
    "Manifest",
    "ManifestSchema",
    "SamplesSchema",
    "WEIGHTS_FILE",
    "MANIFEST_FILE",
    "sha256_file",
    "save_checkpoint",
    "read_manifest",
    "verify_checkpoint",
    "load_checkpoint",
    "weights_format_problem",
]

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used (missing file, bad manifest, wrong weights)."""


class IntegrityError(CheckpointError):
    """The weights file is not the one the manifest describes (sha256 mismatch)."""


_SAMPLES_ACCEPTED = (
    'accepted: {"shape": [N, C, H, W], "dtype": "uint8", "data_b64": base64 of N*C*H*W bytes, '
    '"labels": N class indices}'
)


class SamplesSchema(BaseModel):
    """The manifest's ``samples`` block: reference images, uint8 ``[N, C, H, W]`` in base64, with their labels."""

    model_config = ConfigDict(extra="forbid", strict=True)

    shape: list[int] = Field(min_length=4, max_length=4, description="[N, C, H, W], every entry >= 1")
    dtype: Literal["uint8"] = "uint8"
    data_b64: str = Field(description="base64 of the N*C*H*W pixel bytes, row-major")
    labels: list[int] = Field(description="one class index per image")

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(d < 1 for d in v):
            raise ValueError(f"every dimension of [N, C, H, W] must be >= 1; received {v}")
        return v

    def pixels(self) -> bytes:
        """The decoded pixel bytes; raises ``ValueError`` when the data is not base64 or not N*C*H*W bytes."""
        try:
            raw = base64.b64decode(self.data_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("data_b64 is not valid base64") from None
        need = math.prod(self.shape)
        if len(raw) != need:
            raise ValueError(
                f"data_b64 decodes to {len(raw)} bytes but shape {self.shape} needs {need} (N*C*H*W uint8 pixels)"
            )
        return raw


class ManifestSchema(BaseModel):
    """The schema ``manifest.json`` is checked against (fields as in :class:`Manifest`), with cross-field checks."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model_name: str = Field(min_length=1)
    architecture: str = Field(min_length=1)
    config: dict[str, Any]
    timesteps: int = Field(ge=1)
    preprocessing: dict[str, Any]
    class_names: list[str] = Field(min_length=1)
    dataset: str
    metrics: dict[str, Any]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex sha256 of the weights file")
    package_version: str
    created_at: str
    format_version: int
    weights_file: str = "model.safetensors"
    training: dict[str, Any] = Field(default_factory=dict)
    samples: dict[str, Any] = Field(default_factory=dict)

    @field_validator("weights_file")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # the value is not echoed: error messages reach keyless readers of the model repository
        if not v or v in (".", "..") or any(c in v for c in "/\\\0"):
            raise ValueError(
                "weights_file must be the name of a file inside the checkpoint folder (e.g. 'model.safetensors'), "
                "not a path"
            )
        return v

    @field_validator("preprocessing")
    @classmethod
    def _preprocessing(cls, v: dict[str, Any]) -> dict[str, Any]:
        Preprocess.from_dict(v)  # its ValueError names the problem and the accepted keys
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ManifestSchema:
        pre = Preprocess.from_dict(self.preprocessing)
        cfg = self.config
        n_classes = cfg.get("num_classes")
        if isinstance(n_classes, int) and len(self.class_names) != n_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names; the config has num_classes={n_classes}")
        in_chans = cfg.get("in_chans")
        if isinstance(in_chans, int) and pre.channels != in_chans:
            raise ValueError(f"preprocessing.channels is {pre.channels}; the model's config has in_chans={in_chans}")
        size = cfg.get("img_size")
        size = [size, size] if isinstance(size, int) else size
        if isinstance(size, list) and list(pre.image_size) != size:
            raise ValueError(f"preprocessing.image_size is {list(pre.image_size)}; the model's config has {size}")
        if self.samples:
            self._check_samples(pre)
        return self

    def _check_samples(self, pre: Preprocess) -> None:
        try:
            s = SamplesSchema.model_validate(self.samples)
        except ValidationError as e:
            raise ValueError(f"{_problems(e, 'samples')}; {_SAMPLES_ACCEPTED}") from None
        try:
            s.pixels()
        except ValueError as e:
            raise ValueError(f"samples: {e}") from None
        n, c, h, w = s.shape
        if c != pre.channels or (h, w) != pre.image_size:
            raise ValueError(
                f"samples: shape {s.shape} does not match the preprocessing: accepted [N, {pre.channels}, "
                f"{pre.image_size[0]}, {pre.image_size[1]}] (channels {pre.channels}, image_size "
                f"{list(pre.image_size)})"
            )
        if len(s.labels) != n:
            raise ValueError(f"samples: {len(s.labels)} labels for {n} images; accepted: one label per image")
        bad = [x for x in s.labels if not 0 <= x < len(self.class_names)]
        if bad:
            raise ValueError(
                f"samples: labels {bad[:5]} are not class indices; accepted: 0 .. {len(self.class_names) - 1}"
            )


def _problems(error: ValidationError, prefix: str = "") -> str:
    out = []
    for e in error.errors():
        loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(out)


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
        try:
            ManifestSchema.model_validate({"format_version": FORMAT_VERSION, **d})
        except ValidationError as e:
            raise CheckpointError(f"{where} does not match the manifest schema: {_problems(e)}") from None
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.preprocessing)

    def sample_images(self) -> tuple[torch.Tensor, list[int]] | None:
        """The reference images carried in the manifest (uint8 ``[N, C, H, W]``) and their labels, if any."""
        if not self.samples:
            return None
        import numpy as np

        try:
            s = SamplesSchema.model_validate(self.samples)
            arr = np.frombuffer(s.pixels(), dtype=np.uint8).reshape(s.shape)
        except (ValidationError, ValueError) as e:
            raise CheckpointError(f"the manifest's samples are malformed: {e}") from None
        return torch.from_numpy(arr.copy()), list(s.labels)


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

    The model must carry a ``config`` with ``to_dict()`` (every registered model does). The manifest is checked
    against the schema before anything is written, so a checkpoint that could not be loaded is never saved.

    Raises:
        CheckpointError: The manifest would not match the schema (e.g. ``samples`` or ``class_names`` that do not fit
            the model); nothing was written.
    """
    from spikeformer import __version__

    folder = Path(folder)
    model = model.module if hasattr(model, "module") else model  # DistributedDataParallel
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
        sha256="0" * 64,  # set once the weights are written
        package_version=__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        training=dict(training or {}),
        samples=dict(samples or {}),
    )
    Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())), where=f"the manifest for {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = folder / WEIGHTS_FILE
    tmp = weights.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, weights)
    manifest.sha256 = sha256_file(weights)
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


_PICKLE_PROTOCOLS = range(2, 6)
_MAX_HEADER = 100 << 20  # the safetensors format's own limit on the JSON header


def weights_format_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a well-formed safetensors file (saying what the file is instead), or ``None`` when it is.

    Only the 8-byte length and the JSON header are read: nothing is unpickled or loaded. The header must be a JSON
    object whose tensors each have a ``dtype``, a ``shape`` and ``data_offsets`` inside the file.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if size == 0:
            return "it is empty (0 bytes)"
        if head[0] == 0x80 and len(head) > 1 and head[1] in _PICKLE_PROTOCOLS:
            return (
                f"it is a Python pickle (protocol {head[1]}), e.g. a legacy torch.save file; it was not unpickled. "
                "Convert a .pth state dict with `spikeformer models import`"
            )
        if head[:4] == b"PK\x03\x04":
            return (
                "it is a zip archive (the format of torch.save); it was not unpickled. Convert a .pth state dict with "
                "`spikeformer models import`"
            )
        if len(head) < 8:
            return f"it is {size} bytes long, shorter than a safetensors header"
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_HEADER):
            return f"its first 8 bytes give a header length of {n} bytes, more than the file's {size} bytes hold"
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    data = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not isinstance(entry.get("dtype"), str)
            or not isinstance(entry.get("shape"), list)
        ):
            return f"its header entry for tensor {name[:80]!r} is not {{dtype, shape, data_offsets: [begin, end]}}"
        if not 0 <= offsets[0] <= offsets[1] <= data:
            return (
                f"its header places tensor {name[:80]!r} at bytes {offsets} but the data section holds {data} bytes "
                "(the file is truncated or the header is forged)"
            )
    return None


def verify_checkpoint(folder: str | Path) -> Manifest:
    """Check the manifest, where the weights file lies, its sha256 and its format.

    Raises:
        CheckpointError: The manifest does not match the schema, the weights file is missing, lies outside the
            folder (through a symbolic link) or is not a safetensors file (the message says what it is).
        IntegrityError: The sha256 of the weights is not the manifest's.
    """
    manifest = read_manifest(folder)
    weights = Path(folder) / manifest.weights_file
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    if not weights.resolve().is_relative_to(Path(folder).resolve()):
        raise CheckpointError(
            f"{weights} is a link to a file outside its checkpoint folder; the weights must lie in the folder itself"
        )
    actual = sha256_file(weights)
    if actual != manifest.sha256:
        problem = weights_format_problem(weights)
        raise IntegrityError(
            f"integrity check failed for {weights}: sha256 is {actual}, the manifest expects {manifest.sha256}. "
            "The weights were altered or replaced; restore the file or retrain"
            + (f" (the file is not a safetensors file: {problem})" if problem else "")
        )
    problem = weights_format_problem(weights)
    if problem:
        raise CheckpointError(f"{weights} is not a safetensors file: {problem}")
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
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor whose shape is not the config's
        raise CheckpointError(
            f"weights do not match the manifest's {manifest.architecture} config: {str(e).strip()[:500]}"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not match the manifest's {manifest.architecture} config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.to(map_location).eval(), manifest
