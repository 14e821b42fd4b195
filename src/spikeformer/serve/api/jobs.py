"""Batch jobs: ``POST /v1/jobs`` queues work for ``spikeformer worker``; ``GET /v1/jobs/{id}`` reports it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from spikeformer.serve.api.deps import InferKey, State
from spikeformer.serve.api.oip import _json_body
from spikeformer.serve.errors import not_found, unavailable
from spikeformer.serve.services.jobs import build_payload, job_view
from spikeformer.store import JobRepository, StoreError

router = APIRouter(tags=["Batch jobs"])


@router.post("/v1/jobs", status_code=202, summary="Queue a batch job (images or a data-set slice)")
async def submit_job(request: Request, state: State, _key: InferKey) -> dict:
    body = await _json_body(request, state.settings.max_body_bytes)
    name = body.get("model") if isinstance(body, dict) else None
    mv = state.inference.resolve(name, body.get("version")) if isinstance(name, str) else None
    shape = mv.pipeline.input_shape if mv else (1, 1, 1)
    payload, total = build_payload(body, shape, 100_000)

    def save():
        with state.db.session() as s:
            job = JobRepository(s).submit(name, payload, total, version=body.get("version"))
            return job_view(job)

    try:
        return await asyncio.get_running_loop().run_in_executor(None, save)
    except StoreError as e:
        raise unavailable(f"cannot queue the job: the database is unavailable ({e})") from None


@router.get("/v1/jobs/{job_id}", summary="A job's status, progress and result")
async def get_job(job_id: str, state: State, _key: InferKey) -> dict:
    def load():
        with state.db.session() as s:
            job = JobRepository(s).get(job_id)
            return None if job is None else job_view(job)

    try:
        view = await asyncio.get_running_loop().run_in_executor(None, load)
    except StoreError as e:
        raise unavailable(f"cannot read the job: the database is unavailable ({e})") from None
    if view is None:
        raise not_found(f"no job {job_id!r}")
    return view


__all__ = ["router"]
