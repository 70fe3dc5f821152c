"""Consent and quiet hours: when a person agreed to MTA keeping their booking details, and the hours
(Berlin time) in which they want no alerts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 01:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("quiet_start", sa.Time(), nullable=True))
        batch.add_column(sa.Column("quiet_end", sa.Time(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("quiet_end")
        batch.drop_column("quiet_start")
        batch.drop_column("consented_at")
