"""Seed the database with users, subscriptions, slots and outbox rows, the way the workers would.

For the bot's tests and the fan-out benchmark: ``seed_slot_alerts`` makes N subscribers of one
service and queues the alerts one new slot calls for, through the real recording code's insert
(``enqueue_notifications``), so the rows look exactly like the workers' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from shared.db.database import Database
from shared.db.models import (
    BookingProfile,
    Notification,
    NotificationKind,
    Slot,
    Subscription,
    SubscriptionState,
    User,
)
from shared.db.outbox import enqueue_notifications
from shared.domain import DEFAULT_SITE, utcnow

PASSPORT_SERVICE_ID = 1063441
"""Personalausweis in the real catalogue."""
PASING_OFFICE_ID = 54261
"""Bürgerbüro Pasing, which offers it."""


@dataclass(frozen=True)
class Seeded:
    user_ids: list[int]
    subscription_ids: list[int]
    slot_ids: list[int]
    notification_ids: list[int]


def add_users(
    db: Database,
    user_ids: Sequence[int],
    *,
    language: str = "en",
    with_profile: bool = False,
    service_id: int = PASSPORT_SERVICE_ID,
    office_ids: Sequence[int] = (),
    autobook: bool = False,
) -> list[int]:
    """Users with one active subscription each; returns the subscription ids."""
    subscription_ids = []
    with db.transaction() as session:
        for user_id in user_ids:
            # a profile comes with the consent /profile asks for first
            session.add(User(id=user_id, language=language, consented_at=utcnow() if with_profile else None))
            if with_profile:
                session.add(
                    BookingProfile(
                        user_id=user_id, first_name="Erika", last_name="Muster", email="e@example.org"
                    )
                )
            sub = Subscription(
                user_id=user_id,
                site=DEFAULT_SITE,
                service_id=service_id,
                service_count=1,
                office_ids=list(office_ids),
                weekdays=[],
                autobook=autobook,
                state=SubscriptionState.ACTIVE,
            )
            session.add(sub)
            session.flush()
            subscription_ids.append(sub.id)
    return subscription_ids


def add_slot(
    db: Database,
    *,
    start_at: datetime | None = None,
    office_id: int = PASING_OFFICE_ID,
    service_id: int = PASSPORT_SERVICE_ID,
    seen_at: datetime | None = None,
) -> int:
    seen = seen_at or utcnow()
    start = start_at or (seen + timedelta(days=3)).replace(hour=8, minute=30, second=0, microsecond=0)
    with db.transaction() as session:
        slot = Slot(
            site=DEFAULT_SITE,
            office_id=office_id,
            service_id=service_id,
            service_count=1,
            start_at=start,
            episode=1,
            first_seen_at=seen,
            last_seen_at=seen,
        )
        session.add(slot)
        session.flush()
        return slot.id


def queue_slot_alerts(db: Database, slot_id: int, subscription_ids: Sequence[int] | None = None) -> list[int]:
    """Outbox rows for ``slot_id`` to the given (default: all active) subscriptions."""
    with db.transaction() as session:
        slot = session.get(Slot, slot_id)
        assert slot is not None
        query = select(Subscription).where(Subscription.state == SubscriptionState.ACTIVE)
        if subscription_ids is not None:
            query = query.where(Subscription.id.in_(list(subscription_ids)))
        rows = [
            {
                "subscription_id": sub.id,
                "user_id": sub.user_id,
                "chat_id": sub.user_id,
                "slot_id": slot.id,
                "episode": slot.episode,
                "kind": NotificationKind.SLOT,
                "payload": {"observed_at": slot.last_seen_at.isoformat(), "autobook": sub.autobook},
                "next_attempt_at": utcnow(),
            }
            for sub in session.scalars(query.order_by(Subscription.id))
        ]
        return enqueue_notifications(session, rows)


def queue_gone(db: Database, slot_id: int, gone_at: datetime | None = None) -> list[int]:
    """End the slot's episode and queue a "gone" row for every alert about it (as recording does)."""
    now = gone_at or utcnow()
    with db.transaction() as session:
        slot = session.get(Slot, slot_id)
        assert slot is not None
        slot.gone_at = now
        alerts = session.scalars(
            select(Notification).where(
                Notification.slot_id == slot_id, Notification.kind == NotificationKind.SLOT
            )
        ).all()
        rows = [
            {
                "subscription_id": alert.subscription_id,
                "user_id": alert.user_id,
                "chat_id": alert.chat_id,
                "slot_id": slot_id,
                "episode": slot.episode,
                "kind": NotificationKind.GONE,
                "payload": {**alert.payload, "alert_notification_id": alert.id, "gone_at": now.isoformat()},
                "next_attempt_at": now,
            }
            for alert in alerts
        ]
        return enqueue_notifications(session, rows)


def seed_slot_alerts(
    db: Database, n_users: int, *, first_user_id: int = 1000, language: str = "en", with_profile: bool = False
) -> Seeded:
    """N subscribers, one new slot, N pending alerts."""
    user_ids = list(range(first_user_id, first_user_id + n_users))
    subscription_ids = add_users(db, user_ids, language=language, with_profile=with_profile)
    slot_id = add_slot(db)
    notification_ids = queue_slot_alerts(db, slot_id, subscription_ids)
    return Seeded(user_ids, subscription_ids, [slot_id], notification_ids)


def statuses(db: Database) -> dict[str, int]:
    """How many outbox rows are in each status."""
    with db.transaction() as session:
        counts: dict[str, int] = {}
        for status in session.scalars(select(Notification.status)):
            counts[str(status)] = counts.get(str(status), 0) + 1
        return counts


__all__ = [
    "PASING_OFFICE_ID",
    "PASSPORT_SERVICE_ID",
    "Seeded",
    "add_slot",
    "add_users",
    "queue_gone",
    "queue_slot_alerts",
    "seed_slot_alerts",
    "statuses",
]
