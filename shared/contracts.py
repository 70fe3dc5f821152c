"""What the roles agree on without importing each other: queue and actor names, the wake channel,
and the Redis keys one role writes and another reads.

The worker writes budgets, heartbeats, the scheduler's marks and booking markers; the status
service (``api``) and ``mta health`` read them; the bot sends booking messages by actor name
(``shared.enqueue``) and listens on the wake channel. A key that changes here changes for all of
them at once; nothing here knows how a role uses it.
"""

from __future__ import annotations

# --- Dramatiq ---------------------------------------------------------------------------------------
NAMESPACE = "mta"
"""Dramatiq's keys: ``mta:<queue>`` (message ids), ``mta:<queue>.msgs``, ``mta:__heartbeats__``
(consumer id -> last poll, ms), ``mta:__acks__.<broker id>.<queue>`` (messages a worker holds)."""
CHECKS_QUEUE = "checks"
BOOKINGS_QUEUE = "bookings"
QUEUES = (CHECKS_QUEUE, BOOKINGS_QUEUE)

CHECK_TARGET_ACTOR = "check_target"
"""``(target_id, dispatch_id, riders, days)`` on ``CHECKS_QUEUE``."""
BOOK_SLOT_ACTOR = "book_slot"
"""``(user_id, slot_id, subscription_id, requested_at ISO, manual)`` on ``BOOKINGS_QUEUE``."""
CANCEL_BOOKING_ACTOR = "cancel_booking"
"""``(booking_id, user_id)`` on ``BOOKINGS_QUEUE``."""
POLL_BOOKING_STATES_ACTOR = "poll_booking_states"
"""``()`` on ``BOOKINGS_QUEUE``."""
ADOPT_APPOINTMENT_ACTOR = "adopt_appointment"
"""``(user_id, profile_id, sealed credentials, any_office, autobook)`` on ``BOOKINGS_QUEUE``: an
appointment booked elsewhere, for an earlier date (``shared.swaps``)."""

# --- the bot's wake-up ------------------------------------------------------------------------------
WAKE_CHANNEL = "mta:outbox:wake"
"""Pub/sub channel the bot listens on; any message (a target id, ``booking:<id>``) means "the outbox
has new rows"."""

# --- heartbeats -------------------------------------------------------------------------------------
HEARTBEAT_PREFIX = "mta:heartbeat:"
"""``mta:heartbeat:<role>:<identity>`` (workers, schedulers: JSON with ``at`` in unix seconds, with a
TTL) or ``mta:heartbeat:<role>`` (the bot)."""
LEADER_KEY = "mta:scheduler:leader"
"""The scheduler leader's identity, held under a Redis lock with a TTL."""


def heartbeat_key(role: str, identity: str | None = None) -> str:
    return f"{HEARTBEAT_PREFIX}{role}" + (f":{identity}" if identity is not None else "")


def heartbeat_index_key(role: str) -> str:
    """The sorted set of ``role``'s identities scored by their last beat (one read finds the live)."""
    return f"{HEARTBEAT_PREFIX}{role}s"


BOT_HEARTBEAT_KEY = heartbeat_key("bot")

# --- the scheduler ----------------------------------------------------------------------------------
INFLIGHT_PREFIX = "mta:inflight:"
"""``mta:inflight:<target id>``: a check is queued or running, or the target backs off."""
LAST_DISPATCH_KEY = "mta:scheduler:last_dispatch"
"""Hash target id -> unix seconds of its last dispatch."""
SITE_PAUSE_PREFIX = "mta:site_pause:"
"""``mta:site_pause:<site>``: the site answered 429; nothing goes out until the key expires."""
ROUND_COST_KEY = "mta:scheduler:round_cost"
"""Hash ``site:service:count`` -> site requests of the group's last warm round."""

# --- the site's request budget ----------------------------------------------------------------------
BUDGET_KEY_PREFIX = "mta:budget:"
"""``mta:budget:<site>:<egress>`` is the window's name; its one-second buckets are
``<name>@<unix second>``, the streak counter ``<name>:streak``, the site's announced limit
``<name>:announced_limit``."""
BUDGET_WINDOW_S = 60


def budget_key(site: str, egress: str = "default") -> str:
    return f"{BUDGET_KEY_PREFIX}{site}:{egress}"


def streak_pause_after(before_pause: int, announced_limit: int | None) -> int:
    """Requests in a streak before MTA pauses: the setting, or fewer when the site announced a limit
    the setting would come too close to (a sixth of it, at least two, is kept back: a booking walk
    needs a few while checks pause). 0: no pause. The budget spends by it, the status service shows
    it."""
    if before_pause <= 0 or announced_limit is None:
        return max(0, before_pause)
    return max(1, min(before_pause, announced_limit - max(2, announced_limit // 6)))


# --- bookings ---------------------------------------------------------------------------------------
BOOKING_KEY_PREFIX = "mta:booking:"
BOOKING_MARKER_TTL_S = 900
"""A queued (user, slot) booking request blocks a second one this long, or until it was tried."""


def booking_marker_key(user_id: int, slot_id: int) -> str:
    """Set while a ``book_slot`` for (user, slot) is queued or running."""
    return f"{BOOKING_KEY_PREFIX}queued:{user_id}:{slot_id}"


def booking_marker_pattern(user_id: int) -> str:
    """Every booking marker of one user (for ``SCAN MATCH``)."""
    return f"{BOOKING_KEY_PREFIX}queued:{user_id}:*"


__all__ = [
    "ADOPT_APPOINTMENT_ACTOR",
    "BOOKINGS_QUEUE",
    "BOOKING_KEY_PREFIX",
    "BOOKING_MARKER_TTL_S",
    "BOOK_SLOT_ACTOR",
    "BOT_HEARTBEAT_KEY",
    "BUDGET_KEY_PREFIX",
    "BUDGET_WINDOW_S",
    "CANCEL_BOOKING_ACTOR",
    "CHECKS_QUEUE",
    "CHECK_TARGET_ACTOR",
    "HEARTBEAT_PREFIX",
    "INFLIGHT_PREFIX",
    "LAST_DISPATCH_KEY",
    "LEADER_KEY",
    "NAMESPACE",
    "POLL_BOOKING_STATES_ACTOR",
    "QUEUES",
    "ROUND_COST_KEY",
    "SITE_PAUSE_PREFIX",
    "WAKE_CHANNEL",
    "booking_marker_key",
    "booking_marker_pattern",
    "budget_key",
    "heartbeat_index_key",
    "heartbeat_key",
    "streak_pause_after",
]
