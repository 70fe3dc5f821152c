"""An autobook booking for a child, walked in real Chromium against the replica: the form gets the
child's profile (``run_booking`` as the ``book_slot`` actor calls it), not the parent's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.db.database import Database
from shared.db.models import BookingProfile, BookingStatus, Subscription
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, add_person, bookings, observe
from tests.booking.test_booking_walk import fs_slot
from tests.support.replica import Replica

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHILD_EMAIL = "max.kind@example.org"


def add_child(db: Database, user_id: int) -> tuple[int, int]:
    """A second profile ("Max") of ``user_id`` and an autobook subscription booking for it."""
    with db.transaction() as session:
        child = BookingProfile(
            user_id=user_id,
            label="Max",
            first_name="Max",
            last_name="Kindermann",
            email=CHILD_EMAIL,
            custom_fields={"date_of_birth": "03.04.2008"},
        )
        session.add(child)
        session.flush()
        sub = Subscription(
            user_id=user_id, service_id=FS_SERVICE, office_ids=[FS_OFFICE], autobook=True, profile_id=child.id
        )
        session.add(sub)
        session.flush()
        return child.id, sub.id


async def test_autobook_for_the_child_fills_in_the_childs_profile(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Tried: a parent (profile of their own, e-mail person3001@…) with a child's profile and an
    autobook subscription for the child; one slot; ``run_booking`` for the child's subscription.
    Asserted: preconfirmed; the row names the child's profile; the city's process and its
    activation mail carry the child's e-mail, and nothing went to the parent's address. (With the
    worker reading the profile by user id, as before, the parent's address reached the city.)"""
    from worker.bookings import run_booking

    parent = add_person(db, 3001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    child_id, child_sub = add_child(db, 3001)
    start = fs_slot(replica, days_ahead=4, hour=10)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])

    report = await run_booking(
        deps, user_id=3001, slot_id=slot_id, subscription_id=child_sub, requested_at=datetime.now(UTC)
    )

    assert report.outcome == "preconfirmed"
    (row,) = bookings(db)
    assert row.status is BookingStatus.PRECONFIRMED and row.profile_id == child_id
    (process,) = [p for p in replica.processes() if p["status"] == "preconfirmed"]
    assert process["email"] == CHILD_EMAIL and str(process["processId"]) == row.process_id
    assert [m["to"] for m in replica.mail(kind="activation")] == [CHILD_EMAIL]
    assert replica.mail(to=parent.email) == []
