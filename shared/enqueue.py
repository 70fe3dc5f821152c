"""Sending work to the worker by actor name, so a sender (the bot) needs none of the worker's code.

A Dramatiq message is data: queue, actor name, arguments. ``send_by_name`` builds one with
Dramatiq's public ``Message`` and enqueues it through a broker the caller owns; the worker's actor
of that name (``shared.contracts``) runs it. ``sender_broker`` is such a broker for a process that
only sends: MTA's namespace, no middleware (the worker's middleware acts when a message is
processed, and Dramatiq's enqueue hooks add nothing MTA's actors read). Building it connects to
nothing.

``request_booking`` is the one way a booking is asked for, by a person's tap in the bot or by the
worker's autobook: a Redis marker per (user, slot) makes a second request a no-op while the first
is queued or running (``shared.contracts.booking_marker_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from shared.contracts import (
    BOOK_SLOT_ACTOR,
    BOOKING_MARKER_TTL_S,
    BOOKINGS_QUEUE,
    CANCEL_BOOKING_ACTOR,
    NAMESPACE,
    booking_marker_key,
)
from shared.domain import utcnow


def sender_broker(client: redis.Redis) -> RedisBroker:
    """A broker that only sends, on ``client``; its owner closes ``client``."""
    return RedisBroker(client=client, namespace=NAMESPACE, middleware=[])


def send_by_name(
    broker: dramatiq.Broker,
    queue_name: str,
    actor_name: str,
    args: Sequence[Any] = (),
    *,
    delay_ms: int | None = None,
) -> dramatiq.Message[Any]:
    """Enqueue ``actor_name(*args)`` on ``queue_name``; returns the message as enqueued."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=tuple(args), kwargs={}, options={}
    )
    return broker.enqueue(message, delay=delay_ms)


def request_booking(
    client: redis.Redis,
    broker: dramatiq.Broker,
    user_id: int,
    slot_id: int,
    subscription_id: int | None = None,
    *,
    manual: bool = False,
    now: datetime | None = None,
) -> bool:
    """Queue a ``book_slot``; False when one for this (user, slot) is already queued or running."""
    if not client.set(booking_marker_key(user_id, slot_id), b"1", nx=True, ex=BOOKING_MARKER_TTL_S):
        return False
    requested_at = (now or utcnow()).isoformat()
    send_by_name(
        broker, BOOKINGS_QUEUE, BOOK_SLOT_ACTOR, (user_id, slot_id, subscription_id, requested_at, manual)
    )
    return True


def request_cancel(broker: dramatiq.Broker, booking_id: int, user_id: int) -> None:
    """Queue the city cancellation of a booking its user no longer wants."""
    send_by_name(broker, BOOKINGS_QUEUE, CANCEL_BOOKING_ACTOR, (booking_id, user_id))


__all__ = ["request_booking", "request_cancel", "send_by_name", "sender_broker"]
