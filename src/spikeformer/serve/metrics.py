"""Prometheus metrics of the service and the worker (prefix ``spikeformer_``), all defined here.

Latency buckets span 1 ms to 10 s; queue time and compute time are observed separately from the total.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "REQUESTS",
    "LATENCY",
    "QUEUE_LATENCY",
    "COMPUTE_LATENCY",
    "BATCH_SIZE",
    "QUEUE_DEPTH",
    "IN_FLIGHT",
    "MODEL_READY",
    "MODEL_LOAD_FAILURES",
    "BACKEND_UP",
    "SPIKES",
    "ENERGY",
    "DB_WRITE_FAILURES",
    "RECORDS_BUFFERED",
    "RECORDS_DROPPED",
    "RECORDS_WRITTEN",
    "DB_UP",
    "JOBS",
    "MAINTENANCE",
    "JOBS_PROCESSED",
]

_LAT = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("spikeformer_requests_total", "Inference requests by outcome.", ["model", "version", "status"])
LATENCY = Histogram("spikeformer_request_latency_seconds", "Total inference request latency.", ["model"], buckets=_LAT)
QUEUE_LATENCY = Histogram(
    "spikeformer_queue_latency_seconds", "Time a request waited for its batch.", ["model"], buckets=_LAT
)
COMPUTE_LATENCY = Histogram(
    "spikeformer_compute_latency_seconds", "Model compute time per batch.", ["model"], buckets=_LAT
)
BATCH_SIZE = Histogram(
    "spikeformer_batch_size", "Images per executed batch.", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
QUEUE_DEPTH = Gauge("spikeformer_queue_depth", "Requests waiting in the batch queue.", ["model"])
IN_FLIGHT = Gauge("spikeformer_in_flight_requests", "Inference requests being served.")
MODEL_READY = Gauge("spikeformer_model_ready", "1 when the model version is loaded and verified.", ["model", "version"])
MODEL_LOAD_FAILURES = Counter(
    "spikeformer_model_load_failures_total",
    "Model versions that failed to load or failed their integrity check.",
    ["model", "version", "reason"],
)
BACKEND_UP = Gauge("spikeformer_backend_up", "1 when the inference backend is usable.", ["backend"])
SPIKES = Histogram(
    "spikeformer_spikes_per_inference",
    "Spikes emitted per image.",
    ["model"],
    buckets=(1e2, 1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 1e8),
)
ENERGY = Histogram(
    "spikeformer_energy_per_inference_joules",
    "Estimated energy per image (45 nm model).",
    ["model"],
    buckets=(1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
)
DB_WRITE_FAILURES = Counter("spikeformer_db_write_failures_total", "Failed writes of inference records.")
RECORDS_BUFFERED = Gauge("spikeformer_records_buffered", "Inference records waiting to be written.")
RECORDS_DROPPED = Counter("spikeformer_records_dropped_total", "Inference records dropped because the buffer was full.")
RECORDS_WRITTEN = Counter("spikeformer_records_written_total", "Inference records written to the database.")
DB_UP = Gauge("spikeformer_database_up", "1 when the last database operation succeeded.")
JOBS = Gauge("spikeformer_jobs", "Batch jobs by state.", ["state"])
JOBS_PROCESSED = Counter("spikeformer_jobs_processed_total", "Jobs finished by this worker.", ["outcome"])
MAINTENANCE = Gauge("spikeformer_maintenance_mode", "1 while maintenance mode is on.")
