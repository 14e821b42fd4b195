"""``spikeformer serve`` (the inference service) and ``spikeformer worker`` (the batch worker)."""

from __future__ import annotations

from typing import Annotated

import typer

from spikeformer.cli._output import ModelRepository, ServiceDatabaseUrl, console, database, fail

__all__ = ["register", "serve", "worker"]


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model_repository: ModelRepository = None,
    database_url: ServiceDatabaseUrl = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    log_level: str = "info",
) -> None:
    """Start the inference service (Open Inference Protocol, /v1/classify, /metrics, OpenAPI at /docs)."""
    import logging

    import uvicorn

    from spikeformer.runtime.memory import configure_allocator
    from spikeformer.settings import Settings
    from spikeformer.store import SchemaOutOfDateError

    overrides = {"host": host, "port": port, "device": device}
    if model_repository:
        overrides["model_repository"] = model_repository
    if database_url:
        overrides["database_url"] = database_url
    try:
        settings = Settings(**overrides)
    except ValueError as e:
        fail(f"invalid service settings: {e}")
    configure_allocator(settings.malloc_mmap_threshold_bytes, settings.huge_pages)  # before torch is imported
    from spikeformer.serve.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        database(settings.database_url).ensure_ready()
    except SchemaOutOfDateError as e:
        fail(str(e))
    except Exception:  # noqa: BLE001 - an unreachable database is handled by the service (degraded mode)
        pass
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        # keep idle client connections longer than clients and load balancers keep theirs (60 s is common):
        # a server that closes first races a request sent on the closing connection (the client sees a reset)
        timeout_keep_alive=75,
    )


def worker(
    model_repository: ModelRepository = None,
    database_url: ServiceDatabaseUrl = None,
    lease: Annotated[float, typer.Option(help="Job lease in seconds.")] = 30.0,
    chunk_size: Annotated[int, typer.Option(min=1)] = 64,
    max_jobs: Annotated[int | None, typer.Option(help="Stop after N jobs.")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after being idle this many seconds.")] = None,
) -> None:
    """Run the batch worker: claim queued jobs, run them, write results once."""
    import logging

    from spikeformer.runtime.memory import configure_allocator
    from spikeformer.settings import Settings
    from spikeformer.store import StoreError

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {}
    if model_repository:
        overrides["model_repository"] = model_repository
    if database_url:
        overrides["database_url"] = database_url
    settings = Settings(**overrides)
    configure_allocator(settings.malloc_mmap_threshold_bytes, settings.huge_pages)  # before torch is imported
    from spikeformer.serve.worker import Worker, WorkerOptions

    w = Worker(
        settings,
        WorkerOptions(lease_s=lease, chunk_size=chunk_size, max_jobs=max_jobs, idle_exit_s=idle_exit),
    )
    w.install_signal_handlers()
    try:
        done = w.run()
    except StoreError as e:
        fail(str(e))
    console.print(f"worker {w.worker_id} finished {done} job(s)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's top-level commands (``serve``, ``worker``) to the root ``app``."""
    app.command()(serve)
    app.command()(worker)
