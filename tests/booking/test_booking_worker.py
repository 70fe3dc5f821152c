"""The booking actors in a real Dramatiq worker (Redis broker, 3 threads, one browser pool).

A slot appears, a check records it (alerts into the outbox), ``dispatch_autobook`` queues
``book_slot`` messages, the worker books in Chromium against the replica, and the periodic
``poll_booking_states`` reads the appointment's state through the site's manage link.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from shared.db.database import Database
from shared.db.models import (
    ACTIVE_BOOKING_STATUSES,
    BookingStatus,
    Notification,
    NotificationKind,
    Subscription,
    SubscriptionState,
)
from tests.booking.conftest import (
    FS_OFFICE,
    FS_SERVICE,
    ORLEANSPLATZ,
    UNIT_S,
    WOHNSITZANMELDUNG,
    RunningWorker,
    add_person,
    booking_events,
    bookings,
    observe,
    wait_until,
)
from tests.support.replica import Replica, berlin_slot

pytestmark = [pytest.mark.browser]


def test_autobook_subscription_ends_preconfirmed_then_confirmed(
    dramatiq_worker: RunningWorker, db: Database, replica: Replica
) -> None:
    """Bürgerbüro Orleansplatz (captcha on): the slot alert is queued before the booking starts; the
    booking ends preconfirmed with the activation mail in the replica's mailbox and the autobook
    subscription done; after the citizen opens the activation link, the poll marks it confirmed."""
    from worker.bookings import dispatch_autobook, poll_booking_states

    start = berlin_slot(days_ahead=2, hour=10)
    replica.add_slots(ORLEANSPLATZ, [start])
    person = add_person(db, 7001, service_id=WOHNSITZANMELDUNG, office_id=ORLEANSPLATZ)
    slot_ids = observe(db, office_id=ORLEANSPLATZ, service_id=WOHNSITZANMELDUNG, starts=[start])
    with db.transaction() as session:
        alerts = session.query(Notification).filter_by(kind=NotificationKind.SLOT).all()
        assert [(a.user_id, a.payload["autobook"]) for a in alerts] == [(person.user_id, True)]

    assert dispatch_autobook(db, slot_ids) == 1
    assert dispatch_autobook(db, slot_ids) == 0  # already queued: not twice
    wait_until(lambda: [b.status for b in bookings(db)] == [BookingStatus.PRECONFIRMED], what="preconfirmed")

    (row,) = bookings(db)
    (mail,) = replica.mail(kind="activation", to=person.email)
    assert str(mail["processId"]) == row.process_id
    assert "innerhalb von 30 Minuten" in mail["body"]
    assert [e for _, e in booking_events(db)] == ["holding", "reserved"]
    reserved = next(n for n in _booking_notifications(db) if n.payload["event"] == "reserved")
    assert reserved.payload["activation_minutes"] == 30 and reserved.text is None
    with db.transaction() as session:
        subscription = session.get(Subscription, person.subscription_id)
        assert subscription is not None and subscription.state is SubscriptionState.DONE
        assert alerts[0].created_at <= row.created_at  # the alert was queued before the attempt

    # the citizen taps "Termin aktivieren" in the e-mail (the page's own confirm request)
    link = replica.activation_link(to=person.email)
    ref = json.loads(base64.b64decode(link.split("#/appointment/confirm/", 1)[1]))
    confirmed = httpx.post(
        replica.api_url + "/confirm-appointment/",
        json={"processId": ref["id"], "authKey": ref["authKey"]},
        timeout=10,
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"

    poll_booking_states.send()
    wait_until(lambda: bookings(db)[0].status is BookingStatus.CONFIRMED, what="confirmed")
    assert [e for _, e in booking_events(db)] == ["holding", "reserved", "confirmed"]


def test_many_autobook_users_few_slots(
    dramatiq_worker: RunningWorker, db: Database, replica: Replica
) -> None:
    """The issue's case: 50 autobook users, 10 Führerscheinstelle slots, 4 worker threads. Asserts:
    at most one booking per user and per slot at MTA and at the city, exactly 10 preconfirmed, every
    other user told "taken" once."""
    from worker.bookings import dispatch_autobook

    starts = [berlin_slot(days_ahead=4 + d, hour=h) for d in (0, 1) for h in (9, 10, 11, 12, 13)]
    for start in starts:
        replica.add_slots(FS_OFFICE, [start, start + UNIT_S])
    people = [add_person(db, 8000 + i, service_id=FS_SERVICE, office_id=FS_OFFICE) for i in range(50)]
    slot_ids = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=starts)

    assert dispatch_autobook(db, slot_ids) == 50

    def settled() -> bool:
        rows = bookings(db)
        finished = {b.user_id for b in rows if b.status is BookingStatus.PRECONFIRMED}
        finished |= {p["user"] for p in _events(db, "taken")}
        active = [b for b in rows if b.status in (BookingStatus.HOLDING, BookingStatus.RESERVED)]
        return len(finished) == len(people) and not active

    wait_until(settled, timeout_s=300, what="all 50 requests settled")

    rows = bookings(db)
    won = [b for b in rows if b.status is BookingStatus.PRECONFIRMED]
    assert len(won) == 10
    assert len({b.user_id for b in won}) == 10
    assert sorted(int(b.start_at.timestamp()) for b in won if b.start_at) == sorted(starts)
    per_user = Counter(b.user_id for b in rows if b.status in ACTIVE_BOOKING_STATUSES)
    assert max(per_user.values()) == 1
    taken = Counter(p["user"] for p in _events(db, "taken"))
    assert set(taken) == {p.user_id for p in people} - {b.user_id for b in won}
    assert set(taken.values()) == {1}
    held = [p for p in replica.processes() if p["status"] in ("reserved", "preconfirmed")]
    assert sorted(p["timestamp"] for p in held) == sorted(starts)
    assert len(replica.mail(kind="activation")) == 10


def _booking_notifications(db: Database) -> list[Notification]:
    with db.transaction() as session:
        rows = session.query(Notification).filter(Notification.booking_id.is_not(None)).all()
        for row in rows:
            session.expunge(row)
        return rows


def _events(db: Database, event: str) -> list[dict[str, Any]]:
    return [
        {"user": n.user_id, **n.payload}
        for n in _booking_notifications(db)
        if n.payload.get("event") == event
    ]
