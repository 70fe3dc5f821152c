"""Booking for the family: several booking profiles per user, each with a label; a subscription and a
booking name the profile they book for; one active booking per (profile, service) instead of per
(user, service).

An existing profile (one per user so far) keeps its row and id and gets no label, which reads as
"the person themself"; every subscription and booking of its user is pointed at it, so nothing
changes for anyone until they add a second profile.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 02:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = "status IN ('holding', 'reserved', 'preconfirmed')"
_OWN_PROFILE = (
    "(SELECT MIN(booking_profiles.id) FROM booking_profiles WHERE booking_profiles.user_id = {table}.user_id)"
)


def upgrade() -> None:
    with op.batch_alter_table("booking_profiles") as batch:
        batch.add_column(sa.Column("label", sa.Text(), nullable=True))
        batch.drop_constraint("uq_booking_profiles_user_id", type_="unique")
        batch.create_index("ix_booking_profiles_user_id", ["user_id"], unique=False)
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("profile_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_subscriptions_profile_id_booking_profiles",
            "booking_profiles",
            ["profile_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_subscriptions_profile_id", ["profile_id"], unique=False)
    op.drop_index("uq_bookings_one_active_per_service", table_name="bookings")
    with op.batch_alter_table("bookings") as batch:
        batch.add_column(sa.Column("profile_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_bookings_profile_id_booking_profiles",
            "booking_profiles",
            ["profile_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_bookings_profile_id", ["profile_id"], unique=False)
    for table in ("subscriptions", "bookings"):
        op.execute(sa.text(f"UPDATE {table} SET profile_id = {_OWN_PROFILE.format(table=table)}"))
    op.create_index(
        "uq_bookings_one_active_per_profile_service",
        "bookings",
        ["profile_id", "service_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )


def downgrade() -> None:
    """Back to one profile per user: the oldest profile of each user stays, the others go."""
    op.drop_index("uq_bookings_one_active_per_profile_service", table_name="bookings")
    op.execute(
        sa.text(
            "DELETE FROM booking_profiles WHERE id <> "
            "(SELECT MIN(p.id) FROM booking_profiles p WHERE p.user_id = booking_profiles.user_id)"
        )
    )
    with op.batch_alter_table("bookings") as batch:
        batch.drop_index("ix_bookings_profile_id")
        batch.drop_constraint("fk_bookings_profile_id_booking_profiles", type_="foreignkey")
        batch.drop_column("profile_id")
    op.create_index(
        "uq_bookings_one_active_per_service",
        "bookings",
        ["user_id", "service_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_index("ix_subscriptions_profile_id")
        batch.drop_constraint("fk_subscriptions_profile_id_booking_profiles", type_="foreignkey")
        batch.drop_column("profile_id")
    with op.batch_alter_table("booking_profiles") as batch:
        batch.drop_index("ix_booking_profiles_user_id")
        batch.create_unique_constraint("uq_booking_profiles_user_id", ["user_id"])
        batch.drop_column("label")
