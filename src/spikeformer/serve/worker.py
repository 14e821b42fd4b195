"""``spikeformer worker``: claims batch jobs from the database and runs them (the runbook's spikeformer-worker).

A job is claimed with a lease (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: an atomic conditional update), the
lease is renewed after every chunk, and the result is written once, only by the lease holder. A worker killed
mid-job leaves the job to be re-claimed when its lease expires. SIGTERM stops claiming and finishes the current job.

A job is a client's request, so the worker reads a folder data set only inside its ``job_data_roots`` (whatever the
service checked at submission), and a failed job's error is written for that client: it names no host path (of the
model repository or a data folder) and lists no folder; the full reason goes to the worker's log.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import torch

from spikeformer.runtime.memory import release_free_memory
from spikeformer.serve import metrics
from spikeformer.serve.model_repository import ModelNotFoundError, ModelNotReadyError, ModelRepository
from spikeformer.serve.services.jobs import JobInputError, payload_images
from spikeformer.settings import Settings
from spikeformer.store import Database, JobStore, StoreError

__all__ = ["Worker", "WorkerOptions"]

log = logging.getLogger("spikeformer.worker")


@dataclass
class WorkerOptions:
    lease_s: float = 30.0
    poll_s: float = 1.0
    chunk_size: int = 64
    max_jobs: int | None = None  # stop after this many jobs (tests, one-shot runs)
    idle_exit_s: float | None = None  # stop after being idle this long


def _client_error(job, error: Exception) -> str:
    """The reason a job failed, as its client may read it: no host path, no folder listing."""
    version = f" version {job.version!r}" if job.version else ""
    if isinstance(error, ModelNotFoundError):
        return f"model {job.model!r}{version} is not in the worker's model repository"
    if isinstance(error, ModelNotReadyError):
        return f"model {job.model!r}{version} has no ready version on the worker"
    if isinstance(error, JobInputError):
        return str(error)
    return "the job's images do not fit the model's input (channels, size or value range)"


class Worker:
    def __init__(self, settings: Settings, options: WorkerOptions | None = None, worker_id: str | None = None):
        self.settings = settings
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.db = Database(settings.database_url)
        self.repo = ModelRepository(settings.model_repository, settings.device, settings.precision)
        self.stopping = threading.Event()
        self.done = 0

    def install_signal_handlers(self) -> None:
        def stop(signum, _frame):
            log.warning("signal %s: finishing the current job, then stopping", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _model(self, name: str, version: str | None):
        try:
            return self.repo.get(name, version)
        except (ModelNotFoundError, ModelNotReadyError):
            self.repo.load_model(name)
            return self.repo.get(name, version)

    def run_one(self, job) -> str:
        """Process a claimed job; returns ``done``, ``failed`` or ``lost`` (lease taken over)."""
        opts = self.options
        try:
            mv = self._model(job.model, job.version)
            images, labels = payload_images(json.loads(job.payload), self.settings.job_data_roots)
            x = mv.pipeline.preprocess(images)
        except (ModelNotFoundError, ModelNotReadyError, ValueError, OSError) as e:
            log.warning("job %s failed: %s", job.id, e, exc_info=isinstance(e, JobInputError))
            with self.db.session() as s:
                JobStore(s).fail(job.id, self.worker_id, _client_error(job, e)[:1000])
            return "failed"
        preds, spikes = [], 0
        for start in range(0, len(x), opts.chunk_size):
            logits, stats = mv.pipeline.runner.run_with_stats(x[start : start + opts.chunk_size])
            preds.extend(logits.argmax(1).tolist())
            spikes += int(stats.spikes.sum())
            with self.db.session() as s:
                if not JobStore(s).heartbeat(job.id, self.worker_id, opts.lease_s, progress=len(preds)):
                    log.warning("job %s: lease lost to another worker, abandoning", job.id)
                    return "lost"
        result = {
            "predictions": preds,
            "class_names": mv.manifest.class_names,
            "model_version": mv.version,
            "spikes_total": spikes,
            "worker": self.worker_id,
        }
        if labels is not None:
            result["top1"] = float((torch.tensor(preds) == labels).float().mean())
        with self.db.session() as s:
            ok = JobStore(s).complete(job.id, self.worker_id, result)
        return "done" if ok else "lost"

    def run(self) -> int:
        """Claim and run jobs until stopped; returns how many jobs this worker completed."""
        self.db.check_schema()
        idle_since = time.monotonic()
        log.info("worker %s started", self.worker_id)
        while not self.stopping.is_set():
            if self.options.max_jobs is not None and self.done >= self.options.max_jobs:
                break
            try:
                with self.db.session() as s:
                    job = JobStore(s).claim(self.worker_id, self.options.lease_s)
            except StoreError as e:
                log.error("cannot claim jobs: %s", e)
                job = None
            if job is None:
                if self.options.idle_exit_s is not None and time.monotonic() - idle_since > self.options.idle_exit_s:
                    break
                self.stopping.wait(self.options.poll_s)
                continue
            log.info("job %s claimed (%d images, attempt %d)", job.id, job.total, job.attempts)
            outcome = self.run_one(job)
            release_free_memory()  # the job's batches are freed: hand the heap's free memory back to the kernel
            metrics.JOBS_PROCESSED.labels(outcome).inc()
            log.info("job %s %s", job.id, outcome)
            self.done += outcome == "done"
            idle_since = time.monotonic()
        self.db.dispose()
        return self.done
