"""The FastAPI application: ``create_app(settings)``.

Start-up opens the database (SQLite is created and migrated on first use; PostgreSQL must be migrated with
``spikeformer db upgrade`` or the service refuses to start), verifies and loads the model repository, and starts the
batchers and the record writer. Shutdown (SIGTERM under uvicorn) stops accepting, lets in-flight requests finish,
drains the batch queues and flushes the inference records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from spikeformer import __version__
from spikeformer._deprecation import moved_names
from spikeformer.serve import metrics, middleware
from spikeformer.serve.api import admin, classify, console, incidents, jobs, oip, status
from spikeformer.serve.errors import ServiceError
from spikeformer.serve.model_repository import ModelRepository
from spikeformer.serve.records import RecordBuffer
from spikeformer.serve.services.background import (
    expire_records,
    poll_settings,
    record_spool,
    record_writer,
    sync_model_versions,
    watch_temperature,
)
from spikeformer.serve.services.incident_watcher import watch_incidents
from spikeformer.serve.services.inference import InferenceService
from spikeformer.serve.state import ServiceState
from spikeformer.serve.thermal import ThermalGuard, telemetry_source
from spikeformer.settings import Settings
from spikeformer.store import Database, DatabaseUnavailableError

__all__ = ["create_app"]

log = logging.getLogger("spikeformer.serve")

# the middleware classes live in serve.middleware; importing them from here warns
__getattr__ = moved_names(__name__, dict.fromkeys(("BodySizeLimit", "InflightLimit"), "spikeformer.serve.middleware"))


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. Nothing is loaded until the application starts (lifespan)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        db = Database(settings.database_url)
        try:
            db.ensure_ready()
            metrics.DB_UP.set(1)
        except DatabaseUnavailableError as e:
            log.error("database unavailable at start-up, serving degraded (records are buffered): %s", e)
            metrics.DB_UP.set(0)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        records = RecordBuffer(
            record_writer(db),
            settings.record_buffer_size,
            settings.record_flush_interval_s,
            spool=record_spool(settings, db),
        )
        inference = InferenceService(
            repo=None,
            settings=settings,
            records=records,
            executor=executor,  # type: ignore[arg-type]
            loop=asyncio.get_running_loop(),
        )
        repo = ModelRepository(
            settings.model_repository,
            settings.device,
            settings.precision,
            on_load=inference.attach,
            on_unload=inference.detach,
        )
        inference.repo = repo
        thermal = ThermalGuard(
            telemetry_source(settings.device),
            settings.max_batch_size,
            settings.queue_capacity,
            margin=settings.thermal_margin_c,
        )
        state = ServiceState(settings, db, repo, records, inference, thermal, started_at=time.time())
        app.state.svc = state
        await asyncio.get_running_loop().run_in_executor(None, repo.load_all)
        for mv in repo.all_versions():
            if mv.ready:
                inference.batchers[(mv.name, mv.version)].start()
        sync_model_versions(state)
        records.start()
        poller = asyncio.get_running_loop().create_task(poll_settings(state))
        thermal_task = asyncio.get_running_loop().create_task(watch_temperature(state))
        incidents_task = asyncio.get_running_loop().create_task(watch_incidents(state))
        retention_task = asyncio.get_running_loop().create_task(expire_records(state))
        log.info(
            "spikeformer %s serving %d model version(s) from %s",
            __version__,
            len(repo.all_versions()),
            settings.model_repository,
        )
        try:
            yield
        finally:
            poller.cancel()
            thermal_task.cancel()
            incidents_task.cancel()
            retention_task.cancel()
            await inference.stop()
            await asyncio.get_running_loop().run_in_executor(None, records.stop, settings.shutdown_timeout_s)
            executor.shutdown(wait=True)
            db.dispose()

    app = FastAPI(
        title="spikeformer",
        version=__version__,
        lifespan=lifespan,
        description="Spiking transformer inference (Open Inference Protocol / KServe V2) and operations.",
        # no trailing-slash redirects: Starlette builds their absolute URL from the client's Host header
        redirect_slashes=False,
    )

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        path = request.url.path
        if exc.status_code == 404 and len(path) > 1 and path.endswith("/"):
            message = f"{message}: paths take no trailing slash (try {path.rstrip('/') or '/'})"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for module in (oip, classify, admin, jobs, incidents, console, status):
        app.include_router(module.router)
    app.add_middleware(
        middleware.InflightLimit,
        limit=settings.max_inflight,
        retry_after_s=settings.retry_after_s,
        max_partial=settings.max_partial_bodies,
    )
    # added last, so outermost: its size limit and read deadline also bound the bodies InflightLimit reads
    app.add_middleware(
        middleware.BodySizeLimit, limit=settings.max_body_bytes, read_timeout_s=settings.body_read_timeout_s
    )
    return app
