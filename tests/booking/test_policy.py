"""Booking policy on SQLite and PostgreSQL: one active booking per person and service (enforced by
the database), one booking per request, no blind retries, fair autobook dispatch, reminders once.

Requests go through ``shared.booking.begin_booking``, the worker's own entry, not a copy of it in
the test: tried with the request time not passed through, the redelivery test fails."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared import booking as policy
from shared.db.database import Database
from shared.db.models import Booking, BookingProfile, BookingStatus
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, POLICY_NOW, add_person, add_slot, booking_events

NOW = POLICY_NOW
SQLITE_ONLY = pytest.mark.parametrize("policy_db", ["sqlite"], indirect=True)
"""Plain policy (no concurrency, no dialect-specific SQL): one backend is enough."""


def start(
    db: Database, user_id: int, slot_id: int, sub_id: int | None, at: datetime, *, manual: bool = False
) -> policy.Start:
    """A booking request at ``at``, through the worker's own entry (``shared.booking.begin_booking``)."""
    return policy.begin_booking(
        db, user_id=user_id, slot_id=slot_id, subscription_id=sub_id, requested_at=at, manual=manual, now=at
    )


def test_one_active_booking_per_user_and_service_is_enforced_by_the_database(policy_db: Database) -> None:
    """Injected: eight threads claim bookings for one person and service at once (different slots),
    and a raw INSERT of a second active row. Asserts: exactly one claim wins, the raw insert fails."""
    person = add_person(policy_db, 1, service_id=FS_SERVICE, office_id=FS_OFFICE)
    slots = [add_slot(policy_db, 60 * (i + 1)) for i in range(8)]
    outcomes: list[policy.StartOutcome] = []
    barrier = threading.Barrier(len(slots))

    def claim(slot_id: int) -> None:
        barrier.wait()
        at = NOW + timedelta(microseconds=slot_id)  # eight different requests
        outcomes.append(start(policy_db, person.user_id, slot_id, person.subscription_id, at).outcome)

    threads = [threading.Thread(target=claim, args=(s,)) for s in slots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(policy.StartOutcome.STARTED) == 1
    assert set(outcomes) <= {policy.StartOutcome.STARTED, policy.StartOutcome.ALREADY_ACTIVE}
    with pytest.raises(IntegrityError), policy_db.transaction() as session:
        session.add(
            Booking(
                user_id=person.user_id,
                profile_id=session.scalar(
                    select(BookingProfile.id).where(BookingProfile.user_id == person.user_id)
                ),
                service_id=FS_SERVICE,
                office_id=FS_OFFICE,
                status=BookingStatus.RESERVED,
            )
        )


def test_a_request_is_handled_once_and_resumed_on_redelivery(policy_db: Database) -> None:
    person = add_person(policy_db, 2, service_id=FS_SERVICE, office_id=FS_OFFICE)
    slot_id = add_slot(policy_db, 120)
    first = start(policy_db, person.user_id, slot_id, person.subscription_id, NOW)
    assert first.outcome is policy.StartOutcome.STARTED and first.booking is not None
    again = start(policy_db, person.user_id, slot_id, person.subscription_id, NOW)
    assert again.outcome is policy.StartOutcome.RESUME_HOLDING and again.booking is not None
    assert again.booking.id == first.booking.id
    with policy_db.transaction() as session:
        policy.record_reserved(
            session,
            first.booking.id,
            process_id="101002",
            auth_key="ab" * 32,
            reservation_minutes=15,
            now=NOW,
        )
        policy.record_reserved(
            session,
            first.booking.id,
            process_id="101002",
            auth_key="ab" * 32,
            reservation_minutes=15,
            now=NOW,
        )
    assert (
        start(policy_db, person.user_id, slot_id, person.subscription_id, NOW).outcome
        is policy.StartOutcome.RESUME_RESERVED
    )
    with policy_db.transaction() as session:
        policy.record_failed(
            session,
            first.booking.id,
            policy.BookingError(kind="taken", code="appointmentNotAvailable"),
            now=NOW,
        )
    assert (
        start(policy_db, person.user_id, slot_id, person.subscription_id, NOW).outcome
        is policy.StartOutcome.DONE
    )
    later = start(
        policy_db, person.user_id, slot_id, person.subscription_id, NOW + timedelta(minutes=1), manual=True
    )
    assert later.outcome is policy.StartOutcome.STARTED  # a new tap on "Book this" is a new request
    assert [e for _, e in booking_events(policy_db)] == ["holding", "taken"]  # each step told once


@SQLITE_ONLY
def test_a_refused_profile_is_not_used_again_until_it_changes(policy_db: Database) -> None:
    person = add_person(policy_db, 3, service_id=FS_SERVICE, office_id=FS_OFFICE)
    first = start(policy_db, person.user_id, add_slot(policy_db, 60), person.subscription_id, NOW)
    assert first.booking is not None
    refusal = policy.BookingError(kind="profile", code="invalidEmail", field="email", reason="format")
    with policy_db.transaction() as session:
        policy.record_failed(session, first.booking.id, refusal, now=NOW)
    later = NOW + timedelta(minutes=5)
    blocked = start(policy_db, person.user_id, add_slot(policy_db, 90), person.subscription_id, later)
    assert blocked.outcome is policy.StartOutcome.PROFILE_REFUSED
    with policy_db.transaction() as session:
        profile = session.query(BookingProfile).filter_by(user_id=person.user_id).one()
        profile.email = "fixed@example.org"
        profile.updated_at = later + timedelta(seconds=1)
    fixed = start(
        policy_db,
        person.user_id,
        add_slot(policy_db, 100),
        person.subscription_id,
        later + timedelta(seconds=2),
    )
    assert fixed.outcome is policy.StartOutcome.STARTED


@SQLITE_ONLY
def test_autobook_dispatch_is_one_per_user_and_spreads_the_slots(policy_db: Database) -> None:
    people = [add_person(policy_db, 10 + i, service_id=FS_SERVICE, office_id=FS_OFFICE) for i in range(5)]
    manual_only = add_person(policy_db, 99, service_id=FS_SERVICE, office_id=FS_OFFICE, autobook=False)
    slots = [add_slot(policy_db, 60 * (i + 1)) for i in range(2)]
    busy = start(policy_db, people[0].user_id, slots[0], people[0].subscription_id, NOW)
    assert busy.outcome is policy.StartOutcome.STARTED
    with policy_db.transaction() as session:
        requests = policy.autobook_requests(session, slots, now=NOW)
    users = [r.user_id for r in requests]
    assert users == [p.user_id for p in people[1:]]  # busy and manual-only users are left out
    assert manual_only.user_id not in users
    assert [r.slot_id for r in requests] == [slots[0], slots[1], slots[0], slots[1]]


@SQLITE_ONLY
def test_reminders_are_queued_once_per_threshold(policy_db: Database) -> None:
    person = add_person(policy_db, 4, service_id=FS_SERVICE, office_id=FS_OFFICE)
    begun = start(policy_db, person.user_id, add_slot(policy_db, 300), person.subscription_id, NOW)
    assert begun.booking is not None
    with policy_db.transaction() as session:
        policy.record_reserved(
            session, begun.booking.id, process_id="1", auth_key="abcd", reservation_minutes=15, now=NOW
        )
        policy.record_preconfirmed(session, begun.booking.id, activation_minutes=30, now=NOW)
    counts = []
    for minutes in (5, 21, 22, 28, 28, 29, 31):
        with policy_db.transaction() as session:
            counts.append(policy.queue_reminders(session, NOW + timedelta(minutes=minutes)))
    assert counts == [0, 1, 0, 1, 0, 0, 0]
    with policy_db.transaction() as session:
        assert (
            policy.apply_site_state(
                session, begun.booking.id, found=True, status="preconfirmed", now=NOW + timedelta(minutes=41)
            )
            is BookingStatus.EXPIRED
        )
    assert [e for _, e in booking_events(policy_db)] == [
        "holding",
        "reserved",
        "reminder",
        "reminder",
        "expired",
    ]
