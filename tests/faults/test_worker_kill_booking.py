"""A worker process killed with SIGKILL in the middle of a booking.

A real ``mta worker`` consumes the ``bookings`` queue with the human pacer slowed down (typing
delays of 120-160 ms per key), so the contact form takes seconds to fill. It is killed after the
city reserved the slot, while it types; a fresh worker started afterwards gets the same message
once the dead one's heartbeat is ``MTA_WORKER_HEARTBEAT_TIMEOUT_MS`` old.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import dramatiq
import pytest

from shared.db.models import BookingStatus
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, UNIT_S, add_person, bookings, observe
from tests.support.farm import Farm, wait_until
from tests.support.replica import Replica, berlin_slot
from worker.broker import BOOKINGS_QUEUE, make_broker

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SLOW_HUMAN = {
    "MTA_PACER": "human",
    "MTA_THINK_TIME_MIN_MS": "1",
    "MTA_THINK_TIME_MAX_MS": "5",
    "MTA_TYPING_DELAY_MIN_MS": "120",
    "MTA_TYPING_DELAY_MAX_MS": "160",
    "MTA_BOOKING_BUDGET_PER_MINUTE": "600",
}


def test_booking_of_a_killed_worker_is_resumed_with_one_hold(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: SIGKILL of the worker process that is typing the contact form of a booking (the
    city already holds the slot for it). Asserted: the message is delivered again to a worker
    started afterwards, which resumes the recorded hold (``worker.bookings``: never a second
    walk): exactly one booking row, preconfirmed; exactly one process at the city, the same one,
    preconfirmed; one activation mail; the bookings queue and its dead-letter queue end empty."""
    farm = make_farm(**SLOW_HUMAN)
    start = berlin_slot(days_ahead=3, hour=11)
    replica.add_slots(FS_OFFICE, [start, start + UNIT_S])
    person = add_person(farm.db, 9001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(farm.db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])

    first = farm.start_worker(queues=BOOKINGS_QUEUE)
    (beat,) = farm.workers()
    broker = make_broker(farm.settings, with_browser=False)
    broker.enqueue(
        dramatiq.Message(
            queue_name=BOOKINGS_QUEUE,
            actor_name="book_slot",
            args=(person.user_id, slot_id, person.subscription_id, datetime.now(UTC).isoformat(), False),
            kwargs={},
            options={},
        )
    )
    wait_until(
        lambda: (rows := bookings(farm.db)) and rows[0].process_id, 90, "the city's hold to be recorded"
    )
    (held,) = replica.processes()
    assert held["status"] == "reserved"
    os.kill(int(beat["pid"]), signal.SIGKILL)
    assert bookings(farm.db)[0].status is BookingStatus.RESERVED, "killed before the preconfirm"
    first.stop()

    second = farm.start_worker(queues=BOOKINGS_QUEUE)
    wait_until(
        lambda: bookings(farm.db)[0].status is BookingStatus.PRECONFIRMED,
        90,
        "the redelivered booking to be finished",
    )
    wait_until(lambda: farm.redis.hlen(f"mta:{BOOKINGS_QUEUE}.msgs") == 0, 30, "the message to be acked")
    (row,) = bookings(farm.db)
    (process,) = replica.processes()
    assert str(process["processId"]) == row.process_id == str(held["processId"])
    assert process["status"] == "preconfirmed"
    assert len(replica.mail(kind="activation", to=person.email)) == 1
    assert [e["held"] for e in second.events("booking_resumed")] == [True], "resumed, not walked again"
    assert farm.redis.llen(f"mta:{BOOKINGS_QUEUE}") == 0
    assert farm.redis.zcard(f"mta:{BOOKINGS_QUEUE}.XQ") == 0, "nothing went to the dead-letter queue"
