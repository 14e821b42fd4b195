"""Persistence shared by the service, the worker and the operations commands.

`Database` owns the engine, sessions and schema (Alembic migrations); one repository per aggregate holds the SQL
and takes the caller's `Session`:

    db = Database()            # SPIKEFORMER_DATABASE_URL, or SQLite under SPIKEFORMER_HOME (./var)
    db.ensure_ready()          # SQLite: create and migrate; PostgreSQL: check (`spikeformer db upgrade` migrates)
    with db.session() as session:
        job = JobRepository(session).claim("worker-1", lease_seconds=30)

This package imports nothing else from spikeformer: it sits at the bottom of the layering.
"""

from spikeformer.store.admin import cancel_backend, connection_stats, long_running_queries, terminate_backend
from spikeformer.store.api_keys import ApiKeyRepository
from spikeformer.store.database import DATABASE_URL_ENV, Database, default_database_url
from spikeformer.store.errors import DatabaseUnavailableError, SchemaOutOfDateError, StoreError
from spikeformer.store.incidents import ACTIVE_STATUSES, IncidentRepository
from spikeformer.store.inference_records import InferenceRecordRepository
from spikeformer.store.jobs import JobRepository
from spikeformer.store.model_versions import ModelVersionRepository
from spikeformer.store.settings import SettingsRepository
from spikeformer.store.tables import (
    ALERT_STATUSES,
    API_KEY_SCOPES,
    EVENT_VISIBILITIES,
    INCIDENT_SEVERITIES,
    INCIDENT_STATUSES,
    INFERENCE_STATUSES,
    JOB_STATUSES,
    MODEL_VERSION_STATUSES,
    ApiKey,
    Base,
    Incident,
    IncidentAlert,
    IncidentEvent,
    InferenceRecord,
    Job,
    ModelVersion,
    Setting,
)

__all__ = [
    "ACTIVE_STATUSES",
    "ALERT_STATUSES",
    "API_KEY_SCOPES",
    "DATABASE_URL_ENV",
    "EVENT_VISIBILITIES",
    "INCIDENT_SEVERITIES",
    "INCIDENT_STATUSES",
    "INFERENCE_STATUSES",
    "JOB_STATUSES",
    "MODEL_VERSION_STATUSES",
    "ApiKey",
    "ApiKeyRepository",
    "Base",
    "Database",
    "DatabaseUnavailableError",
    "Incident",
    "IncidentAlert",
    "IncidentEvent",
    "IncidentRepository",
    "InferenceRecord",
    "InferenceRecordRepository",
    "Job",
    "JobRepository",
    "ModelVersion",
    "ModelVersionRepository",
    "SchemaOutOfDateError",
    "Setting",
    "SettingsRepository",
    "StoreError",
    "cancel_backend",
    "connection_stats",
    "default_database_url",
    "long_running_queries",
    "terminate_backend",
]
