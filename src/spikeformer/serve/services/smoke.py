"""What a remote smoke run reads (``spikeformer smoke``): a model's reference images and labels, and one inference
record as written to the database."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from spikeformer.serve.errors import not_found, unavailable
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError, ModelRepository
from spikeformer.store import Database, InferenceRecordStore, StoreError

__all__ = ["RECORD_FIELDS", "model_samples", "read_record"]

# The columns of an inference record a client sees, besides its id and creation time.
RECORD_FIELDS = (
    "model",
    "version",
    "backend",
    "status",
    "http_status",
    "latency_ms",
    "queue_ms",
    "compute_ms",
    "batch_size",
    "spikes",
    "energy_j",
    "error",
)


def _finite(value: Any) -> Any:
    """JSON-safe metrics: NaN and infinities (an empty class) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    return value


def model_samples(repo: ModelRepository, name: str, retry_after_s: int) -> dict[str, Any]:
    """The reference images and labels carried in the active version's manifest, as one UINT8 tensor.

    Args:
        repo: The model repository.
        name: The model.
        retry_after_s: ``Retry-After`` of the 503 for a model that is not ready.

    Raises:
        ServiceError: 404 for an unknown model or a version without (readable, fitting) samples; 503 when the model
            is not ready.
    """
    try:
        mv = repo.get(name)
    except ModelNotFoundError as e:
        raise not_found(str(e)) from None
    except ModelNotReadyError as e:
        raise unavailable(str(e), retry_after_s) from None
    try:
        samples = mv.manifest.sample_images() if mv.manifest else None
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise not_found(f"model {name!r} version {mv.version!r}: the manifest's samples cannot be read ({e})") from None
    if samples is None:
        raise not_found(
            f"model {name!r} version {mv.version!r} carries no reference images (checkpoints written by "
            "`spikeformer train` carry one test image per class)"
        )
    images, labels = samples
    c, h, w = mv.pipeline.input_shape
    if images.numel() != len(labels) * c * h * w or not labels:
        raise not_found(f"model {name!r} version {mv.version!r}: the manifest's samples do not fit the model's input")
    images = images.reshape(len(labels), c, h, w).contiguous()
    metrics_ = mv.manifest.metrics
    return {
        "name": name,
        "version": mv.version,
        "datatype": "UINT8",
        "shape": list(images.shape),
        "data_b64": base64.b64encode(images.numpy().tobytes()).decode(),
        "labels": [int(v) for v in labels],
        "class_names": list(mv.manifest.class_names),
        "metrics": _finite({k: metrics_.get(k) for k in ("top1", "per_class", "evaluated_on") if k in metrics_}),
    }


def read_record(db: Database, record_id: str) -> dict[str, Any] | None:
    """One inference record, or ``None`` when there is none with this id (yet). Blocking.

    Raises:
        StoreError: When the database cannot be read. Its message is only the kind of failure (the exception's
            class name), never the database's own message: a client with an ``alerts`` key reads it.
    """
    try:
        with db.session() as s:
            r = InferenceRecordStore(s).get(record_id)
            if r is None:
                return None
            return {"id": r.id, "created_at": r.created_at.isoformat(), **{k: getattr(r, k) for k in RECORD_FIELDS}}
    except (StoreError, SQLAlchemyError) as e:
        raise StoreError(type(e).__name__) from None
