"""Rules the database itself enforces: insert-once outbox, one active booking, cascading deletes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shared.db.engine import session_scope
from shared.db.models import (
    Booking,
    BookingProfile,
    BookingStatus,
    Check,
    Notification,
    NotificationKind,
    Slot,
    Subscription,
    Target,
    User,
)
from shared.db.outbox import enqueue_notification, enqueue_notifications
from shared.domain import CheckOutcome

from .conftest import Database

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _user_with_subscription_and_slot(db: Database, user_id: int = 1) -> tuple[int, int]:
    """A user with one subscription, and a slot (the same for every user)."""
    with session_scope(db.sessions) as session:
        user = User(id=user_id, subscriptions=[Subscription(service_id=1063475, office_ids=[102522])])
        session.add(user)
        slot = session.scalars(select(Slot)).first()
        if slot is None:
            slot = Slot(
                site="munich",
                office_id=102522,
                service_id=1063475,
                start_at=T0,
                first_seen_at=T0,
                last_seen_at=T0,
            )
            session.add(slot)
        session.flush()
        return user.subscriptions[0].id, slot.id


def _count(db: Database, model: type, *where: object) -> int:
    with session_scope(db.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


def test_outbox_double_insert_is_a_noop(db: Database) -> None:
    sub_id, slot_id = _user_with_subscription_and_slot(db)
    row = {
        "subscription_id": sub_id,
        "user_id": 1,
        "chat_id": 1,
        "slot_id": slot_id,
        "episode": 1,
        "kind": "slot",
    }
    with session_scope(db.sessions) as session:
        assert enqueue_notification(session, **row) is True
    with session_scope(db.sessions) as session:
        assert enqueue_notification(session, **row) is False
        assert enqueue_notification(session, **{**row, "kind": NotificationKind.GONE}) is True
        assert len(enqueue_notifications(session, [row, {**row, "episode": 2}])) == 1  # only episode 2 is new
    assert _count(db, Notification) == 3
    with session_scope(db.sessions) as session:
        stored = session.scalars(select(Notification).order_by(Notification.id)).first()
        assert stored is not None
        assert stored.status == "pending" and stored.attempts == 0 and stored.payload == {}
        assert stored.created_at.tzinfo is UTC and stored.next_attempt_at is not None


def test_operator_alerts_deduplicate_on_dedup_key(db: Database) -> None:
    alert = {
        "kind": NotificationKind.OPERATOR,
        "chat_id": -100,
        "text": "site changed",
        "dedup_key": "op:x:1",
    }
    with session_scope(db.sessions) as session:
        assert enqueue_notification(session, **alert) is True
        assert enqueue_notification(session, **alert) is False
        assert enqueue_notification(session, **{**alert, "dedup_key": "op:x:2"}) is True
    assert _count(db, Notification) == 2


def test_unknown_outbox_fields_are_refused(db: Database) -> None:
    with pytest.raises(TypeError, match="unknown"), session_scope(db.sessions) as session:
        enqueue_notification(session, kind="slot", colour="red")


def _booking(user_id: int, service_id: int, status: BookingStatus) -> Booking:
    """A booking for the user's own profile (its id is the user id here, see the test)."""
    return Booking(
        user_id=user_id, profile_id=user_id, service_id=service_id, office_id=102522, status=status
    )


def test_one_active_booking_per_person_and_service(db: Database) -> None:
    _user_with_subscription_and_slot(db, user_id=1)
    _user_with_subscription_and_slot(db, user_id=2)
    with session_scope(db.sessions) as session:
        session.add_all([BookingProfile(id=1, user_id=1), BookingProfile(id=2, user_id=2)])
    with session_scope(db.sessions) as session:
        session.add(_booking(1, 1063475, BookingStatus.HOLDING))
        session.add(_booking(1, 1063475, BookingStatus.CONFIRMED))  # finished ones don't count
        session.add(_booking(1, 1063475, BookingStatus.FAILED))
        session.add(_booking(1, 1064121, BookingStatus.RESERVED))  # another service
        session.add(_booking(2, 1063475, BookingStatus.PRECONFIRMED))  # another person
    for status in (BookingStatus.HOLDING, BookingStatus.RESERVED, BookingStatus.PRECONFIRMED):
        with pytest.raises(IntegrityError), session_scope(db.sessions) as session:
            session.add(_booking(1, 1063475, status))
            session.flush()
    # once the active one ends, a new one may start
    with session_scope(db.sessions) as session:
        active = session.scalars(
            select(Booking).where(Booking.user_id == 1, Booking.status == BookingStatus.HOLDING)
        ).one()
        active.status = BookingStatus.EXPIRED
    with session_scope(db.sessions) as session:
        session.add(_booking(1, 1063475, BookingStatus.HOLDING))
    assert _count(db, Booking) == 6


def test_deleting_a_user_leaves_nothing_of_theirs(db: Database) -> None:
    sub_id, slot_id = _user_with_subscription_and_slot(db, user_id=1)
    other_sub, _ = _user_with_subscription_and_slot(db, user_id=2)
    with session_scope(db.sessions) as session:
        session.add(BookingProfile(user_id=1, first_name="A", email="a@example.org"))
        booking = Booking(
            user_id=1, subscription_id=sub_id, slot_id=slot_id, service_id=1063475, office_id=102522
        )
        session.add(booking)
        session.flush()
        for kind in (NotificationKind.SLOT, NotificationKind.GONE):
            enqueue_notification(
                session, subscription_id=sub_id, user_id=1, chat_id=1, slot_id=slot_id, episode=1, kind=kind
            )
        enqueue_notification(
            session, user_id=1, chat_id=1, booking_id=booking.id, kind="reminder", dedup_key="r1"
        )
        enqueue_notification(
            session, subscription_id=other_sub, user_id=2, chat_id=2, slot_id=slot_id, kind="slot"
        )
        target = Target(service_id=1063475, service_count=1, office_key="102522")
        session.add(target)
        session.flush()
        session.add(Check(target_id=target.id, started_at=T0, outcome=CheckOutcome.OK))

    with session_scope(db.sessions) as session:
        user = session.get(User, 1)
        assert user is not None
        session.delete(user)

    assert _count(db, User, User.id == 1) == 0
    assert _count(db, BookingProfile) == 0
    assert _count(db, Subscription, Subscription.user_id == 1) == 0
    assert _count(db, Booking) == 0
    assert _count(db, Notification, Notification.user_id == 1) == 0
    assert _count(db, Notification, Notification.subscription_id == sub_id) == 0
    # other people's rows and shared facts stay
    assert _count(db, User) == 1
    assert _count(db, Notification) == 1
    assert _count(db, Slot) == 1
    assert _count(db, Check) == 1
