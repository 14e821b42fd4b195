"""Persistence shared by the service, the worker and the operations commands.

`Database` owns the engine, sessions and schema (Alembic migrations); one store class per aggregate holds the SQL
and takes the caller's `Session`:

    db = Database()            # SPIKEFORMER_DATABASE_URL, or SQLite under SPIKEFORMER_HOME (./var)
    db.ensure_ready()          # SQLite: create and migrate; PostgreSQL: check (`spikeformer db upgrade` migrates)
    with db.session() as session:
        job = JobStore(session).claim("worker-1", lease_seconds=30)

This package imports nothing else from spikeformer: it sits at the bottom of the layering.
"""

from spikeformer._deprecation import moved_names
from spikeformer.store.admin import cancel_backend, connection_stats, long_running_queries, terminate_backend
from spikeformer.store.api_keys import ApiKeyStore
from spikeformer.store.database import DATABASE_URL_ENV, Database, default_database_url
from spikeformer.store.errors import DatabaseUnavailableError, SchemaOutOfDateError, StoreError
from spikeformer.store.incidents import ACTIVE_STATUSES, IncidentStore
from spikeformer.store.inference_records import InferenceRecordStore
from spikeformer.store.jobs import JobStore
from spikeformer.store.model_versions import ModelVersionStore
from spikeformer.store.settings import SettingsStore
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
    "ApiKeyStore",
    "Base",
    "Database",
    "DatabaseUnavailableError",
    "Incident",
    "IncidentAlert",
    "IncidentEvent",
    "IncidentStore",
    "InferenceRecord",
    "InferenceRecordStore",
    "Job",
    "JobStore",
    "ModelVersion",
    "ModelVersionStore",
    "SchemaOutOfDateError",
    "Setting",
    "SettingsStore",
    "StoreError",
    "cancel_backend",
    "connection_stats",
    "default_database_url",
    "long_running_queries",
    "terminate_backend",
]

# the SQL classes are stores ("repository" names the model folder); the old names warn for one release
__getattr__ = moved_names(
    __name__,
    {
        f"{kind}Repository": f"spikeformer.store:{kind}Store"
        for kind in ("ApiKey", "Incident", "InferenceRecord", "Job", "ModelVersion", "Settings")
    },
)
