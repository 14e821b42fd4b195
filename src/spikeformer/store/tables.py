"""The tables, as SQLAlchemy 2.0 declarative classes.

The schema is created only by the Alembic migrations in `store/migrations/`; these classes describe it for queries, and
`tests/store/test_database.py` checks that the two agree on both backends. Every datetime is aware and in UTC
(`UTCDateTime`). Status columns are strings guarded by CHECK constraints rather than database enums, so a new
status is a one-line migration on both backends.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from spikeformer.store._types import UTCDateTime, utcnow

__all__ = [
    "API_KEY_SCOPES",
    "INFERENCE_STATUSES",
    "JOB_STATUSES",
    "MODEL_VERSION_STATUSES",
    "ApiKey",
    "Base",
    "InferenceRecord",
    "Job",
    "ModelVersion",
    "Setting",
]

MODEL_VERSION_STATUSES = ("ready", "failed", "unloaded")
INFERENCE_STATUSES = ("ok", "error", "timeout", "rejected")
JOB_STATUSES = ("queued", "running", "done", "failed")
API_KEY_SCOPES = ("infer", "admin", "alerts")

# Deterministic constraint names, so that later migrations can refer to them on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _new_id() -> str:
    return str(uuid.uuid4())


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of every table; `Base.metadata` is the migrations' target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class ModelVersion(Base):
    """One version of a model in the repository and whether the service could load it."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(_in("status", MODEL_VERSION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    loaded_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InferenceRecord(Base):
    """One answered (or refused) inference request; latencies in milliseconds, energy in joules."""

    __tablename__ = "inference_records"
    __table_args__ = (
        CheckConstraint(_in("status", INFERENCE_STATUSES), name="status"),
        Index("ix_inference_records_model_created_at", "model", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_new_id)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(64))
    backend: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[float] = mapped_column(Float)
    queue_ms: Mapped[float | None] = mapped_column(Float)
    compute_ms: Mapped[float | None] = mapped_column(Float)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column(Integer)
    spikes: Mapped[int | None] = mapped_column(BigInteger)
    energy_j: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiKey(Base):
    """An API key: only its first 8 characters (for lookup and display) and the sha256 of the whole key are kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(8), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # comma-separated, from API_KEY_SCOPES
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    @property
    def scope_list(self) -> list[str]:
        """The scopes as a list, in the order they were granted."""
        return [s for s in self.scopes.split(",") if s]

    def has_scope(self, scope: str) -> bool:
        """Whether the key grants `scope`."""
        return scope in self.scope_list

    @property
    def revoked(self) -> bool:
        """Whether the key has been revoked."""
        return self.revoked_at is not None


class Job(Base):
    """A batch job; a worker owns a running job while `worker_id` is its id and its lease has not been taken over.

    `payload` and `result` are JSON text, opaque to the store (`payload_data` / `result_data` parse them).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_new_id)
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[str] = mapped_column(Text)
    total: Mapped[int] = mapped_column(Integer)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    api_key_id: Mapped[int | None] = mapped_column(Integer)  # the key that queued it; NULL: keyless (migration 0004)
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def payload_data(self) -> Any:
        """The payload, parsed from JSON."""
        return json.loads(self.payload)

    @property
    def result_data(self) -> Any:
        """The result parsed from JSON, or None before the job is done."""
        return None if self.result is None else json.loads(self.result)


class Setting(Base):
    """A service-wide setting (maintenance mode and the like); `value` is JSON text."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# -- incidents (migration 0002) ---------------------------------------------------------------------------------------
from sqlalchemy import ForeignKey  # noqa: E402  (appended section: the incident tables)

__all__ += [
    "ALERT_STATUSES",
    "EVENT_VISIBILITIES",
    "INCIDENT_SEVERITIES",
    "INCIDENT_STATUSES",
    "Incident",
    "IncidentAlert",
    "IncidentEvent",
]

# The incident state machine (spikeformer.ops.incidents): open -> acknowledged -> mitigated -> resolved -> closed.
INCIDENT_STATUSES = ("open", "acknowledged", "mitigated", "resolved", "closed")
# The names of spikeformer.ops.severity.SEVERITIES (the store sits below ops; tests/incidents checks they agree).
INCIDENT_SEVERITIES = ("SEV-1", "SEV-2", "SEV-3", "SEV-4")
EVENT_VISIBILITIES = ("public", "internal")
ALERT_STATUSES = ("firing", "resolved")


class Incident(Base):
    """An incident: its severity, state, the people on it, what is known, and its times (all UTC).

    `alert_group` is the Alertmanager group key of the incident opened by the webhook; `active_group_hash` is its
    sha256 while the incident is not resolved (NULL after), and is unique: two deliveries of the same alert group can
    never open two live incidents, whichever replica receives them. `group_labels` is JSON text.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(_in("status", INCIDENT_STATUSES), name="status"),
        CheckConstraint(_in("sev", INCIDENT_SEVERITIES), name="sev"),
        Index("ix_incidents_status_started_at", "status", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200))
    sev: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="open")
    summary: Mapped[str] = mapped_column(Text, default="")
    impact: Mapped[str] = mapped_column(Text, default="")
    commander: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32), default="manual")
    alert_group: Mapped[str | None] = mapped_column(Text)
    alert_group_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    active_group_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    group_labels: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[str | None] = mapped_column(Text)
    next_steps: Mapped[str | None] = mapped_column(Text)
    eta: Mapped[datetime | None]
    root_cause: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)
    postmortem_meeting_at: Mapped[datetime | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    mitigated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    last_update_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IncidentEvent(Base):
    """One timeline entry: who did or saw what, when; `public` entries may be shown outside (a status page).

    `kind` names the change (`opened`, `acknowledged`, `update`, `alert_firing`, ...: `spikeformer.ops.incidents`
    lists them); `data` is JSON text with the details (alert labels, silence ids), opaque to the store.
    """

    __tablename__ = "incident_events"
    __table_args__ = (CheckConstraint(_in("visibility", EVENT_VISIBILITIES), name="visibility"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    visibility: Mapped[str] = mapped_column(String(16), default="internal")
    author: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IncidentAlert(Base):
    """An Alertmanager alert (by fingerprint) attached to an incident, with its last known state.

    `labels` and `annotations` are JSON text. `starts_at` tells a re-fired alert (a new start) from a repeated
    notification of the same firing.
    """

    __tablename__ = "incident_alerts"
    __table_args__ = (
        UniqueConstraint("incident_id", "fingerprint"),
        CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    alertname: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16))
    sev: Mapped[str | None] = mapped_column(String(8))
    labels: Mapped[str] = mapped_column(Text, default="{}")
    annotations: Mapped[str] = mapped_column(Text, default="{}")
    generator_url: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- daily aggregates of the inference records (migration 0003) -------------------------------------------------------
from datetime import date  # noqa: E402  (appended section: the daily aggregates)

from sqlalchemy import Date  # noqa: E402

__all__ += ["InferenceDailyAggregate"]


class InferenceDailyAggregate(Base):
    """The inference records of one UTC day, model and status, summed; outlives the raw records' retention.

    `latency_hist` is JSON text: counts of the latencies per bucket of
    `spikeformer.store.inference_records.LATENCY_BUCKETS_MS` (upper bounds in ms, a last bucket for the rest).
    `sealed` is set when the day's raw records start to be deleted: from then on the row is final.
    """

    __tablename__ = "inference_daily_aggregates"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    latency_ms_max: Mapped[float | None] = mapped_column(Float)
    latency_hist: Mapped[str] = mapped_column(Text)
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
