"""Batch jobs: ``POST /v1/jobs`` queues work for ``spikeformer worker``; ``GET /v1/jobs/{id}`` reports it."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from spikeformer.serve.api.deps import InferKey, State, json_body
from spikeformer.serve.errors import not_found
from spikeformer.serve.services import jobs as jobs_service
from spikeformer.serve.services.store_calls import run_store

__all__ = ["router"]

router = APIRouter(tags=["Batch jobs"])


@router.post("/v1/jobs", status_code=202, summary="Queue a batch job (images or a data-set slice)")
async def submit_job(request: Request, state: State, key: InferKey) -> dict:
    settings = state.settings
    body = await json_body(request, settings.max_body_bytes)
    job = jobs_service.new_job(state.inference, body, settings.job_data_roots)
    submit = partial(
        jobs_service.submit_job, state.db, job, key, settings.max_pending_jobs, settings.max_pending_jobs_per_key
    )
    return await run_store(submit, "queue the job")


@router.get("/v1/jobs/{job_id}", summary="A job's status, progress and result")
async def get_job(job_id: str, state: State, _key: InferKey) -> dict:
    view = await run_store(partial(jobs_service.read_job, state.db, job_id), "read the job")
    if view is None:
        raise not_found(f"no job {job_id!r}")
    return view
