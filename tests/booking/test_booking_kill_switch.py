"""The operator's kill switch holds bookings too: no booking walk reaches the city while it is on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from replica.clock import BERLIN
from shared.db.database import Database
from shared.killswitch import resume_site, stop_site
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, UNIT_S, add_person, observe
from tests.support.replica import Replica, api_requests

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_a_booking_waits_while_the_site_is_stopped(deps: Any, db: Database, replica: Replica) -> None:
    """Tried: the operator stops the site, then an autobook request comes for a free slot.
    Asserted: the booking waits (``BudgetExhausted``, which the actor answers by sending it again
    later) and not one request reaches the replica; after the site is resumed the same request
    books the slot."""
    from worker.bookings import BudgetExhausted, run_booking  # after the test broker is set up

    day = datetime.now(BERLIN).date() + timedelta(days=3)
    start = int(datetime(day.year, day.month, day.day, 9, tzinfo=BERLIN).timestamp())
    replica.add_slots(FS_OFFICE, [start, start + UNIT_S])
    person = add_person(db, 13001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])
    stop_site(deps.redis, "munich", reason="test", by="operator")
    since = requested_at = datetime.now(UTC)
    try:
        with pytest.raises(BudgetExhausted, match="stopped"):
            await run_booking(
                deps,
                user_id=person.user_id,
                slot_id=slot_id,
                subscription_id=person.subscription_id,
                requested_at=requested_at,
            )
        assert api_requests(replica, since) == []
    finally:
        resume_site(deps.redis, "munich")
    report = await run_booking(
        deps,
        user_id=person.user_id,
        slot_id=slot_id,
        subscription_id=person.subscription_id,
        requested_at=requested_at,  # the actor sends the same request again
    )
    assert report.outcome == "preconfirmed"
