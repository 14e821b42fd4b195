"""Daily aggregates of the inference records, kept after the raw records are deleted by their retention.

One row per UTC day, model and status: the number of requests, the sum and maximum of their latencies and a
histogram of the latencies (JSON counts over `InferenceRecordStore.LATENCY_BUCKETS_MS`). `sealed` marks a day whose
raw records have passed their retention: its aggregate is final and no longer recomputed.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inference_daily_aggregates",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.Column("latency_ms_max", sa.Float(), nullable=True),
        sa.Column("latency_hist", sa.Text(), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "model", "status", name=op.f("pk_inference_daily_aggregates")),
    )


def downgrade() -> None:
    op.drop_table("inference_daily_aggregates")
