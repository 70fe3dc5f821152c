"""Booking on any day of any month in the horizon, in real Chromium against the replica (issue 12).

The city's calendar (muc-patternlab-vue MucCalendar/MucDayTile, zmscitizenview CalendarView.vue)
shows one month: day tiles labelled with the bare day number, month buttons that jump to the next
bookable date, and Früher/Später that page the day's times when more than one office offers the
service. These tests book through ``worker.bookings.run_booking`` (the ``book_slot`` actor's body)
and assert what the city holds afterwards, and that what the booker cannot find or read ends as a
layout change (a site failure), never as "taken".
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from replica.clock import BERLIN
from shared.db.database import Database
from shared.db.models import BookingStatus, Notification, NotificationKind
from tests.booking.conftest import (
    FS_OFFICE,
    FS_SERVICE,
    UNIT_S,
    WOHNSITZANMELDUNG,
    add_person,
    booking_events,
    bookings,
    observe,
)
from tests.support.replica import LEONRODSTRASSE, ORLEANSPLATZ, Replica

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

PASING = 54261


def month_day(months_ahead: int, day: int) -> date:
    """``day`` of the month ``months_ahead`` after the current one (Berlin)."""
    today = datetime.now(BERLIN).date()
    month0 = today.month - 1 + months_ahead
    return date(today.year + month0 // 12, month0 % 12 + 1, day)


def at(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN).timestamp())


def fs_appointment(replica: Replica, day: date, hour: int) -> int:
    """One Führerscheinstelle appointment (two consecutive units) released at the replica."""
    start = at(day, hour)
    replica.add_slots(FS_OFFICE, [start, start + UNIT_S])
    return start


async def book(deps: Any, person: Any, slot_id: int) -> Any:
    from worker.bookings import run_booking

    return await run_booking(
        deps,
        user_id=person.user_id,
        slot_id=slot_id,
        subscription_id=person.subscription_id,
        requested_at=datetime.now(UTC),
    )


def held_timestamps(replica: Replica) -> list[int]:
    return [int(p["timestamp"]) for p in replica.processes()]


async def test_one_office_books_a_later_day_in_the_month_after_next(
    deps: Any, db: Database, replica: Replica
) -> None:
    """One office (the Führerscheinstelle is the only one offering the service: no Früher/Später).
    Bookable: the 3rd of next month (where the page opens), the 10th and 20th of the month after
    next. Tried: booking the 20th. Asserted: the booking is preconfirmed and the city holds exactly
    that appointment — the booker turned the month (the page jumps to the 10th), then picked the
    20th's tile by its day number. Broken once by turning the month backwards: the test failed."""
    fs_appointment(replica, month_day(1, 3), 9)
    fs_appointment(replica, month_day(2, 10), 9)
    start = fs_appointment(replica, month_day(2, 20), 14)
    person = add_person(db, 12001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])

    report = await book(deps, person, slot_id)

    assert report.outcome == "preconfirmed"
    (booking,) = bookings(db)
    assert booking.status is BookingStatus.PRECONFIRMED
    assert held_timestamps(replica) == [start]


async def test_three_offices_page_with_spaeter_to_a_later_day(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Three offices have times (Orleansplatz, Pasing, Leonrodstraße; the page lists every
    Bürgerbüro, so Früher/Später are shown and only one day part at a time). Leonrodstraße is
    bookable on the 5th and the 12th of next month; the slot is the 12th at 16:00 (the afternoon,
    after the morning's 9:00). Asserted: preconfirmed, and the city holds exactly that appointment
    — the booker picked the 12th's tile and pressed Später. Broken once by never pressing Später:
    the booking failed as a layout change."""
    day = month_day(1, 12)
    replica.add_slots(ORLEANSPLATZ, [at(month_day(1, 3), 9)])
    replica.add_slots(PASING, [at(month_day(1, 3), 10)])
    replica.add_slots(LEONRODSTRASSE, [at(month_day(1, 5), 9), at(day, 9), at(day, 16)])
    person = add_person(db, 12002, service_id=WOHNSITZANMELDUNG, office_id=LEONRODSTRASSE)
    (slot_id,) = observe(db, office_id=LEONRODSTRASSE, service_id=WOHNSITZANMELDUNG, starts=[at(day, 16)])

    report = await book(deps, person, slot_id)

    assert report.outcome == "preconfirmed"
    assert held_timestamps(replica) == [at(day, 16)]


def _error(db: Database) -> dict[str, Any]:
    (booking,) = bookings(db)
    assert booking.status is BookingStatus.FAILED
    assert booking.error is not None
    return dict(json.loads(booking.error))


async def test_missing_day_tiles_end_as_a_layout_change_not_taken(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: the page's day tiles lose role=button and their class (layout variant
    ``renamed-day-tiles``); the slot is on the 20th of next month, the page opens on the 3rd.
    Asserted: the booking fails as a site failure with code LayoutChanged, the operator alert is
    queued at once (one per site and layout episode, the checks' dedup key), the subscriber hears
    "failed", not "taken", and the slot stays free at the city. Broken once by mapping a missing
    tile to SlotTaken, and once by leaving the alert out: failed."""
    fs_appointment(replica, month_day(1, 3), 9)
    start = fs_appointment(replica, month_day(1, 20), 9)
    replica.faults(layout_variant="renamed-day-tiles")
    person = add_person(db, 12003, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])

    report = await book(deps, person, slot_id)

    assert report.outcome == "failed"
    error = _error(db)
    assert (error["kind"], error["code"]) == ("site", "LayoutChanged")
    assert "day tiles" in error["reason"]
    assert [event for _, event in booking_events(db)] == ["failed"]
    assert replica.processes() == []
    assert _operator_alerts(db) == ["layout_changed"]


async def test_renamed_calendar_answer_field_ends_as_a_layout_change_not_taken(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: the calendar answer names its day list ``days`` instead of ``availableDays`` (a
    site release the booker does not know). Asserted: a site failure with code LayoutChanged that
    names the field, "failed" (not "taken") for the subscriber, nothing held at the city. Broken
    once by not checking the answer's shape: the booking read the missing day list as "no slot" and
    ended as taken while the page showed the old no-slots callout; with the page showing only its
    error callout (as the city's does), it ended after the step timeout without naming the field."""
    start = fs_appointment(replica, month_day(1, 20), 9)
    replica.faults(renamed_fields={"availableDays": "days"})
    person = add_person(db, 12004, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])

    report = await book(deps, person, slot_id)

    assert report.outcome == "failed"
    error = _error(db)
    assert (error["kind"], error["code"]) == ("site", "LayoutChanged")
    assert "availableDays" in error["reason"]
    assert [event for _, event in booking_events(db)] == ["failed"]
    assert replica.processes() == []


def _operator_alerts(db: Database) -> list[str]:
    with db.read() as session:
        rows = session.scalars(select(Notification).where(Notification.kind == NotificationKind.OPERATOR))
        return [str((row.payload or {}).get("reason")) for row in rows]


async def test_a_slot_missing_from_its_months_answer_is_taken(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: MTA saw a slot on the 20th of the month after next; someone takes it at the city
    before the booking (its units are removed). Asserted: the site's own answer for that month no
    longer lists the day, so the booking ends as taken (code notInCalendar) and the subscriber hears
    "taken"; nothing is held. Broken once by calling every disabled tile a layout change: failed."""
    fs_appointment(replica, month_day(2, 10), 9)
    start = fs_appointment(replica, month_day(2, 20), 9)
    person = add_person(db, 12005, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])
    replica.remove_slots(FS_OFFICE, [start, start + UNIT_S])

    report = await book(deps, person, slot_id)

    assert report.outcome == "taken"
    error = _error(db)
    assert (error["kind"], error["code"]) == ("taken", "notInCalendar")
    assert [event for _, event in booking_events(db)] == ["taken"]
    assert replica.processes() == []
