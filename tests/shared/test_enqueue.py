"""Sending work to the worker by actor name (``shared.enqueue``), on Dramatiq's ``StubBroker``.

The bot builds ``book_slot`` and ``cancel_booking`` messages from ``shared.contracts`` alone. Here
they run through a real Dramatiq ``Worker`` on a ``StubBroker`` into actors declared under the
contract's names, and the worker's own actors are checked to carry those names, queues and
parameters: a rename or a changed signature on either side fails here, not as messages that nobody
consumes. Tried: the contract's ``CANCEL_BOOKING_ACTOR`` renamed (the contract test fails)
and the marker's ``nx`` dropped in ``shared/enqueue.py`` (the second request is queued: fails).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from shared.contracts import (
    BOOK_SLOT_ACTOR,
    BOOKINGS_QUEUE,
    CANCEL_BOOKING_ACTOR,
    CHECK_TARGET_ACTOR,
    CHECKS_QUEUE,
    POLL_BOOKING_STATES_ACTOR,
    booking_marker_key,
)
from shared.enqueue import request_booking, request_cancel
from shared.settings import reset_settings_cache

NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def _run_all(broker: StubBroker) -> None:
    """Process everything queued, then stop the worker."""
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.join(BOOKINGS_QUEUE, fail_fast=True)
        worker.join()
    finally:
        worker.stop()


def test_booking_and_cancel_requests_reach_the_actors_of_those_names(client: redis.Redis) -> None:
    """Asserted: a booking request is delivered once with its arguments in the contract's order, a
    second request for the same (user, slot) is refused while the marker lives, and a cancellation
    reaches ``cancel_booking``."""
    broker = StubBroker()
    broker.emit_after("process_boot")
    received: list[tuple[str, tuple[Any, ...]]] = []

    @dramatiq.actor(broker=broker, actor_name=BOOK_SLOT_ACTOR, queue_name=BOOKINGS_QUEUE)
    def book_slot(*args: Any) -> None:
        received.append((BOOK_SLOT_ACTOR, args))

    @dramatiq.actor(broker=broker, actor_name=CANCEL_BOOKING_ACTOR, queue_name=BOOKINGS_QUEUE)
    def cancel_booking(*args: Any) -> None:
        received.append((CANCEL_BOOKING_ACTOR, args))

    assert request_booking(client, broker, 7, 42, 3, manual=True, now=NOW)
    assert not request_booking(client, broker, 7, 42, 3, manual=True, now=NOW)
    request_cancel(broker, 11, 7)
    _run_all(broker)
    assert sorted(received, key=lambda each: each[0]) == [  # worker threads may take them in any order
        (BOOK_SLOT_ACTOR, (7, 42, 3, NOW.isoformat(), True)),
        (CANCEL_BOOKING_ACTOR, (11, 7)),
    ]
    assert client.ttl(booking_marker_key(7, 42)) > 0
    broker.close()


def test_the_workers_actors_answer_to_the_contract_names(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's actors have the contract's names and queues and accept the arguments the senders
    build (the bot's booking and cancel messages, the scheduler's check)."""
    from worker.broker import setup_broker

    monkeypatch.setenv("MTA_REDIS_URL", redis_url)
    reset_settings_cache()
    try:
        setup_broker()  # as an entry point does, before the actor modules declare their actors
        from worker import actors, bookings
    finally:
        reset_settings_cache()
    expected: list[tuple[dramatiq.Actor[Any, Any], str, str, tuple[Any, ...]]] = [
        (bookings.book_slot, BOOK_SLOT_ACTOR, BOOKINGS_QUEUE, (7, 42, 3, NOW.isoformat(), True)),
        (bookings.cancel_booking, CANCEL_BOOKING_ACTOR, BOOKINGS_QUEUE, (11, 7)),
        (bookings.poll_booking_states, POLL_BOOKING_STATES_ACTOR, BOOKINGS_QUEUE, ()),
        (actors.check_target, CHECK_TARGET_ACTOR, CHECKS_QUEUE, (1, "dispatch", [2, 3], "")),
    ]
    for actor, name, queue, args in expected:
        assert (actor.actor_name, actor.queue_name) == (name, queue)
        inspect.signature(actor.fn).bind(*args)
