"""Batch jobs: validate a submission into a stored payload, store and read jobs, and turn a payload back into images
(for the worker).

``new_job`` validates (HTTP errors as :class:`ServiceError`); ``submit_job`` and ``read_job`` are blocking store
calls that routes run through ``run_store``.

What a job may read: a job comes from a client, so a folder data set (``folder:<path>``) is read only inside the
settings' ``job_data_roots`` (none by default), checked at submission and again by the worker before it reads
anything. How many jobs wait: ``submit_job`` refuses with 503 and ``Retry-After`` once ``max_pending_jobs`` jobs
are queued or running, or ``max_pending_jobs_per_key`` of the submitting API key (keyless submissions share one
bucket). The count and the insert are one transaction; submissions racing each other may pass the cap by the
number of racers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spikeformer.data.datasets import DatasetNotAllowedError, DatasetNotFoundError, confine_folder, load_dataset
from spikeformer.serve import metrics
from spikeformer.serve.errors import bad_request, unavailable
from spikeformer.serve.services.tensors import parse_input_tensor
from spikeformer.store import ApiKeyStore, Database, JobStore

if TYPE_CHECKING:
    from spikeformer.serve.services.inference import InferenceService

__all__ = [
    "JOBS_RETRY_AFTER_S",
    "MAX_JOB_IMAGES",
    "JobInputError",
    "NewJob",
    "build_payload",
    "job_view",
    "new_job",
    "payload_images",
    "read_job",
    "submit_job",
]

MAX_JOB_IMAGES = 100_000
#: ``Retry-After`` (seconds) of a submission refused because too many jobs are pending: a job takes a while.
JOBS_RETRY_AFTER_S = 30
#: Data-set names a job accepts (a folder also as ``folder:<path>``, inside the data roots).
_JOB_DATASETS = ("fashion-mnist", "digits")


class JobInputError(ValueError):
    """A job's input cannot be read; the message is fit for the job's client (no host path, no folder listing)."""


@dataclass(frozen=True)
class NewJob:
    """A validated submission: the model, its version (``None``: the active one) and the payload to store."""

    model: str | None
    version: Any
    payload: dict[str, Any]
    total: int


def new_job(inference: InferenceService, body: Any, data_roots: Sequence[Path] = ()) -> NewJob:
    """Validate a ``POST /v1/jobs`` body; the named model must exist and be ready (else 404 / 503, before the payload).

    Args:
        inference: The inference service (it resolves the model and its input shape).
        body: The parsed JSON body.
        data_roots: The folders a ``folder:<path>`` data set may lie in (the setting ``job_data_roots``); empty:
            folder data sets are refused.

    Raises:
        ServiceError: 400 for a malformed body or a folder outside the data roots, 404 / 503 for an unknown or
            unready model.
    """
    name = body.get("model") if isinstance(body, dict) else None
    mv = inference.resolve(name, body.get("version")) if isinstance(name, str) else None
    shape = mv.pipeline.input_shape if mv else (1, 1, 1)
    payload, total = build_payload(body, shape, MAX_JOB_IMAGES, data_roots)
    return NewJob(name, body.get("version"), payload, total)


def submit_job(
    db: Database, job: NewJob, api_key: str | None = None, max_pending: int = 1000, max_pending_per_key: int = 50
) -> dict[str, Any]:
    """Store a validated job (status ``queued``) unless too many are pending; its public view.

    Blocking; raises ``StoreError``.

    Args:
        db: The service's database.
        job: The validated submission.
        api_key: The key the client presented when keys are required (``None``: keyless, one shared bucket).
        max_pending: Queued and running jobs in all (the setting ``max_pending_jobs``).
        max_pending_per_key: Queued and running jobs of one key (the setting ``max_pending_jobs_per_key``).

    Raises:
        ServiceError: 503 with ``Retry-After`` when a cap is reached.
    """
    with db.session() as s:
        row = ApiKeyStore(s).verify(api_key) if api_key else None
        key_id = row.id if row is not None else None
        jobs = JobStore(s)
        pending, of_key = jobs.pending_counts(key_id)
        who = "this API key" if key_id is not None else "clients without an API key (one shared limit)"
        if of_key >= max_pending_per_key:
            metrics.JOBS_REJECTED.labels("per_key").inc()
            raise unavailable(
                f"{who} already has {of_key} pending jobs (queued or running), the limit per key; retry when one "
                "has finished (GET /v1/jobs/{id} shows its status)",
                JOBS_RETRY_AFTER_S,
            )
        if pending >= max_pending:
            metrics.JOBS_REJECTED.labels("global").inc()
            raise unavailable(
                f"the service already has {pending} pending jobs (queued or running), its limit; retry later",
                JOBS_RETRY_AFTER_S,
            )
        return job_view(jobs.submit(job.model, job.payload, job.total, version=job.version, api_key_id=key_id))


def read_job(db: Database, job_id: str) -> dict[str, Any] | None:
    """The public view of a job, or ``None`` for an unknown id. Blocking; raises ``StoreError``."""
    with db.session() as s:
        job = JobStore(s).get(job_id)
        return None if job is None else job_view(job)


def build_payload(
    body: Any, input_shape: tuple[int, int, int], max_request_images: int, data_roots: Sequence[Path] = ()
) -> tuple[dict, int]:
    """Validate ``{"model", "version"?, "images" | "dataset"}``; returns ``(payload, number of images)``.

    ``images`` is one OIP tensor (UINT8 raw pixels); ``dataset`` is ``{"name", "split", "start", "count"}``, the
    name ``fashion-mnist``, ``digits`` or ``folder:<path>`` with the path inside ``data_roots``.
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
    head, _, path = d["name"].strip().partition(":")
    head = head.strip().lower().replace("_", "-")
    if head == "folder":
        try:
            confine_folder(path.strip(), data_roots)
        except DatasetNotAllowedError as e:
            raise bad_request(str(e)) from None
    elif head not in _JOB_DATASETS:
        accepted = ", ".join(repr(n) for n in _JOB_DATASETS)
        raise bad_request(f"dataset {d['name'][:100]!r} is not accepted; accepted: {accepted}, 'folder:<path>'")
    return {"kind": "dataset", "name": d["name"], "split": split, "start": start, "count": count}, count


def payload_images(payload: dict, data_roots: Sequence[Path] = ()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images ``[N, C, H, W]`` and labels (data-set slices only) of a stored payload.

    Args:
        payload: The stored payload (``build_payload``).
        data_roots: The folders a ``folder:<path>`` data set may lie in (the worker's ``job_data_roots``).

    Raises:
        JobInputError: The input cannot be read; the message names no host path and lists no folder (the details
            are in the exception's cause, for the worker's log).
    """
    if payload["kind"] == "images":
        arr = np.frombuffer(base64.b64decode(payload["data_b64"]), dtype=np.uint8).reshape(payload["shape"])
        return torch.from_numpy(arr.copy()), None
    name, split = payload["name"], payload["split"]
    try:
        ds = load_dataset(name, split, roots=data_roots)
    except DatasetNotAllowedError as e:
        raise JobInputError(str(e)) from e
    except DatasetNotFoundError as e:
        raise JobInputError(f"the {split} split of the data set is not available to the worker") from e
    except (ValueError, OSError) as e:
        raise JobInputError(
            f"the {split} split of the data set could not be read: it has no images, a file is not a PNG, JPEG or "
            "BMP image, the images differ in size, or the name or split is not accepted"
        ) from e
    end = min(len(ds), payload["start"] + payload["count"])
    if payload["start"] >= end:
        raise JobInputError(f"the slice starts at {payload['start']} but the {split} split has {len(ds)} images")
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
