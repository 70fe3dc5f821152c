"""Booking from a standby page (``worker.standby``): real Chromium against the replica.

A standby is a session walked to the service step with the captcha passed; a booking of its target
starts there, presses "Weiter" and reads a fresh calendar, without loading the page or solving the
captcha again. A stale or unwanted standby is renewed or closed by ``keep_standbys``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.db.database import Database
from tests.booking.conftest import ORLEANSPLATZ, WOHNSITZANMELDUNG, add_person, observe
from tests.support.replica import Replica, berlin_slot
from worker.sites.booking import Standby
from worker.standby import claim, keep_standbys, wanted_standbys

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

TARGET = Standby("munich", WOHNSITZANMELDUNG, ORLEANSPLATZ, 1)


def _requests_to(page: Any) -> list[str]:
    """The URLs the page requests from now on."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


async def test_a_booking_from_a_standby_reaches_the_hold_without_reloading_the_page(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Prepared before the slot appears, the standby is claimed by the booking: no page load, no
    captcha request, one fresh calendar load, then reserve, update and preconfirm.
    Tried: ``MunichBooker._standby_ready`` answering False (the booking walks from the deep link)
    fails on the navigation."""
    from worker.bookings import run_booking

    person = add_person(db, 3001, service_id=WOHNSITZANMELDUNG, office_id=ORLEANSPLATZ)
    assert wanted_standbys(db, 2) == [TARGET]
    report = await keep_standbys(deps, [TARGET])
    assert (report.prepared, report.kept) == (1, 0)
    assert report.requests > 0  # the preparation's API requests, charged to the site budget
    session = deps.pool.warm_session(TARGET.key)
    assert session is not None and session.token is not None
    seen = _requests_to(session.page)
    navigations: list[str] = []
    session.page.on("framenavigated", lambda frame: navigations.append(frame.url))

    start = berlin_slot(days_ahead=4, hour=10, minute=30)
    replica.add_slots(ORLEANSPLATZ, [start])
    (slot_id,) = observe(db, office_id=ORLEANSPLATZ, service_id=WOHNSITZANMELDUNG, starts=[start])
    result = await run_booking(
        deps,
        user_id=person.user_id,
        slot_id=slot_id,
        subscription_id=person.subscription_id,
        requested_at=datetime.now(UTC),
    )

    assert result.outcome == "preconfirmed"
    held = [p for p in replica.processes() if p["timestamp"] == start]
    assert len(held) == 1 and held[0]["status"] == "preconfirmed"
    assert navigations == [], "the page was loaded (or its deep link opened) again"
    assert not [u for u in seen if "terminvereinbarung" in u], "the page was loaded again"
    assert not [u for u in seen if "/captcha-" in u], "the captcha was solved again"
    endpoints = [u.split("/api/citizen/", 1)[1].split("/", 1)[0] for u in seen if "/api/citizen/" in u]
    assert endpoints[0] == "available-calendar" and "reserve-appointment" in endpoints
    # used once: the pool closed it, and the next keep prepares a new one
    assert deps.pool.warm_session(TARGET.key) is None
    assert session.retired


async def test_a_stale_standby_is_not_claimed_and_is_prepared_again(deps: Any, db: Database) -> None:
    """A standby whose captcha token is about to run out is not handed to a booking; the next
    ``keep_standbys`` closes it and prepares a fresh one, while a fit one is only kept.
    Tried: ``_fit`` without the pool's retire check: the stale standby was claimed; renewing only
    unfit standbys: the one with 100 s left was kept."""
    add_person(db, 3002, service_id=WOHNSITZANMELDUNG, office_id=ORLEANSPLATZ)
    await keep_standbys(deps, [TARGET])
    fresh = deps.pool.warm_session(TARGET.key)
    assert fresh is not None
    again = await keep_standbys(deps, [TARGET])
    assert (again.prepared, again.kept, again.requests) == (0, 1, 0)

    fresh.token_expires_at = deps.pool.clock() + 5  # within the pool's refresh margin
    from worker.sites.booking import SlotToBook

    slot = SlotToBook(ORLEANSPLATZ, WOHNSITZANMELDUNG, datetime.now(UTC).replace(year=2030))
    assert claim(deps.pool, "munich", slot) is None

    renewed = await keep_standbys(deps, [TARGET])
    assert renewed.prepared == 1
    replacement = deps.pool.warm_session(TARGET.key)
    assert replacement is not None and replacement is not fresh and fresh.retired
    # still fit for the pool, but close enough to its end that the keeper renews it ahead
    replacement.token_expires_at = deps.pool.clock() + 100
    ahead = await keep_standbys(deps, [TARGET])
    assert (ahead.prepared, ahead.kept) == (1, 0) and replacement.retired
    assert claim(deps.pool, "munich", slot) == TARGET.key
    assert claim(deps.pool, "munich", slot) is None  # claimed once only


async def test_a_standby_nobody_wants_is_closed(deps: Any, db: Database) -> None:
    """When no autobook subscription wants the target any more, its standby is closed.
    Tried: skipping the drop loop: the session stayed open."""
    left = deps.pool.warm_session(TARGET.key)  # the module's pool is shared: start without one
    if left is not None:
        await deps.pool.retire(left, "test start")
    await keep_standbys(deps, [TARGET])
    session = deps.pool.warm_session(TARGET.key)
    assert session is not None
    report = await keep_standbys(deps, [])
    assert report.dropped == 1 and session.retired and deps.pool.warm_session(TARGET.key) is None
