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
    "DEVICE_TEMPERATURE",
    "DEVICE_SLOWDOWN_TEMPERATURE",
    "DEVICE_POWER",
    "THERMAL_THROTTLE",
    "BATCH_LIMIT",
    "DB_CONNECTIONS_IN_USE",
    "DB_CONNECTIONS_MAX",
    "DB_LONGEST_QUERY",
    "INCIDENTS_OPEN",
    "INCIDENT_ACK_OVERDUE",
    "INCIDENT_UPDATE_OVERDUE",
    "LAYER_FIRING_RATE",
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
ADMISSION_REJECTED = Counter(
    "spikeformer_admission_rejected_total",
    "Inference requests answered 503 before their body was read: max_inflight reached, or their model's queue full.",
    ["reason"],
)
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

# Hardware telemetry (real readings only: NVML for CUDA devices, the kernel's sensors for the CPU; never invented).
DEVICE_TEMPERATURE = Gauge("spikeformer_device_temperature_celsius", "Device temperature.", ["device"])
DEVICE_SLOWDOWN_TEMPERATURE = Gauge(
    "spikeformer_device_slowdown_temperature_celsius",
    "Temperature at which the device starts to slow itself down.",
    ["device"],
)
DEVICE_POWER = Gauge("spikeformer_device_power_watts", "Device power draw.", ["device"])
THERMAL_THROTTLE = Gauge(
    "spikeformer_thermal_protection_active",
    "1 while the service runs with lowered batch size and concurrency because of heat.",
)
BATCH_LIMIT = Gauge("spikeformer_batch_limit", "Current maximum batch size (lowered by thermal protection).")
# Database (PostgreSQL: pg_stat_activity).
DB_CONNECTIONS_IN_USE = Gauge("spikeformer_db_connections_in_use", "Connections open on the database server.")
DB_CONNECTIONS_MAX = Gauge("spikeformer_db_connections_max", "The database server's max_connections.")
DB_LONGEST_QUERY = Gauge("spikeformer_db_longest_query_seconds", "Age of the oldest running query.")
# Incidents (SEV-1..SEV-4 response targets from spikeformer.ops.severity).
INCIDENTS_OPEN = Gauge("spikeformer_incidents_open", "Open incidents.", ["sev"])
INCIDENT_ACK_OVERDUE = Gauge(
    "spikeformer_incident_ack_overdue", "Open incidents past their acknowledgement target.", ["sev"]
)
INCIDENT_UPDATE_OVERDUE = Gauge(
    "spikeformer_incident_update_overdue",
    "Open incidents whose last update is older than the update interval.",
    ["sev"],
)
# Model behaviour.
LAYER_FIRING_RATE = Gauge(
    "spikeformer_layer_firing_rate", "Mean firing rate of a layer's neurons (last profile).", ["model", "layer"]
)
