"""Batch jobs: validate a submission into a stored payload, store and read jobs, and turn a payload back into images
(for the worker).

``new_job`` validates (HTTP errors as :class:`ServiceError`); ``submit_job`` and ``read_job`` are blocking store
calls that routes run through ``run_store``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spikeformer.serve.errors import bad_request
from spikeformer.serve.services.tensors import parse_input_tensor
from spikeformer.store import Database, JobStore

if TYPE_CHECKING:
    from spikeformer.serve.services.inference import InferenceService

__all__ = [
    "MAX_JOB_IMAGES",
    "NewJob",
    "build_payload",
    "job_view",
    "new_job",
    "payload_images",
    "read_job",
    "submit_job",
]

MAX_JOB_IMAGES = 100_000


@dataclass(frozen=True)
class NewJob:
    """A validated submission: the model, its version (``None``: the active one) and the payload to store."""

    model: str | None
    version: Any
    payload: dict[str, Any]
    total: int


def new_job(inference: InferenceService, body: Any) -> NewJob:
    """Validate a ``POST /v1/jobs`` body; the named model must exist and be ready (else 404 / 503, before the payload).

    Args:
        inference: The inference service (it resolves the model and its input shape).
        body: The parsed JSON body.

    Raises:
        ServiceError: 400 for a malformed body, 404 / 503 for an unknown or unready model.
    """
    name = body.get("model") if isinstance(body, dict) else None
    mv = inference.resolve(name, body.get("version")) if isinstance(name, str) else None
    shape = mv.pipeline.input_shape if mv else (1, 1, 1)
    payload, total = build_payload(body, shape, MAX_JOB_IMAGES)
    return NewJob(name, body.get("version"), payload, total)


def submit_job(db: Database, job: NewJob) -> dict[str, Any]:
    """Store a validated job (status ``queued``); its public view. Blocking; raises ``StoreError``."""
    with db.session() as s:
        return job_view(JobStore(s).submit(job.model, job.payload, job.total, version=job.version))


def read_job(db: Database, job_id: str) -> dict[str, Any] | None:
    """The public view of a job, or ``None`` for an unknown id. Blocking; raises ``StoreError``."""
    with db.session() as s:
        job = JobStore(s).get(job_id)
        return None if job is None else job_view(job)


def build_payload(body: Any, input_shape: tuple[int, int, int], max_request_images: int) -> tuple[dict, int]:
    """Validate ``{"model", "version"?, "images" | "dataset"}``; returns ``(payload, number of images)``.

    ``images`` is one OIP tensor (UINT8 raw pixels); ``dataset`` is ``{"name", "split", "start", "count"}``.
    """
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise bad_request(
            'a job is {"model": name, "images": {OIP tensor}} or {"model": name, "dataset": '
            '{"name", "split", "start", "count"}}'
        )
    if ("images" in body) == ("dataset" in body):
        raise bad_request("give exactly one of 'images' (an OIP UINT8 tensor) or 'dataset' (a slice)")
    if "images" in body:
        x, dtype = parse_input_tensor(
            {"inputs": [{"name": "images", **body["images"]}]} if isinstance(body["images"], dict) else body["images"],
            input_shape,
            max_request_images,
        )
        if dtype != "UINT8":
            raise bad_request("job images must be UINT8 raw pixels")
        arr = x.numpy().astype(np.uint8)
        return {"kind": "images", "shape": list(arr.shape), "data_b64": base64.b64encode(arr.tobytes()).decode()}, len(
            arr
        )
    d = body["dataset"]
    if not isinstance(d, dict) or not isinstance(d.get("name"), str):
        raise bad_request('dataset must be {"name": "fashion-mnist", "split": "test", "start": 0, "count": N}')
    split = d.get("split", "test")
    start, count = d.get("start", 0), d.get("count")
    if split not in ("train", "test"):
        raise bad_request(f"dataset split {split!r} is not accepted; accepted: train, test")
    if not (isinstance(start, int) and start >= 0 and isinstance(count, int) and 1 <= count <= MAX_JOB_IMAGES):
        raise bad_request(f"dataset start must be an int >= 0 and count an int from 1 to {MAX_JOB_IMAGES}")
    return {"kind": "dataset", "name": d["name"], "split": split, "start": start, "count": count}, count


def payload_images(payload: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images ``[N, C, H, W]`` and labels (data-set slices only) of a stored payload."""
    if payload["kind"] == "images":
        arr = np.frombuffer(base64.b64decode(payload["data_b64"]), dtype=np.uint8).reshape(payload["shape"])
        return torch.from_numpy(arr.copy()), None
    from spikeformer.data import load_dataset

    ds = load_dataset(payload["name"], payload["split"])
    end = min(len(ds), payload["start"] + payload["count"])
    if payload["start"] >= end:
        raise ValueError(
            f"the slice starts at {payload['start']} but {payload['name']} {payload['split']} has {len(ds)} images"
        )
    return ds.images[payload["start"] : end], ds.labels[payload["start"] : end]


def job_view(job: Any) -> dict[str, Any]:
    """The public view of a job row."""
    result = json.loads(job.result) if job.result else None
    return {
        "id": job.id,
        "model": job.model,
        "version": job.version,
        "status": job.status,
        "total": job.total,
        "progress": job.progress,
        "attempts": job.attempts,
        "error": job.error,
        "result": result,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
