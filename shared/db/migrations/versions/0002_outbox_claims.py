"""Outbox claims: the bot's sender marks the rows it holds, so a crash mid-batch sends nothing twice.

Adds ``notifications.claim_token`` (indexed) and ``claimed_at``. The new status value ``sending``
needs no DDL: statuses are VARCHAR(32) without a CHECK constraint.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("claim_token", sa.String(length=64), nullable=True))
    op.add_column("notifications", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_notifications_claim_token"), "notifications", ["claim_token"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notifications_claim_token"), table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claim_token")
