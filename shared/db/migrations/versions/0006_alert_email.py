"""A second alert channel: each outbox row says on which channel it goes (``telegram`` or
``email``), and a person may keep one verified alert e-mail address (encrypted), plus the address
they are verifying and its code (encrypted too).

The outbox's insert-once key gains the channel, so a slot episode is alerted once per person and
channel. Existing rows are Telegram rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 04:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KEY = "uq_notifications_subscription_id_slot_id_episode_kind"
_NEW_KEY = "uq_notifications_subscription_id_slot_id_episode_kind_channel"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("alert_email", sa.Text(), nullable=True))
        batch.add_column(sa.Column("alert_email_pending", sa.Text(), nullable=True))
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(
            sa.Column("channel", sa.String(length=16), nullable=False, server_default="telegram")
        )
        batch.drop_constraint(_OLD_KEY, type_="unique")
        batch.create_unique_constraint(_NEW_KEY, ["subscription_id", "slot_id", "episode", "kind", "channel"])


def downgrade() -> None:
    """Back to Telegram only: e-mail rows and addresses go."""
    op.execute(sa.text("DELETE FROM notifications WHERE channel <> 'telegram'"))
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint(_NEW_KEY, type_="unique")
        batch.create_unique_constraint(_OLD_KEY, ["subscription_id", "slot_id", "episode", "kind"])
        batch.drop_column("channel")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("alert_email_pending")
        batch.drop_column("alert_email")
