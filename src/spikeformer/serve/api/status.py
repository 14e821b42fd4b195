"""The public status page and the routes a remote smoke run needs.

- ``GET /status`` (HTML) and ``GET /status.json``: no key, no external assets (inline style, no script; a
  Content-Security-Policy forbids loading anything). Each component with its state from the live health checks,
  the active incidents with their public title, severity and latest *public* timeline entry, and 90 days of daily
  availability (from the inference records) with the incidents of each day (``services/status.py``, rules there;
  the page is ``services/status_page.py`` over ``static/status.html``).
- ``GET /v1/models/{name}/samples``: the reference images and labels the checkpoint's manifest carries (key
  ``infer`` where inference needs one), for ``spikeformer smoke``.
- ``GET /v1/records/{id}``: one inference record as written to the database (key ``alerts`` or ``admin``); an
  inference answer names its record in ``parameters.record_id``.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, JSONResponse

from spikeformer._deprecation import moved_names
from spikeformer.serve.api.deps import AlertsKey, InferKey, State
from spikeformer.serve.errors import not_found
from spikeformer.serve.services import smoke
from spikeformer.serve.services import status as status_service
from spikeformer.serve.services import status_page as page
from spikeformer.serve.services.store_calls import run_store

__all__ = ["router"]

router = APIRouter(tags=["Status"])

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'"
_HEADERS = {"Content-Security-Policy": _CSP, "Cache-Control": "max-age=5", "X-Content-Type-Options": "nosniff"}

ModelName = Annotated[str, Path(min_length=1, max_length=200)]
RecordId = Annotated[str, Path(min_length=1, max_length=64, description="parameters.record_id of an answer")]


@router.get(
    "/v1/models/{name}/samples",
    summary="The reference images and labels carried in the active version's manifest (for smoke tests)",
)
async def model_samples(name: ModelName, state: State, _key: InferKey) -> dict:
    return smoke.model_samples(state.repo, name, state.settings.retry_after_s)


@router.get("/v1/records/{record_id}", summary="An inference record as written to the database (written in batches)")
async def get_record(record_id: RecordId, state: State, _key: AlertsKey) -> dict:
    record = await run_store(partial(smoke.read_record, state.db, record_id), "read the record")
    if record is None:
        raise not_found(
            f"no inference record {record_id!r}: unknown, or not written yet (records are written every "
            f"{state.settings.record_flush_interval_s:g} s, and buffered while the database is down)"
        )
    return record


@router.get("/status.json", summary="Public status: components, active incidents, 90 days of availability")
async def status_json(state: State) -> JSONResponse:
    return JSONResponse(await status_service.current_status(state), headers=_HEADERS)


@router.get("/status", summary="Public status page (HTML, no login, no external assets)", response_class=HTMLResponse)
async def status_page(state: State) -> HTMLResponse:
    return HTMLResponse(page.render_status_html(await status_service.current_status(state)), headers=_HEADERS)


# the status page's logic lives in serve.services (every public name there but current_status, which is new);
# importing it from here warns
_STATUS_NAMES = tuple(n for n in status_service.__all__ if n != "current_status")
__getattr__ = moved_names(
    __name__,
    {
        **dict.fromkeys(_STATUS_NAMES, "spikeformer.serve.services.status"),
        "render_status_html": "spikeformer.serve.services.status_page",
    },
)
