"""Incidents: incidents, their timeline events and the Alertmanager alerts attached to them.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("sev", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("impact", sa.Text(), nullable=False),
        sa.Column("commander", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("alert_group", sa.Text(), nullable=True),
        sa.Column("alert_group_hash", sa.String(length=64), nullable=True),
        sa.Column("active_group_hash", sa.String(length=64), nullable=True),
        sa.Column("group_labels", sa.Text(), nullable=True),
        sa.Column("progress", sa.Text(), nullable=True),
        sa.Column("next_steps", sa.Text(), nullable=True),
        sa.Column("eta", _utc(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("postmortem_meeting_at", _utc(), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("acknowledged_at", _utc(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("mitigated_at", _utc(), nullable=True),
        sa.Column("resolved_at", _utc(), nullable=True),
        sa.Column("closed_at", _utc(), nullable=True),
        sa.Column("last_update_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'mitigated', 'resolved', 'closed')", name=op.f("ck_incidents_status")
        ),
        sa.CheckConstraint("sev IN ('SEV-1', 'SEV-2', 'SEV-3', 'SEV-4')", name=op.f("ck_incidents_sev")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("active_group_hash", name=op.f("uq_incidents_active_group_hash")),
    )
    op.create_index(op.f("ix_incidents_alert_group_hash"), "incidents", ["alert_group_hash"])
    op.create_index("ix_incidents_status_started_at", "incidents", ["status", "started_at"])

    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint("visibility IN ('public', 'internal')", name=op.f("ck_incident_events_visibility")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    op.create_index(op.f("ix_incident_events_incident_id"), "incident_events", ["incident_id"])

    op.create_table(
        "incident_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("alertname", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sev", sa.String(length=8), nullable=True),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("annotations", sa.Text(), nullable=False),
        sa.Column("generator_url", sa.Text(), nullable=True),
        sa.Column("starts_at", _utc(), nullable=True),
        sa.Column("ends_at", _utc(), nullable=True),
        sa.Column("first_seen_at", _utc(), nullable=False),
        sa.Column("last_seen_at", _utc(), nullable=False),
        sa.CheckConstraint("status IN ('firing', 'resolved')", name=op.f("ck_incident_alerts_status")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_alerts_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_alerts")),
        sa.UniqueConstraint("incident_id", "fingerprint", name=op.f("uq_incident_alerts_incident_id_fingerprint")),
    )
    op.create_index(op.f("ix_incident_alerts_incident_id"), "incident_alerts", ["incident_id"])
    op.create_index(op.f("ix_incident_alerts_fingerprint"), "incident_alerts", ["fingerprint"])


def downgrade() -> None:
    op.drop_index(op.f("ix_incident_alerts_fingerprint"), table_name="incident_alerts")
    op.drop_index(op.f("ix_incident_alerts_incident_id"), table_name="incident_alerts")
    op.drop_table("incident_alerts")
    op.drop_index(op.f("ix_incident_events_incident_id"), table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index("ix_incidents_status_started_at", table_name="incidents")
    op.drop_index(op.f("ix_incidents_alert_group_hash"), table_name="incidents")
    op.drop_table("incidents")
