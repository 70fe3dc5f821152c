"""An earlier date's policy (shared/swaps.py, shared/booking.py): one extra hold per person and
service while a swap runs, never two; only slots strictly before the held appointment; the swap
ends when its new booking fails. On SQLite and PostgreSQL, without a browser (the walks are in
``test_swap_walk.py``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from shared import booking as policy
from shared import swaps
from shared.db.database import Database
from shared.db.models import Booking, BookingStatus, Notification, Subscription, SubscriptionState
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, POLICY_NOW, add_slot
from tests.booking.test_family_policy import add_family, add_subscription, start

NOW = POLICY_NOW
OLD_MINUTES = 10 * 24 * 60
"""The held appointment starts ten days after ``NOW``."""


def held_booking(db: Database, user_id: int, profile_id: int, status: BookingStatus) -> int:
    with db.transaction() as session:
        booking = Booking(
            user_id=user_id,
            profile_id=profile_id,
            site="munich",
            service_id=FS_SERVICE,
            office_id=FS_OFFICE,
            start_at=NOW + timedelta(minutes=OLD_MINUTES),
            status=status,
            process_id="1234567",
            auth_key="ab12",
            created_at=NOW - timedelta(days=1),
            updated_at=NOW - timedelta(days=1),
        )
        session.add(booking)
        session.flush()
        return booking.id


def watch(db: Database, user_id: int, booking_id: int) -> int:
    with db.transaction() as session:
        started = swaps.start_swap(
            session, user_id=user_id, booking_id=booking_id, any_office=False, autobook=True, now=NOW
        )
    assert started.outcome is swaps.SwapOutcome.STARTED and started.subscription_id is not None
    return started.subscription_id


def test_a_swap_gets_one_extra_hold_and_never_two(policy_db: Database) -> None:
    """A person holds a preconfirmed appointment (an active booking) and asks for an earlier date.
    Asserted: the first earlier slot may be held beside it (the new booking names the old); a second
    earlier slot for the same person and service is refused, by the policy and by the database's
    index; an ordinary subscription's request is refused too; a slot after the held one is not
    wanted. Tried: ``blocking_booking`` ignoring every active booking for a swap (the second hold
    was started), and the migration's swap index removed (the direct insert succeeded)."""
    (profile,) = add_family(policy_db, 8101, ["swap@example.org"])
    old = held_booking(policy_db, 8101, profile, BookingStatus.PRECONFIRMED)
    swap_sub = watch(policy_db, 8101, old)
    ordinary = add_subscription(policy_db, 8101, profile)
    first, second, later = (
        add_slot(policy_db, 60),
        add_slot(policy_db, 120),
        add_slot(policy_db, OLD_MINUTES + 60),
    )

    got = start(policy_db, 8101, first, swap_sub, NOW)
    assert got.outcome is policy.StartOutcome.STARTED and got.booking is not None
    assert got.booking.replaces_booking_id == old

    again = start(policy_db, 8101, second, swap_sub, NOW + timedelta(seconds=1))
    assert again.outcome is policy.StartOutcome.ALREADY_ACTIVE
    assert again.booking is not None and again.booking.id == got.booking.id
    plain = start(policy_db, 8101, second, ordinary, NOW + timedelta(seconds=2))
    assert plain.outcome is policy.StartOutcome.ALREADY_ACTIVE
    with policy_db.transaction() as session:
        requests = policy.autobook_requests(session, [second], now=NOW)
    assert requests == []  # the person is busy with the swap's one hold

    with pytest.raises(IntegrityError), policy_db.transaction() as session:
        session.add(
            Booking(
                user_id=8101,
                profile_id=profile,
                service_id=FS_SERVICE,
                office_id=FS_OFFICE,
                start_at=NOW + timedelta(minutes=120),
                status=BookingStatus.HOLDING,
                replaces_booking_id=old,
            )
        )
        session.flush()

    with policy_db.transaction() as session:
        policy.record_failed(
            session, got.booking.id, policy.BookingError(kind="site", code="SiteUnavailable"), now=NOW
        )
    not_earlier = start(policy_db, 8101, later, swap_sub, NOW + timedelta(seconds=3))
    assert not_earlier.outcome is policy.StartOutcome.NOT_WANTED


def test_a_failed_new_booking_keeps_the_old_and_ends_the_swap(policy_db: Database) -> None:
    """The swap's new booking fails at the site: the old booking stays held, the person is told
    ``swap_kept`` once, the swap's subscription is done, and the next earlier slot is not booked.
    A lost race (taken) ends nothing. Tried: ``pending`` treating a taken booking like a failed
    one (the swap ended after a race)."""
    (profile,) = add_family(policy_db, 8201, ["kept@example.org"])
    old = held_booking(policy_db, 8201, profile, BookingStatus.CONFIRMED)
    swap_sub = watch(policy_db, 8201, old)
    first, second, third = add_slot(policy_db, 60), add_slot(policy_db, 120), add_slot(policy_db, 180)

    raced = start(policy_db, 8201, first, swap_sub, NOW)
    assert raced.booking is not None
    with policy_db.transaction() as session:
        policy.record_failed(
            session,
            raced.booking.id,
            policy.BookingError(kind="taken", code="appointmentNotAvailable"),
            now=NOW + timedelta(minutes=1),  # a change of updated_at: the lookback sees it
        )
        assert swaps.pending(session, NOW + timedelta(minutes=1)) == []
        assert session.get(Subscription, swap_sub).state is SubscriptionState.ACTIVE  # type: ignore[union-attr]

    got = start(policy_db, 8201, second, swap_sub, NOW + timedelta(seconds=1))
    assert got.outcome is policy.StartOutcome.STARTED and got.booking is not None
    with policy_db.transaction() as session:
        policy.record_failed(
            session,
            got.booking.id,
            policy.BookingError(kind="profile", code="invalidEmail"),
            now=NOW + timedelta(minutes=2),
        )
        assert swaps.pending(session, NOW + timedelta(minutes=2)) == []
        assert swaps.pending(session, NOW + timedelta(minutes=2)) == []  # told once
        kept = [
            n.payload
            for n in session.query(Notification).filter(Notification.user_id == 8201)
            if n.payload.get("event") == "swap_kept"
        ]
        old_row = session.get(Booking, old)
        assert old_row is not None and old_row.status is BookingStatus.CONFIRMED
        sub = session.get(Subscription, swap_sub)
        assert sub is not None and sub.state is SubscriptionState.DONE
    assert len(kept) == 1 and kept[0]["booking_id"] == old
    assert start(policy_db, 8201, third, swap_sub, NOW + timedelta(seconds=2)).outcome is (
        policy.StartOutcome.NOT_WANTED
    )
