"""An earlier date through the real Dramatiq worker: the message the bot queues for an appointment
booked elsewhere (``bot.handlers.swap.send_adopt``: by actor name, credentials encrypted) is taken
off Redis by a worker with its own runtime (``dramatiq_worker``), decrypted by the
``adopt_appointment`` actor and read at the replica in Chromium; the booking and the watch land in
the database and the person is told. (``test_swap_walk.py`` calls ``worker.swaps.adopt`` directly.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis

from shared.db.database import Database
from shared.db.models import BookingStatus, Notification, Subscription, SubscriptionState
from shared.settings import Settings
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, RunningWorker, add_person, bookings, wait_until
from tests.booking.test_swap_walk import booked_elsewhere, fs_slot
from tests.support.replica import Replica

pytestmark = [pytest.mark.browser]


def _watching(db: Database, user_id: int) -> list[Subscription]:
    with db.transaction() as session:
        rows = (
            session.query(Subscription)
            .filter(Subscription.user_id == user_id, Subscription.replaces_booking_id.is_not(None))
            .all()
        )
        for row in rows:
            session.expunge(row)
        return rows


def test_the_bots_adopt_message_is_decrypted_and_read_at_the_city_by_the_worker(
    dramatiq_worker: RunningWorker, db: Database, replica: Replica, booking_settings: Settings
) -> None:
    """The bot's ``send_adopt`` (the same call its /earlier conversation makes) queues the message
    with the process number nowhere in clear; the worker's actor decrypts it, reads the
    appointment at the replica and keeps it as the person's confirmed booking with a swap
    subscription at that office, and queues "watching". Tried: the actor not declared on the
    worker's broker (Dramatiq dropped the message as an unknown actor: the wait timed out), and
    ``adopt`` taking the sealed token itself for the process number (nothing kept: the wait
    timed out)."""
    from bot.handlers.swap import send_adopt

    old_start = fs_slot(replica, days_ahead=10, hour=11)
    process, key = booked_elsewhere(replica, old_start)
    person = add_person(db, 6501, service_id=FS_SERVICE, office_id=FS_OFFICE)

    client = redis.Redis.from_url(booking_settings.redis_url)
    try:
        send_adopt(booking_settings.redis_url, person.user_id, None, process, key, False, False)
        # the message stays in the queue's hash until the actor is done with it (a read in Chromium)
        (queued,) = [json.loads(m) for m in client.hvals("mta:bookings.msgs")]
    finally:
        client.close()
    assert queued["actor_name"] == "adopt_appointment" and process not in json.dumps(queued)

    wait_until(lambda: len(_watching(db, person.user_id)) == 1, timeout_s=30, what="the swap watch")
    (held,) = bookings(db)
    assert (held.user_id, held.status, held.service_id, held.office_id) == (
        person.user_id,
        BookingStatus.CONFIRMED,
        FS_SERVICE,
        FS_OFFICE,
    )
    assert held.start_at == datetime.fromtimestamp(old_start, UTC) and held.process_id == process
    (watch,) = _watching(db, person.user_id)
    assert watch.replaces_booking_id == held.id and watch.state is SubscriptionState.ACTIVE
    assert (watch.office_ids, watch.autobook, watch.start_before) == ([FS_OFFICE], False, held.start_at)
    with db.transaction() as session:
        told = [
            n.payload.get("event")
            for n in session.query(Notification).filter(Notification.user_id == person.user_id)
        ]
    assert "swap_watching" in told and "swap_lookup_failed" not in told
