"""An earlier date: a subscription may watch for a date before one the person already holds, and
the booking it makes replaces that one (the old is cancelled at the city once the new is confirmed).

- ``subscriptions.replaces_booking_id``: the held booking this subscription looks for an earlier
  date for; ``subscriptions.start_before``: only slots starting strictly before this instant fit.
- ``bookings.replaces_booking_id``: the booking this one is to replace (a swap's new hold).
- The one-active-booking rule per (profile, service) now counts ordinary bookings only; a second
  partial unique index allows one swap hold beside them, never two.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 04:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = "status IN ('holding', 'reserved', 'preconfirmed')"
_ORDINARY = f"{_ACTIVE} AND replaces_booking_id IS NULL"
_SWAP = f"{_ACTIVE} AND replaces_booking_id IS NOT NULL"
_ONE_ACTIVE = "uq_bookings_one_active_per_profile_service"
_ONE_SWAP = "uq_bookings_one_swap_hold_per_profile_service"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("replaces_booking_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("start_before", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_subscriptions_replaces_booking_id_bookings",
            "bookings",
            ["replaces_booking_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_subscriptions_replaces_booking_id", ["replaces_booking_id"], unique=False)
    op.drop_index(_ONE_ACTIVE, table_name="bookings")
    with op.batch_alter_table("bookings") as batch:
        batch.add_column(sa.Column("replaces_booking_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_bookings_replaces_booking_id_bookings",
            "bookings",
            ["replaces_booking_id"],
            ["id"],
            ondelete="SET NULL",
        )
    for name, where in ((_ONE_ACTIVE, _ORDINARY), (_ONE_SWAP, _SWAP)):
        op.create_index(
            name,
            "bookings",
            ["profile_id", "service_id"],
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    """Swap holds become ordinary bookings; where that would give a person two active bookings for
    one service, the swap hold is closed as failed first."""
    op.drop_index(_ONE_SWAP, table_name="bookings")
    op.drop_index(_ONE_ACTIVE, table_name="bookings")
    op.execute(
        sa.text(
            f"UPDATE bookings SET status = 'failed' WHERE {_SWAP} AND EXISTS (SELECT 1 FROM bookings o "
            "WHERE o.profile_id = bookings.profile_id AND o.service_id = bookings.service_id "
            "AND o.id <> bookings.id AND o.status IN ('holding', 'reserved', 'preconfirmed') "
            "AND o.replaces_booking_id IS NULL)"
        )
    )
    with op.batch_alter_table("bookings") as batch:
        batch.drop_constraint("fk_bookings_replaces_booking_id_bookings", type_="foreignkey")
        batch.drop_column("replaces_booking_id")
    op.create_index(
        _ONE_ACTIVE,
        "bookings",
        ["profile_id", "service_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_index("ix_subscriptions_replaces_booking_id")
        batch.drop_constraint("fk_subscriptions_replaces_booking_id_bookings", type_="foreignkey")
        batch.drop_column("start_before")
        batch.drop_column("replaces_booking_id")
