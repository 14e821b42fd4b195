"""Prometheus metrics of the service and the worker (prefix ``spikeformer_``), all defined here.

Latency buckets span 1 ms to 10 s; queue time and compute time are observed separately from the total.

Label values come from the service's own configuration (model repository, devices, severities), never from a
client: a request naming a model or version the repository does not hold is counted under ``UNKNOWN_LABEL``
(:func:`request_labels`), so no request can add a series to ``/metrics`` or ``/v1/stats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "UNKNOWN_LABEL",
    "request_labels",
    "REQUESTS",
    "LATENCY",
    "QUEUE_LATENCY",
    "COMPUTE_LATENCY",
    "BATCH_SIZE",
    "QUEUE_DEPTH",
    "IN_FLIGHT",
    "BODY_READ_TIMEOUTS",
    "PARTIAL_BODIES",
    "MODEL_READY",
    "MODEL_LOAD_FAILURES",
    "BACKEND_UP",
    "SPIKES",
    "ENERGY",
    "DB_WRITE_FAILURES",
    "RECORDS_BUFFERED",
    "RECORDS_DROPPED",
    "RECORDS_WRITTEN",
    "RECORDS_NOT_SPOOLED",
    "RECORDS_REPLAYED",
    "RECORD_SPOOL_BYTES",
    "DB_UP",
    "JOBS",
    "MAINTENANCE",
    "JOBS_PROCESSED",
    "JOBS_REJECTED",
    "DEVICE_TEMPERATURE",
    "DEVICE_SLOWDOWN_TEMPERATURE",
    "DEVICE_POWER",
    "THERMAL_THROTTLE",
    "BATCH_LIMIT",
    "DB_CONNECTIONS_IN_USE",
    "RECORDS_DELETED",
    "RECORDS_OLDEST_AGE",
    "RECORDS_RETENTION",
    "DB_SIZE",
    "DB_DISK_FREE",
    "DB_DISK_SIZE",
    "DB_CONNECTIONS_MAX",
    "DB_LONGEST_QUERY",
    "INCIDENTS_OPEN",
    "INCIDENT_ACK_OVERDUE",
    "INCIDENT_UPDATE_OVERDUE",
    "LAYER_FIRING_RATE",
]

UNKNOWN_LABEL = "(unknown)"  # the one label value of every model or version the repository does not hold


def request_labels(known: Mapping[str, Iterable[str]], model: str, version: str | None) -> tuple[str, str]:
    """The ``model`` and ``version`` labels of a request, bounded by what the repository holds.

    Args:
        known: Versions of each model in the repository (``{name: [version, ...]}``).
        model: The model the client named.
        version: The version the client named, or ``None`` for the active one.

    Returns:
        ``(model, version)``: each the client's value when the repository holds it, else ``UNKNOWN_LABEL``; an
        absent version is ``""``.
    """
    versions = known.get(model)
    if versions is None:
        return UNKNOWN_LABEL, "" if version is None else UNKNOWN_LABEL
    if version is None:
        return model, ""
    return model, version if version in set(versions) else UNKNOWN_LABEL


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
    "Inference requests answered 503 before admission: max_inflight reached (inflight), their model's queue full "
    "(queue_full), or max_partial_bodies bodies already arriving (partial_bodies).",
    ["reason"],
)
BODY_READ_TIMEOUTS = Counter(
    "spikeformer_body_read_timeouts_total",
    "Requests answered 408 because their body did not arrive within body_read_timeout_s.",
)
PARTIAL_BODIES = Gauge(
    "spikeformer_partial_bodies", "Inference requests whose body is still arriving (capped by max_partial_bodies)."
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
RECORDS_NOT_SPOOLED = Counter(
    "spikeformer_records_not_spooled_total",
    "Inference records answered without a copy in the crash spool (lost if the process dies before they are "
    "written): reason full (the spool at record_spool_max_bytes) or error (the spool cannot be written).",
    ["reason"],
)
RECORDS_REPLAYED = Counter(
    "spikeformer_records_replayed_total",
    "Inference records read back at start-up from the spool of a process that died (ids already stored are skipped).",
)
RECORD_SPOOL_BYTES = Gauge("spikeformer_record_spool_bytes", "Bytes of inference records in this process's spool.")
DB_UP = Gauge("spikeformer_database_up", "1 when the last database operation succeeded.")
JOBS = Gauge("spikeformer_jobs", "Batch jobs by state.", ["state"])
JOBS_PROCESSED = Counter("spikeformer_jobs_processed_total", "Jobs finished by this worker.", ["outcome"])
JOBS_REJECTED = Counter(
    "spikeformer_jobs_rejected_total", "Job submissions refused by the pending-job caps (global or per_key).", ["cap"]
)
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
RECORDS_DELETED = Counter(
    "spikeformer_inference_records_deleted_total", "Raw inference records deleted by their retention."
)
RECORDS_OLDEST_AGE = Gauge(
    "spikeformer_inference_records_oldest_age_seconds", "Age of the oldest raw inference record (0 when none)."
)
RECORDS_RETENTION = Gauge(
    "spikeformer_inference_records_retention_seconds", "Configured retention of raw inference records (0: forever)."
)
DB_SIZE = Gauge("spikeformer_database_size_bytes", "Bytes the database uses (PostgreSQL database or SQLite file).")
DB_DISK_FREE = Gauge(
    "spikeformer_database_disk_free_bytes", "Free bytes on the SQLite database's filesystem (SQLite only)."
)
DB_DISK_SIZE = Gauge("spikeformer_database_disk_size_bytes", "Size of the SQLite database's filesystem (SQLite only).")
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
