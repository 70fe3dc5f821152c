"""An earlier date: a person who holds an appointment asks MTA to find and book an earlier one.

A *swap* is a subscription with ``replaces_booking_id`` (the held booking, the *old* one) and
``start_before`` (its start): it watches the same service (the old office, or any office offering
it) for slots strictly before the held appointment, inside the person's other filters. The old
booking is either one MTA booked, or one booked elsewhere that the person entered by process id
and auth key from the city's e-mail (``adopt``: MTA read it at the city and keeps it as a booking of
theirs, encrypted like its own).

Its course, and what the person is told at each step (outbox rows, kind ``booking``, rendered by
the bot in their language from ``payload["event"]``):

1. ``swap_watching``: MTA watches (for an appointment booked elsewhere: after reading it at the city;
   ``swap_lookup_failed`` with a code when it could not).
2. A fitting slot: the ordinary alert, with "Book this"; with autobook MTA books at once. The new
   booking (``bookings.replaces_booking_id`` = the old) is the one extra hold the policy allows
   (``shared.booking.blocking_booking``): holding, reserved, confirmed as any booking.
3. Only when the new booking is *confirmed* (the activation link was followed, read at the city by
   the booking poll) the worker cancels the old one at the city (``worker.swaps``), then
   ``swap_done``: the person has exactly one appointment, the earlier one, at every moment.
   A cancellation that fails (site trouble) is tried again with back-off (``cancel_retry_delay``)
   while the old appointment is more than ``CANCEL_GIVE_UP_BEFORE`` away; when the city refuses,
   when it still fails within that last day, or when the old one is past, MTA gives up and says so
   (``swap_cancel_failed`` with a ``CancelGiveUp`` reason): the person holds two appointments and
   cancels the old one themselves (the city's link, or /bookings). Never silently dropped.
4. If the new booking fails (refused, site trouble) or expires, the old one stays and the person
   hears ``swap_kept``; the swap ends. A slot lost to someone faster ends nothing (no hold was
   made): the watch goes on.

The swap ends (subscription ``done``, and the exception with it) when the old is cancelled, when
the new one fails, or when the old one is no longer held (cancelled by the person, expired).

Every function takes the caller's session (one transaction), flushes, does not commit.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from shared import booking as policy
from shared.crypto import get_cipher
from shared.db.models import (
    Booking,
    BookingProfile,
    BookingStatus,
    NotificationKind,
    Subscription,
    SubscriptionState,
)
from shared.db.outbox import enqueue_notification
from shared.domain import SITE_TIMEZONE, ensure_utc
from shared.logging import get_logger

log = get_logger(__name__)

SETTLE_LOOKBACK = timedelta(days=2)
"""Failed or expired new bookings changed this recently are looked at by ``pending`` (the old one is
kept and the person told within a poll or two). A confirmed new booking whose old one is still held
is looked at however old: its cancellation is retried until it is done or given up."""
CANCEL_RETRY_FIRST = timedelta(minutes=1)
CANCEL_RETRY_MAX = timedelta(hours=1)
CANCEL_GIVE_UP_BEFORE = timedelta(hours=24)
"""A failing cancellation of the old appointment is retried only while it is more than this away:
the person, told then, still has a day to cancel it themselves."""


class SwapEvent(enum.StrEnum):
    """``payload["event"]`` of a swap message."""

    WATCHING = "swap_watching"
    DONE = "swap_done"
    KEPT = "swap_kept"
    LOOKUP_FAILED = "swap_lookup_failed"
    CANCEL_FAILED = "swap_cancel_failed"


SWAP_EVENTS = frozenset(e.value for e in SwapEvent)


class CancelGiveUp(enum.StrEnum):
    """Why the old appointment of a confirmed swap was not cancelled (``payload["reason"]``)."""

    REFUSED = "refused"
    """The city answered that it cannot be cancelled."""
    FAILING = "failing"
    """The site kept failing (or the operator stopped it) until the old one was a day away."""
    PAST = "past"
    """The old appointment's time came before it could be cancelled."""


def cancel_retry_delay(failures: int) -> timedelta:
    """Back-off after the ``failures``-th failed cancellation: 1 min, doubling, at most 1 h."""
    return min(CANCEL_RETRY_MAX, CANCEL_RETRY_FIRST * 2 ** max(0, min(failures - 1, 20)))


def give_up_cancelling(old_start: datetime | None, now: datetime) -> bool:
    """True when a failing cancellation is not tried again (see ``CANCEL_GIVE_UP_BEFORE``)."""
    return old_start is None or ensure_utc(old_start) - now <= CANCEL_GIVE_UP_BEFORE


class LookupCode(enum.StrEnum):
    """Why an appointment entered by process id and auth key could not be taken on."""

    NOT_FOUND = "not_found"
    """The city knows no such appointment (wrong number, cancelled, or long past)."""
    KEY_MISMATCH = "key_mismatch"
    """The number exists, the auth key does not belong to it."""
    NOT_BOOKED = "not_booked"
    """Only reserved, not confirmed or waiting for activation."""
    PAST = "past"
    KNOWN = "known"
    """MTA keeps it already (booked by MTA, or entered before)."""
    NO_PROFILE = "no_profile"
    SITE = "site"
    """The city's site could not be read just now."""


class SwapOutcome(enum.StrEnum):
    STARTED = "started"
    ALREADY_WATCHING = "already_watching"
    NOT_HELD = "not_held"
    """Not the person's booking, or nothing the city holds (failed, expired, cancelled)."""
    PAST = "past"


@dataclass(frozen=True)
class SwapStart:
    outcome: SwapOutcome
    subscription_id: int | None = None


# --- sealed credentials ------------------------------------------------------------------------------
def seal_credentials(process_id: str, auth_key: str) -> str:
    """Process id and auth key as one encrypted token, for the message the bot sends the worker
    (Redis holds it only encrypted, like the database)."""
    return get_cipher().encrypt(json.dumps({"p": process_id, "k": auth_key}))


def unseal_credentials(token: str) -> tuple[str, str]:
    data = json.loads(get_cipher().decrypt(token))
    return str(data["p"]), str(data["k"])


# --- starting ----------------------------------------------------------------------------------------
def swappable(session: Session, user_id: int, booking_id: int, now: datetime) -> Booking | None:
    """The user's booking if an earlier date may be looked for: held at the city, still to come."""
    booking = session.get(Booking, booking_id)
    if booking is None or booking.user_id != user_id or booking.status not in policy.SWAPPABLE:
        return None
    if booking.start_at is None or ensure_utc(booking.start_at) <= now:
        return None
    return booking


def watching(session: Session, booking_id: int) -> Subscription | None:
    """The active swap subscription of a held booking, if any."""
    return session.scalars(
        select(Subscription)
        .where(
            Subscription.replaces_booking_id == booking_id,
            Subscription.state == SubscriptionState.ACTIVE,
        )
        .limit(1)
    ).first()


def start_swap(
    session: Session,
    *,
    user_id: int,
    booking_id: int,
    any_office: bool,
    autobook: bool,
    now: datetime,
    notify: bool = False,
) -> SwapStart:
    """Watch for an earlier date than ``booking_id``: the same service and count, its office (or any
    office offering the service), from today to the held appointment's day, strictly before it; for
    the same person (the booking's profile). ``notify`` queues ``swap_watching`` (the worker's
    adoption; the bot answers in the conversation itself)."""
    booking = session.get(Booking, booking_id)
    if booking is None or booking.user_id != user_id or booking.status not in policy.SWAPPABLE:
        return SwapStart(SwapOutcome.NOT_HELD)
    if booking.start_at is None or ensure_utc(booking.start_at) <= now:
        return SwapStart(SwapOutcome.PAST)
    existing = watching(session, booking_id)
    if existing is not None:
        return SwapStart(SwapOutcome.ALREADY_WATCHING, existing.id)
    start = ensure_utc(booking.start_at)
    subscription = Subscription(
        user_id=user_id,
        site=booking.site,
        service_id=booking.service_id,
        service_count=booking.service_count,
        office_ids=[] if any_office else [booking.office_id],
        date_from=now.astimezone(SITE_TIMEZONE).date(),
        date_to=start.astimezone(SITE_TIMEZONE).date(),
        autobook=autobook,
        profile_id=booking.profile_id,
        replaces_booking_id=booking.id,
        start_before=start,
        state=SubscriptionState.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    session.flush()
    if notify:
        _tell(
            session,
            booking,
            SwapEvent.WATCHING,
            now,
            key=f"swap:{subscription.id}:watching",
            any_office=any_office,
            autobook=autobook,
        )
    log.info("swap_started", booking_id=booking.id, subscription_id=subscription.id, autobook=autobook)
    return SwapStart(SwapOutcome.STARTED, subscription.id)


@dataclass(frozen=True)
class CityAppointment:
    """What the city says about an appointment read by process id and auth key (no personal data)."""

    status: str
    office_id: int
    service_id: int
    service_count: int
    start_at: datetime


def adopt(
    session: Session,
    *,
    user_id: int,
    profile_id: int | None,
    process_id: str,
    auth_key: str,
    appointment: CityAppointment,
    site: str,
    now: datetime,
) -> Booking | LookupCode:
    """Keep an appointment booked elsewhere as a booking of the person (credentials encrypted), so
    that an earlier date can replace it; or why not."""
    profile = session.get(BookingProfile, profile_id) if profile_id is not None else None
    if profile is None or profile.user_id != user_id:
        profile = policy.profile_for(session, user_id, None)
    if profile is None:
        return LookupCode.NO_PROFILE
    if appointment.status not in ("confirmed", "preconfirmed"):
        return LookupCode.NOT_BOOKED
    if ensure_utc(appointment.start_at) <= now:
        return LookupCode.PAST
    for row in session.scalars(
        select(Booking).where(
            Booking.user_id == user_id, Booking.site == site, Booking.status.in_(policy.SWAPPABLE)
        )
    ):
        if row.process_id == process_id:  # encrypted with a random IV: compared decrypted
            return LookupCode.KNOWN
    booking = Booking(
        user_id=user_id,
        profile_id=profile.id,
        site=site,
        service_id=appointment.service_id,
        service_count=max(1, appointment.service_count),
        office_id=appointment.office_id,
        start_at=ensure_utc(appointment.start_at),
        status=BookingStatus.CONFIRMED if appointment.status == "confirmed" else BookingStatus.PRECONFIRMED,
        process_id=process_id,
        auth_key=auth_key,
        created_at=now,
        updated_at=now,
    )
    session.add(booking)
    session.flush()
    log.info("swap_adopted", booking_id=booking.id)
    return booking


def tell_lookup_failed(session: Session, user_id: int, code: LookupCode, site: str, now: datetime) -> bool:
    """The entered appointment could not be taken on: say why (once per request time)."""
    return enqueue_notification(
        session,
        kind=NotificationKind.BOOKING,
        user_id=user_id,
        chat_id=user_id,
        payload={"event": SwapEvent.LOOKUP_FAILED.value, "code": code.value, "site": site},
        next_attempt_at=now,
        dedup_key=f"swap:lookup:{user_id}:{now:%Y%m%dT%H%M%S%f}",
    )


# --- settling ------------------------------------------------------------------------------------------
class Step(enum.StrEnum):
    REPLACE = "replace"
    """The new booking is confirmed and the old still held: cancel the old at the city."""


@dataclass(frozen=True)
class Pending:
    step: Step
    new_id: int
    old_id: int


def pending(session: Session, now: datetime) -> list[Pending]:
    """Settle what needs no city request (a failed or expired new booking → the old is kept; an old
    booking no longer held → the watch ends), and return the replacements that need one."""
    old_row = aliased(Booking)
    todo = [
        Pending(Step.REPLACE, new_id, old_id)
        for new_id, old_id in session.execute(
            select(Booking.id, old_row.id)
            .join(old_row, Booking.replaces_booking_id == old_row.id)
            .where(Booking.status == BookingStatus.CONFIRMED, old_row.status.in_(policy.SWAPPABLE))
            .order_by(Booking.id)
        )
    ]
    for new in session.scalars(
        select(Booking)
        .where(
            Booking.replaces_booking_id.is_not(None),
            Booking.status.in_((BookingStatus.FAILED, BookingStatus.EXPIRED)),
            Booking.updated_at >= now - SETTLE_LOOKBACK,
        )
        .order_by(Booking.id)
    ):
        old = session.get(Booking, new.replaces_booking_id)
        if old is None:
            continue
        error = policy.BookingError.from_text(new.error)
        if error is not None and error.kind == policy.FailureKind.TAKEN:
            continue  # no hold was made: the watch goes on
        if old.status in policy.SWAPPABLE:
            told = _tell(
                session,
                old,
                SwapEvent.KEPT,
                now,
                key=f"swap:{new.id}:kept",
                new_start=ensure_utc(new.start_at).isoformat() if new.start_at else None,
                new_status=new.status.value,
            )
            if told:
                _end(session, old.id, now)
                log.info("swap_kept", new_id=new.id, old_id=old.id, new_status=new.status.value)
    for subscription in session.scalars(
        select(Subscription).where(
            Subscription.replaces_booking_id.is_not(None),
            Subscription.state == SubscriptionState.ACTIVE,
        )
    ):
        old = session.get(Booking, subscription.replaces_booking_id)
        if old is None or old.status not in policy.SWAPPABLE:
            subscription.state = SubscriptionState.DONE
            subscription.updated_at = now
    session.flush()
    return todo


def replaced(session: Session, item: Pending, now: datetime) -> None:
    """The city cancelled the old booking: record it, end the swap, tell the person."""
    old = session.get(Booking, item.old_id)
    new = session.get(Booking, item.new_id)
    assert old is not None and new is not None
    old_start = ensure_utc(old.start_at).isoformat() if old.start_at else None
    old_office = old.office_id
    policy.record_cancelled(session, old.id, notify=False, now=now)
    _end(session, old.id, now)
    _tell(
        session,
        new,
        SwapEvent.DONE,
        now,
        key=f"swap:{new.id}:done",
        old_start=old_start,
        old_office_id=old_office,
    )
    log.info("swap_done", new_id=new.id, old_id=old.id)


def cancel_refused(
    session: Session,
    item: Pending,
    code: str | None,
    now: datetime,
    reason: CancelGiveUp = CancelGiveUp.REFUSED,
) -> None:
    """The old booking is not cancelled (``reason``): the person has two appointments now and must
    cancel the old one themselves; the swap ends."""
    old = session.get(Booking, item.old_id)
    new = session.get(Booking, item.new_id)
    assert old is not None and new is not None
    _end(session, old.id, now)
    # the old one is left as it is at the city: stop treating the new one as its replacement
    new.replaces_booking_id = None
    _tell(
        session,
        old,
        SwapEvent.CANCEL_FAILED,
        now,
        key=f"swap:{new.id}:cancel_failed",
        code=code,
        reason=reason.value,
        new_start=ensure_utc(new.start_at).isoformat() if new.start_at else None,
    )
    session.flush()


def _end(session: Session, old_id: int, now: datetime) -> None:
    for subscription in session.scalars(
        select(Subscription).where(
            Subscription.replaces_booking_id == old_id, Subscription.state != SubscriptionState.DONE
        )
    ):
        subscription.state = SubscriptionState.DONE
        subscription.updated_at = now


def _tell(
    session: Session, booking: Booking, event: SwapEvent, now: datetime, *, key: str, **extra: Any
) -> bool:
    payload = {
        "event": event.value,
        "booking_id": booking.id,
        "site": booking.site,
        "office_id": booking.office_id,
        "service_id": booking.service_id,
        "service_count": booking.service_count,
        "start": ensure_utc(booking.start_at).isoformat() if booking.start_at else None,
    }
    payload.update({k: v for k, v in extra.items() if v is not None})
    return enqueue_notification(
        session,
        kind=NotificationKind.BOOKING,
        user_id=booking.user_id,
        chat_id=booking.user_id,
        booking_id=booking.id,
        payload=payload,
        next_attempt_at=now,
        dedup_key=key,
    )


__all__ = [
    "CANCEL_GIVE_UP_BEFORE",
    "SWAP_EVENTS",
    "CancelGiveUp",
    "CityAppointment",
    "LookupCode",
    "Pending",
    "Step",
    "SwapEvent",
    "SwapOutcome",
    "SwapStart",
    "adopt",
    "cancel_refused",
    "cancel_retry_delay",
    "give_up_cancelling",
    "pending",
    "replaced",
    "seal_credentials",
    "start_swap",
    "swappable",
    "tell_lookup_failed",
    "unseal_credentials",
    "watching",
]
