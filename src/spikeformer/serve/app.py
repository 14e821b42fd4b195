"""The FastAPI application: ``create_app(settings)``.

Start-up opens the database (SQLite is created and migrated on first use; PostgreSQL must be migrated with
``spikeformer db upgrade`` or the service refuses to start), verifies and loads the model repository, and starts the
batchers and the record writer. Shutdown (SIGTERM under uvicorn) stops accepting, lets in-flight requests finish,
drains the batch queues and flushes the inference records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from spikeformer import __version__
from spikeformer.serve import metrics
from spikeformer.serve.api import admin, classify, console, incidents, jobs, oip, status
from spikeformer.serve.errors import ServiceError
from spikeformer.serve.model_repository import ModelRepository
from spikeformer.serve.records import RecordBuffer
from spikeformer.serve.services.inference import InferenceService, Maintenance
from spikeformer.serve.settings import ServiceSettings
from spikeformer.serve.state import ServiceState
from spikeformer.serve.thermal import ThermalGuard, telemetry_source
from spikeformer.store import (
    Database,
    DatabaseUnavailableError,
    InferenceRecordRepository,
    JobRepository,
    ModelVersionRepository,
    SettingsRepository,
    StoreError,
    connection_stats,
    long_running_queries,
)

__all__ = ["create_app"]

log = logging.getLogger("spikeformer.serve")


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (by Content-Length, or counted while streaming)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(
                send, 413, {"error": f"request body is {int(length)} bytes; the limit is {self.limit}"}
            )
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            return await self.app(scope, limited_receive, send)
        except _TooLarge:
            return await _send_json(send, 413, {"error": f"request body exceeds the limit of {self.limit} bytes"})


class _TooLarge(Exception):
    pass


def _is_inference(path: str) -> bool:
    return path == "/v1/classify" or (path.startswith("/v2/models/") and path.endswith("/infer"))


def _oip_model(path: str) -> tuple[str, str | None] | None:
    """``(name, version)`` of ``/v2/models/{name}[/versions/{version}]/infer``, else ``None``."""
    parts = path.split("/")
    if len(parts) == 5 and parts[:3] == ["", "v2", "models"] and parts[4] == "infer":
        return parts[3], None
    if len(parts) == 7 and parts[:3] == ["", "v2", "models"] and parts[4] == "versions" and parts[6] == "infer":
        return parts[3], parts[5]
    return None


class InflightLimit:
    """ASGI middleware: admission control for inference requests.

    The bounded model queue answers 503 only once a request's body has been read and parsed; under heavy overload
    that reading and parsing alone can occupy the event loop (at twice the saturating rate on our 2-core machine it
    cut the answered requests to 30-60 % of capacity). This answers 503 with ``Retry-After`` (and ``{"error": ...}``)
    before reading the body when ``limit`` inference requests are in flight (setting ``max_inflight``) or when the
    Open Inference Protocol request's model has a full queue (``InferenceService.queue_full``; counted in
    ``spikeformer_requests_total`` as ``rejected``, not recorded in the database). Metric
    ``spikeformer_admission_rejected_total{reason}``. Health, metrics and admin paths are never limited.
    """

    def __init__(self, app, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.inflight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _is_inference(scope.get("path", "")):
            return await self.app(scope, receive, send)
        if self.inflight >= self.limit:
            metrics.ADMISSION_REJECTED.labels("inflight").inc()
            overloaded = f"{self.inflight} inference requests in flight (limit {self.limit})"
            return await self._reject(send, f"server overloaded: {overloaded}; retry later")
        target = _oip_model(scope.get("path", ""))
        svc = getattr(getattr(scope.get("app"), "state", None), "svc", None)
        if target is not None and svc is not None and (reason := svc.inference.queue_full(*target)):
            metrics.ADMISSION_REJECTED.labels("queue_full").inc()
            return await self._reject(send, reason)
        self.inflight += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _reject(self, send, reason: str) -> None:
        data = json.dumps({"error": reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"retry-after", self.retry_after),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _write_records(db: Database):
    def write(records: list[dict]) -> None:
        with db.session() as s:
            InferenceRecordRepository(s).add_many(records)

    return write


def _sync_model_versions(state: ServiceState) -> None:
    """Best effort: mirror the repository's versions into the model_versions table."""
    try:
        with state.db.session() as s:
            repo = ModelVersionRepository(s)
            for mv in state.repo.all_versions():
                repo.upsert(
                    mv.name,
                    mv.version,
                    str(mv.path),
                    mv.manifest.sha256 if mv.manifest else "",
                    "ready" if mv.ready else mv.status,
                    error=mv.error,
                    required=mv.name in state.required_models,
                )
    except StoreError as e:
        log.warning("could not record model versions in the database: %s", e)


async def _poll_settings(state: ServiceState) -> None:
    """Re-read maintenance mode and job counts so changes made by the CLI reach every replica."""
    loop = asyncio.get_running_loop()

    def read():
        with state.db.session() as s:
            m = SettingsRepository(s).get("maintenance")
            counts = JobRepository(s).count_by_status()
        if state.db.is_postgresql:
            stats = connection_stats(state.db)
            metrics.DB_CONNECTIONS_IN_USE.set(stats["in_use"])
            metrics.DB_CONNECTIONS_MAX.set(stats["max_connections"])
            running = long_running_queries(state.db, 0)
            metrics.DB_LONGEST_QUERY.set(max((q["seconds"] for q in running), default=0))
        return m, counts

    while True:
        try:
            m, counts = await loop.run_in_executor(None, read)
            if isinstance(m, dict):
                state.inference.maintenance = Maintenance(
                    bool(m.get("enabled")), str(m.get("message", "")), m.get("since")
                )
            for st in ("queued", "running", "done", "failed"):
                metrics.JOBS.labels(st).set(counts.get(st, 0))
        except StoreError:
            pass  # the record writer reports the outage; keep the last known state
        metrics.MAINTENANCE.set(1 if state.inference.maintenance.enabled else 0)
        await asyncio.sleep(state.settings.settings_poll_interval_s)


async def _watch_temperature(state: ServiceState) -> None:
    """Read device temperatures off the event loop and apply thermal protection's limits."""
    loop = asyncio.get_running_loop()
    while True:
        await loop.run_in_executor(None, state.thermal.update)
        state.apply_thermal_limits()
        await asyncio.sleep(state.settings.thermal_poll_interval_s)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the service. Nothing is loaded until the application starts (lifespan)."""
    settings = settings or ServiceSettings()

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
        records = RecordBuffer(_write_records(db), settings.record_buffer_size, settings.record_flush_interval_s)
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
        _sync_model_versions(state)
        records.start()
        poller = asyncio.get_running_loop().create_task(_poll_settings(state))
        thermal_task = asyncio.get_running_loop().create_task(_watch_temperature(state))
        incidents_task = asyncio.get_running_loop().create_task(incidents.watch_incidents(state))
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
            await inference.stop()
            await asyncio.get_running_loop().run_in_executor(None, records.stop, settings.shutdown_timeout_s)
            executor.shutdown(wait=True)
            db.dispose()

    app = FastAPI(
        title="spikeformer",
        version=__version__,
        lifespan=lifespan,
        description="Spiking transformer inference (Open Inference Protocol / KServe V2) and operations.",
    )

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for module in (oip, classify, admin, jobs, incidents, console, status):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(InflightLimit, limit=settings.max_inflight, retry_after_s=settings.retry_after_s)
    return app
