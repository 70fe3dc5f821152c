"""Booking policy and state: which bookings may start, how a booking row moves, what the user is told.

A ``Booking`` row follows the city's states (ARCHITECTURE §5, spec §2.5-§2.9)::

    holding ──> reserved ──> preconfirmed ──> confirmed
       │           │              │
       └──> failed └──> expired   └──> expired / cancelled
             (taken, refused, site trouble)

- *holding*: MTA claimed the (profile, service) and is walking the site; no city process yet.
- *reserved*: the city holds the slot (process id + auth key stored encrypted), for the scope's
  ``reservationDuration``; the user is told "holding".
- *preconfirmed*: the city e-mailed the activation link; the deadline is the scope's
  ``activationDuration`` from then; the user is told "reserved — check your e-mail and tap the link
  within N minutes", and reminded before the deadline.
- *confirmed*: the site says the link was used; *expired*: the reservation or the activation ran
  out; *failed*: taken by someone else, refused by the site (which field, why), or site trouble;
  *cancelled*: MTA cancelled it at the city because the user no longer wanted it.

Rules, enforced here and in the database:
- a booking is for one person: a booking profile of the user (themself, a partner, a child). The
  subscription names it; without one, the user's oldest profile (``profile_for``) — the one every
  profile from before family profiles became;
- never more than one active (holding/reserved/preconfirmed) booking per person (profile) and
  service: the partial unique index ``uq_bookings_one_active_per_profile_service``; the claim is an
  ``INSERT ... ON CONFLICT DO NOTHING``, so two racing workers cannot both get one. The one
  exception is an earlier date (``shared.swaps``): its new hold may sit beside the booking it
  replaces (``replaces_booking_id``; a second partial unique index allows one such hold per person
  and service, never two), until the swap ends;
- the city's cap per e-mail address (``appointmentsPerMail``, 3 at the Bürgerbüros, spec §2.6):
  MTA holds at most ``MAIL_CAP`` appointments to come for one address, counted over every profile
  that uses it (family members often share one), so the city never answers
  ``tooManyAppointmentsWithSameMail`` to a walk MTA could have spared. The catalogue does not say
  which offices share a scope, so the count spans the whole site (never more than the city allows);
- one booking per request: a redelivered ``book_slot`` finds the row its first delivery created
  (``created_at`` is the request's time) and resumes or stops, never starts a second hold;
- a profile the site refused is not used again until it changes (nothing retried blindly);
- stored details are used only after the user agreed to MTA keeping them (``users.consented_at``;
  details from before consent was asked wait for it);
- an autobook refused for the e-mail cap or missing consent is told to the subscriber once per
  subscription episode (``tell_subscriber``), with what they can do;
- an autobook subscription that gets its booking (preconfirmed) stops watching (state ``done``).

Notifications go to the outbox (kind ``booking``; ``reminder`` for reminders) with ``text`` NULL, so
the bot renders them in the user's language from ``payload`` (see ``BookingEvent`` and
``notification_payload``); ``dedup_key`` ``booking:<id>:<event>`` makes every write idempotent.

All functions take the caller's session (one transaction), flush but do not commit.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.database import Database
from shared.db.models import (
    ACTIVE_BOOKING_STATUSES,
    Booking,
    BookingProfile,
    BookingStatus,
    NotificationKind,
    Slot,
    Subscription,
    SubscriptionState,
    User,
)
from shared.db.outbox import enqueue_notification, insert_ignoring_duplicates
from shared.domain import SITE_TIMEZONE, ensure_utc, utcnow
from shared.logging import get_logger
from shared.recording import subscription_matches

log = get_logger(__name__)

REMINDERS_BEFORE: tuple[timedelta, ...] = (timedelta(minutes=10), timedelta(minutes=3))
"""Reminders go out when this much of the activation window is left (each once)."""
STALE_HOLDING = timedelta(minutes=10)
"""A holding row this old without a city process was left by a worker that died before the
city answered; it is closed as failed (interrupted)."""
EXPIRY_GRACE = timedelta(minutes=10)
"""While the site still shows a booking as preconfirmed, it is expired locally only this long after
our own deadline (the city's clock decides; ours is a fallback)."""
MAX_FALLBACK_ATTEMPTS = 3
"""Slots tried per request after the first one was taken (when the user allowed fallback)."""
MAIL_CAP = 3
"""Appointments to come that MTA holds at the city for one e-mail address (the Bürgerbüros'
``appointmentsPerMail``, the smallest cap the catalogue's offices have)."""
HELD_AT_CITY = (
    BookingStatus.HOLDING,
    BookingStatus.RESERVED,
    BookingStatus.PRECONFIRMED,
    BookingStatus.CONFIRMED,
)
"""Statuses that count against the e-mail cap (holding: a walk is about to use the address)."""


class BookingEvent(enum.StrEnum):
    """What a booking notification tells the user (``payload["event"]``)."""

    HOLDING = "holding"
    """The city holds the slot for the user; MTA is filling in the form."""
    RESERVED = "reserved"
    """Preconfirmed: check your e-mail and tap the activation link within N minutes."""
    REMINDER = "reminder"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    FAILED = "failed"
    """Refused by the site (``field``, ``reason``) or site trouble (``reason``)."""
    TAKEN = "taken"
    CANCELLED = "cancelled"


class FailureKind(enum.StrEnum):
    TAKEN = "taken"
    PROFILE = "profile"
    SITE = "site"
    INTERRUPTED = "interrupted"
    NO_PROFILE = "no_profile"


@dataclass(frozen=True)
class BookingError:
    """Why a booking failed or expired, stored as JSON in ``Booking.error`` (no personal data)."""

    kind: str
    code: str
    reason: str = ""
    field: str | None = None

    def to_text(self) -> str:
        return json.dumps(
            {"kind": self.kind, "code": self.code, "field": self.field, "reason": self.reason[:500]},
            ensure_ascii=False,
        )

    @classmethod
    def from_text(cls, text: str | None) -> BookingError | None:
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return BookingError(kind="unknown", code="unknown", reason=text)
        if not isinstance(data, dict):
            return None
        return cls(
            kind=str(data.get("kind", "unknown")),
            code=str(data.get("code", "unknown")),
            reason=str(data.get("reason", "")),
            field=data.get("field"),
        )


# --- starting --------------------------------------------------------------------------------------
class StartOutcome(enum.StrEnum):
    STARTED = "started"
    """A new holding row: walk the site."""
    RESUME_HOLDING = "resume_holding"
    """This request's row exists without a city process (an earlier delivery died mid-walk):
    retry the same slot only (never another one: the dead walk may hold that slot)."""
    RESUME_RESERVED = "resume_reserved"
    """This request's row holds a city process that was not preconfirmed: finish it."""
    DONE = "done"
    """This request was handled already (redelivery after the outcome)."""
    ALREADY_ACTIVE = "already_active"
    """The person (profile) has another active booking for this service."""
    MAIL_CAP = "mail_cap"
    """The profile's e-mail address already holds ``MAIL_CAP`` appointments to come."""
    NO_PROFILE = "no_profile"
    NO_CONSENT = "no_consent"
    """The details were stored before MTA asked for consent (migration 0004) and the user has not
    agreed since: they are not used until they do (``/profile`` asks)."""
    PROFILE_REFUSED = "profile_refused"
    """The site refused this profile before and it has not changed since."""
    NOT_WANTED = "not_wanted"
    """The subscription is gone, paused or done, or the slot does not match it any more."""
    SLOT_UNKNOWN = "slot_unknown"


@dataclass(frozen=True)
class Start:
    outcome: StartOutcome
    booking: Booking | None = None
    told: bool = False
    """A subscriber notice was queued (``tell_subscriber``): the caller wakes the bot."""


class SubscriberNotice(enum.StrEnum):
    """Why a booking the subscriber expects did not start (``payload["reason"]`` of a reminder row
    with ``text`` NULL; the bot renders it in their language)."""

    MAIL_CAP = "mail_cap"
    """Their profile's e-mail address holds ``MAIL_CAP`` appointments to come: another address in
    that person's profile, or a cancellation in /bookings, makes room."""
    CONSENT_NEEDED = "consent_needed"
    """Details stored before consent was asked: /profile asks for it (or erases them)."""


def tell_subscriber(
    session: Session,
    notice: SubscriberNotice,
    *,
    user_id: int,
    slot: Slot,
    subscription: Subscription | None,
    now: datetime,
) -> bool:
    """Queue ``notice`` once per subscription episode, not once per slot: the key carries the
    subscription's last change (created, resumed, edited), so a refusal repeated at every new slot
    is said once, and said again after the person changed the subscription. True when queued."""
    if subscription is not None:
        episode = f"{subscription.id}:{ensure_utc(subscription.updated_at):%Y%m%dT%H%M%S%f}"
    else:  # a request without a subscription: once per slot
        episode = f"u{user_id}:s{slot.id}"
    return enqueue_notification(
        session,
        kind=NotificationKind.REMINDER,
        user_id=user_id,
        chat_id=user_id,
        subscription_id=subscription.id if subscription is not None else None,
        payload={
            "reason": notice.value,
            "site": slot.site,
            "service_id": slot.service_id,
            "subscription_id": subscription.id if subscription is not None else None,
            "cap": MAIL_CAP,
        },
        next_attempt_at=now,
        dedup_key=f"{notice.value}:{episode}",
    )


def profile_for(session: Session, user_id: int, subscription: Subscription | None) -> BookingProfile | None:
    """The person a booking is for: the subscription's profile, else the user's oldest one."""
    if subscription is not None and subscription.profile_id is not None:
        profile = session.get(BookingProfile, subscription.profile_id)
        if profile is not None and profile.user_id == user_id:
            return profile
    return session.scalars(
        select(BookingProfile).where(BookingProfile.user_id == user_id).order_by(BookingProfile.id).limit(1)
    ).first()


def active_booking(session: Session, profile_id: int, service_id: int) -> Booking | None:
    return session.scalars(
        select(Booking).where(
            Booking.profile_id == profile_id,
            Booking.service_id == service_id,
            Booking.status.in_(ACTIVE_BOOKING_STATUSES),
        )
    ).first()


def blocking_booking(
    session: Session, profile_id: int, service_id: int, *, replaces: int | None = None
) -> Booking | None:
    """The active booking that stops another one for this person and service: any, for an ordinary
    request; for a swap (``replaces``: the held booking an earlier date is to replace), any but that
    one, so a swap gets one extra hold and never two (the database's two partial unique indexes)."""
    for booking in session.scalars(
        select(Booking)
        .where(
            Booking.profile_id == profile_id,
            Booking.service_id == service_id,
            Booking.status.in_(ACTIVE_BOOKING_STATUSES),
        )
        .order_by(Booking.id)
    ):
        if replaces is None or booking.id != replaces:
            return booking
    return None


SWAPPABLE = (BookingStatus.RESERVED, BookingStatus.PRECONFIRMED, BookingStatus.CONFIRMED)
"""A booking an earlier date may replace: one the city holds."""


def replaced_booking(
    session: Session, subscription: Subscription | None, profile_id: int, slot: Slot
) -> int | None:
    """For a subscription that looks for an earlier date (``shared.swaps``): the held booking the
    slot would replace, when it is still held for this person and service and the slot starts
    strictly before it; else None."""
    if subscription is None or subscription.replaces_booking_id is None:
        return None
    old = session.get(Booking, subscription.replaces_booking_id)
    if (
        old is None
        or old.status not in SWAPPABLE
        or old.profile_id != profile_id
        or old.service_id != slot.service_id
        or old.start_at is None
        or ensure_utc(slot.start_at) >= ensure_utc(old.start_at)
    ):
        return None
    return old.id


def _mail_key(email: str | None) -> str:
    return (email or "").strip().casefold()


def bookings_for_mail(session: Session, email: str, site: str, now: datetime) -> int:
    """Appointments to come that MTA holds (or is walking for) under ``email`` at ``site``, over
    every profile with that address. E-mails are encrypted with a random IV, so the profiles are
    compared after decryption; only profiles with a booking held at the city are read."""
    wanted = _mail_key(email)
    rows = session.execute(
        select(BookingProfile.email)
        .join(Booking, Booking.profile_id == BookingProfile.id)
        .where(
            Booking.site == site,
            Booking.status.in_(HELD_AT_CITY),
            (Booking.start_at.is_(None)) | (Booking.start_at > now),
        )
    ).all()
    return sum(1 for (address,) in rows if _mail_key(address) == wanted)


def profile_refused(session: Session, user_id: int, profile: BookingProfile) -> BookingError | None:
    """The site's last refusal of this profile, if the profile has not changed since."""
    last = session.scalars(
        select(Booking)
        .where(
            Booking.user_id == user_id,
            Booking.profile_id == profile.id,
            Booking.status == BookingStatus.FAILED,
        )
        .order_by(Booking.updated_at.desc(), Booking.id.desc())
        .limit(20)
    ).all()
    for booking in last:
        error = BookingError.from_text(booking.error)
        if error is None or error.kind != FailureKind.PROFILE:
            continue
        if profile.updated_at is None or profile.updated_at <= booking.updated_at:
            return error
        return None
    return None


def start_booking(
    session: Session,
    *,
    user_id: int,
    slot_id: int,
    subscription_id: int | None,
    requested_at: datetime,
    manual: bool = False,
    now: datetime | None = None,
) -> Start:
    """Claim the right to book ``slot_id`` for ``user_id``, or say why not (idempotent per request).

    ``requested_at`` identifies the request (the sender's clock, microseconds): the rows it creates
    carry it as ``created_at``, so a redelivery finds them and resumes or stops instead of claiming
    again, while any other request (another time) is an independent claim. ``manual`` is the
    user's tap on "Book this" (allowed on any of their subscriptions); otherwise the subscription
    must be active and allow autobook.
    """
    now = ensure_utc(now) if now is not None else utcnow()
    requested_at = ensure_utc(requested_at)
    slot = session.get(Slot, slot_id)
    if slot is None:
        return Start(StartOutcome.SLOT_UNKNOWN)
    subscription = session.get(Subscription, subscription_id) if subscription_id is not None else None
    owned = subscription is not None and subscription.user_id == user_id
    profile = profile_for(session, user_id, subscription if owned else None)
    # this request's own rows (the first slot's, and any fallback slot's): a row's created_at is
    # the time of the request that made it, so a redelivered message finds exactly its own rows;
    # one dispatch may ask for several people of one user at the same time, so the person is part
    # of the request's identity
    own_rows = session.scalars(
        select(Booking)
        .where(
            Booking.user_id == user_id,
            Booking.profile_id == (profile.id if profile is not None else None),
            Booking.service_id == slot.service_id,
            Booking.created_at == requested_at,
        )
        .order_by(Booking.id.desc())
    ).all()
    own = next((b for b in own_rows if b.status in ACTIVE_BOOKING_STATUSES), None)
    if own is None:
        own = next((b for b in own_rows if b.slot_id == slot_id), None)
    if own is not None:
        if own.status is BookingStatus.HOLDING:
            return Start(StartOutcome.RESUME_HOLDING, own)
        if own.status is BookingStatus.RESERVED:
            return Start(StartOutcome.RESUME_RESERVED, own)
        return Start(StartOutcome.DONE, own)

    if subscription_id is not None and not owned:
        return Start(StartOutcome.NOT_WANTED)
    if subscription is not None and not manual:
        if subscription.state is not SubscriptionState.ACTIVE or not subscription.autobook:
            return Start(StartOutcome.NOT_WANTED)
        if not subscription_matches(subscription, slot.office_id, slot.start_at):
            return Start(StartOutcome.NOT_WANTED)
    if profile is None or not (profile.email and profile.last_name):
        return Start(StartOutcome.NO_PROFILE)
    user = session.get(User, user_id)
    if user is None or user.consented_at is None:
        told = tell_subscriber(
            session,
            SubscriberNotice.CONSENT_NEEDED,
            user_id=user_id,
            slot=slot,
            subscription=subscription,
            now=now,
        )
        return Start(StartOutcome.NO_CONSENT, told=told)
    if profile_refused(session, user_id, profile) is not None:
        return Start(StartOutcome.PROFILE_REFUSED)
    replaces = replaced_booking(session, subscription if owned else None, profile.id, slot)
    swap = owned and subscription is not None and subscription.replaces_booking_id is not None
    if swap and replaces is None:
        return Start(StartOutcome.NOT_WANTED)  # the swap is over, or the slot is not earlier
    existing = blocking_booking(session, profile.id, slot.service_id, replaces=replaces)
    if existing is not None:
        return Start(StartOutcome.ALREADY_ACTIVE, existing)
    if bookings_for_mail(session, profile.email, slot.site, now) >= MAIL_CAP:
        told = tell_subscriber(
            session, SubscriberNotice.MAIL_CAP, user_id=user_id, slot=slot, subscription=subscription, now=now
        )
        return Start(StartOutcome.MAIL_CAP, told=told)
    booking_id = session.execute(
        insert_ignoring_duplicates(session, Booking)
        .values(
            user_id=user_id,
            profile_id=profile.id,
            subscription_id=subscription.id if subscription is not None else None,
            slot_id=slot.id,
            site=slot.site,
            service_id=slot.service_id,
            service_count=slot.service_count,
            office_id=slot.office_id,
            start_at=slot.start_at,
            status=BookingStatus.HOLDING,
            replaces_booking_id=replaces,
            created_at=requested_at,
            updated_at=now,
        )
        .returning(Booking.id)
    ).scalar_one_or_none()
    if booking_id is None:  # a concurrent request won the (profile, service) claim
        return Start(StartOutcome.ALREADY_ACTIVE, active_booking(session, profile.id, slot.service_id))
    booking = session.get(Booking, booking_id)
    assert booking is not None
    log.info("booking_started", booking_id=booking_id, slot_id=slot_id, manual=manual)
    return Start(StartOutcome.STARTED, booking)


def begin_booking(
    db: Database,
    *,
    user_id: int,
    slot_id: int,
    subscription_id: int | None,
    requested_at: datetime,
    manual: bool = False,
    now: datetime | None = None,
) -> Start:
    """``start_booking`` in a transaction of its own, committed before the site is touched (a racing
    worker sees the claim); the booking comes back detached, for use after the session closed."""
    with db.transaction() as session:
        start = start_booking(
            session,
            user_id=user_id,
            slot_id=slot_id,
            subscription_id=subscription_id,
            requested_at=requested_at,
            manual=manual,
            now=now,
        )
        if start.booking is not None:
            session.expunge(start.booking)
        return start


def held_by_mta(session: Session, slot: Slot, *, except_booking: int | None = None) -> bool:
    """Whether another MTA booking already holds this slot at the city (reserved or preconfirmed)."""
    query = select(Booking.id).where(
        Booking.site == slot.site,
        Booking.office_id == slot.office_id,
        Booking.start_at == slot.start_at,
        Booking.status.in_((BookingStatus.RESERVED, BookingStatus.PRECONFIRMED, BookingStatus.CONFIRMED)),
    )
    if except_booking is not None:
        query = query.where(Booking.id != except_booking)
    return session.execute(query.limit(1)).first() is not None


def next_candidate_slot(
    session: Session, booking: Booking, *, tried_slot_ids: Iterable[int], now: datetime | None = None
) -> Slot | None:
    """The next open slot the booking's subscription wants, not yet tried and not held by MTA."""
    now = ensure_utc(now) if now is not None else utcnow()
    if booking.subscription_id is None:
        return None
    subscription = session.get(Subscription, booking.subscription_id)
    if (
        subscription is None
        or subscription.state is not SubscriptionState.ACTIVE
        or not subscription.autobook
    ):
        return None
    tried = set(tried_slot_ids)
    held = {
        (office, start)
        for office, start in session.execute(
            select(Booking.office_id, Booking.start_at).where(
                Booking.site == subscription.site,
                Booking.service_id == subscription.service_id,
                Booking.status.in_(
                    (BookingStatus.RESERVED, BookingStatus.PRECONFIRMED, BookingStatus.CONFIRMED)
                ),
            )
        )
    }
    candidates = session.scalars(
        select(Slot)
        .where(
            Slot.site == subscription.site,
            Slot.service_id == subscription.service_id,
            Slot.service_count == subscription.service_count,
            Slot.gone_at.is_(None),
            Slot.start_at > now,
        )
        .order_by(Slot.start_at, Slot.office_id)
    ).all()
    for slot in candidates:
        if slot.id in tried or (slot.office_id, slot.start_at) in held:
            continue
        if subscription_matches(subscription, slot.office_id, slot.start_at):
            return slot
    return None


# --- autobook dispatch -----------------------------------------------------------------------------
@dataclass(frozen=True)
class BookRequest:
    """One ``book_slot`` message to send."""

    user_id: int
    slot_id: int
    subscription_id: int


def autobook_requests(
    session: Session, slot_ids: Sequence[int], *, now: datetime | None = None
) -> list[BookRequest]:
    """The bookings to attempt for newly seen slots: one per person (profile) and service (never two
    messages racing for one person), the slots dealt round-robin over them so that many subscribers
    and few slots spread out instead of all racing for the first one (each falls back to the
    others)."""
    now = ensure_utc(now) if now is not None else utcnow()
    slots = [
        s
        for s in session.scalars(
            select(Slot).where(Slot.id.in_(list(slot_ids))).order_by(Slot.start_at, Slot.id)
        )
        if s.gone_at is None and s.start_at > now
    ]
    if not slots:
        return []
    keys = {(s.site, s.service_id, s.service_count) for s in slots}
    requests: list[BookRequest] = []
    people_done: set[tuple[int, int]] = set()
    for site, service_id, count in sorted(keys):
        group = [s for s in slots if (s.site, s.service_id, s.service_count) == (site, service_id, count)]
        subscriptions = session.scalars(
            select(Subscription)
            .where(
                Subscription.site == site,
                Subscription.service_id == service_id,
                Subscription.service_count == count,
                Subscription.state == SubscriptionState.ACTIVE,
                Subscription.autobook.is_(True),
            )
            .order_by(Subscription.created_at, Subscription.id)
        ).all()
        busy: dict[int | None, set[int]] = {}
        for profile_id, booking_id in session.execute(
            select(Booking.profile_id, Booking.id).where(
                Booking.service_id == service_id, Booking.status.in_(ACTIVE_BOOKING_STATUSES)
            )
        ):
            busy.setdefault(profile_id, set()).add(booking_id)
        turn = 0
        for sub in subscriptions:
            profile = profile_for(session, sub.user_id, sub)
            person = profile.id if profile is not None else -sub.user_id  # no profile: start says so
            # an earlier date's subscription may book beside the booking it replaces (start decides)
            if busy.get(person, set()) - {sub.replaces_booking_id} or (person, service_id) in people_done:
                continue
            wanted = [s for s in group if subscription_matches(sub, s.office_id, s.start_at)]
            if not wanted:
                continue
            slot = wanted[turn % len(wanted)]
            turn += 1
            people_done.add((person, service_id))
            requests.append(BookRequest(user_id=sub.user_id, slot_id=slot.id, subscription_id=sub.id))
    return requests


# --- transitions -----------------------------------------------------------------------------------
def _get(session: Session, booking_id: int) -> Booking:
    booking = session.get(Booking, booking_id, with_for_update=True, populate_existing=True)
    if booking is None:
        raise LookupError(f"no booking {booking_id}")
    return booking


def notification_payload(booking: Booking, event: BookingEvent, **extra: Any) -> dict[str, Any]:
    """What the bot needs to render a booking message (no personal data, no credentials)."""
    start_local = booking.start_at.astimezone(SITE_TIMEZONE).isoformat() if booking.start_at else None
    payload: dict[str, Any] = {
        "event": event.value,
        "booking_id": booking.id,
        "site": booking.site,
        "office_id": booking.office_id,
        "service_id": booking.service_id,
        "service_count": booking.service_count,
        "start": booking.start_at.isoformat() if booking.start_at else None,
        "start_local": start_local,
        "status": _DISPLAY_STATUS[event],
        "subscription_id": booking.subscription_id,
    }
    if booking.activation_deadline is not None:
        payload["activation_deadline"] = booking.activation_deadline.isoformat()
    payload.update({k: v for k, v in extra.items() if v is not None})
    return payload


_DISPLAY_STATUS = {
    BookingEvent.HOLDING: "holding",
    BookingEvent.RESERVED: "reserved",
    BookingEvent.REMINDER: "reminder",
    BookingEvent.CONFIRMED: "confirmed",
    BookingEvent.EXPIRED: "expired",
    BookingEvent.FAILED: "failed",
    BookingEvent.TAKEN: "failed",
    BookingEvent.CANCELLED: "cancelled",
}
"""``payload["status"]``: the message to show (the bot's ``render_booking`` statuses); a lost race
is "failed" with ``reason`` "appointmentNotAvailable"."""


def _notify(
    session: Session,
    booking: Booking,
    event: BookingEvent,
    now: datetime,
    *,
    key: str | None = None,
    **extra: Any,
) -> bool:
    kind = NotificationKind.REMINDER if event is BookingEvent.REMINDER else NotificationKind.BOOKING
    return enqueue_notification(
        session,
        kind=kind,
        user_id=booking.user_id,
        chat_id=booking.user_id,
        subscription_id=booking.subscription_id,
        slot_id=booking.slot_id,
        booking_id=booking.id,
        payload=notification_payload(booking, event, **extra),
        next_attempt_at=now,
        dedup_key=f"booking:{booking.id}:{key or event.value}",
    )


def record_reserved(
    session: Session,
    booking_id: int,
    *,
    process_id: str,
    auth_key: str,
    reservation_minutes: int,
    now: datetime | None = None,
) -> Booking:
    """The city holds the slot: store its credentials (encrypted) and tell the user "holding"."""
    now = ensure_utc(now) if now is not None else utcnow()
    booking = _get(session, booking_id)
    if booking.status is BookingStatus.HOLDING:
        booking.status = BookingStatus.RESERVED
        booking.process_id = str(process_id)
        booking.auth_key = auth_key
        booking.reservation_deadline = now + timedelta(minutes=reservation_minutes or 15)
        booking.updated_at = now
        _notify(session, booking, BookingEvent.HOLDING, now)
    session.flush()
    return booking


def record_preconfirmed(
    session: Session, booking_id: int, *, activation_minutes: int, now: datetime | None = None
) -> Booking:
    """The activation mail is out: set the deadline, stop the autobook subscription, tell the user."""
    now = ensure_utc(now) if now is not None else utcnow()
    booking = _get(session, booking_id)
    if booking.status not in (BookingStatus.HOLDING, BookingStatus.RESERVED):
        return booking
    booking.status = BookingStatus.PRECONFIRMED
    booking.activation_deadline = now + timedelta(minutes=activation_minutes)
    booking.updated_at = now
    if booking.subscription_id is not None:
        subscription = session.get(Subscription, booking.subscription_id)
        if (
            subscription is not None
            and subscription.autobook
            and subscription.state is SubscriptionState.ACTIVE
        ):
            subscription.state = SubscriptionState.DONE
            subscription.updated_at = now
    _notify(session, booking, BookingEvent.RESERVED, now, activation_minutes=activation_minutes)
    session.flush()
    return booking


def record_failed(
    session: Session,
    booking_id: int,
    error: BookingError,
    *,
    notify: bool = True,
    now: datetime | None = None,
) -> Booking:
    """Close the booking as failed; ``error.kind`` taken → a "taken" message, else "failed"."""
    now = ensure_utc(now) if now is not None else utcnow()
    booking = _get(session, booking_id)
    if booking.status not in ACTIVE_BOOKING_STATUSES:
        return booking
    booking.status = BookingStatus.FAILED
    booking.error = error.to_text()
    booking.updated_at = now
    if notify:
        event = BookingEvent.TAKEN if error.kind == FailureKind.TAKEN else BookingEvent.FAILED
        _notify(
            session,
            booking,
            event,
            now,
            field=error.field,
            reason="appointmentNotAvailable" if event is BookingEvent.TAKEN else _reason_text(error),
            detail=error.reason,
            code=error.code,
            kind=error.kind,
        )
    log.info("booking_failed", booking_id=booking_id, failure=error.kind, code=error.code)
    session.flush()
    return booking


def _reason_text(error: BookingError) -> str:
    """The reason as one line for the user: which field, and what the site said."""
    if error.field:
        return f"{error.field}: {error.reason}" if error.reason else error.field
    return error.reason or error.code


def record_expired(
    session: Session, booking_id: int, *, phase: str, code: str = "expired", now: datetime | None = None
) -> Booking:
    """The reservation (``phase="reservation"``) or the activation window ran out."""
    now = ensure_utc(now) if now is not None else utcnow()
    booking = _get(session, booking_id)
    if booking.status not in ACTIVE_BOOKING_STATUSES:
        return booking
    booking.status = BookingStatus.EXPIRED
    booking.error = BookingError(kind="expired", code=code, reason=phase).to_text()
    booking.updated_at = now
    _notify(session, booking, BookingEvent.EXPIRED, now, phase=phase)
    session.flush()
    return booking


def record_confirmed(session: Session, booking_id: int, *, now: datetime | None = None) -> Booking:
    now = ensure_utc(now) if now is not None else utcnow()
    booking = _get(session, booking_id)
    if booking.status is not BookingStatus.PRECONFIRMED:
        return booking
    booking.status = BookingStatus.CONFIRMED
    booking.updated_at = now
    _notify(session, booking, BookingEvent.CONFIRMED, now)
    session.flush()
    return booking


def record_cancelled(
    session: Session, booking_id: int, *, notify: bool = True, now: datetime | None = None
) -> Booking:
    """Cancelled at the city; ``notify`` False when the caller tells the user itself (a swap)."""
    now = ensure_utc(now) if now is not None else utcnow()
    booking = _get(session, booking_id)
    if booking.status in (BookingStatus.CANCELLED, BookingStatus.FAILED, BookingStatus.EXPIRED):
        return booking
    booking.status = BookingStatus.CANCELLED
    booking.updated_at = now
    if notify:
        _notify(session, booking, BookingEvent.CANCELLED, now)
    session.flush()
    return booking


def cancellable(session: Session, booking_id: int, user_id: int) -> Booking | None:
    """The user's booking if it holds something at the city that a cancellation would free."""
    booking = session.get(Booking, booking_id)
    if booking is None or booking.user_id != user_id:
        return None
    if booking.status not in (BookingStatus.RESERVED, BookingStatus.PRECONFIRMED, BookingStatus.CONFIRMED):
        return None
    return booking


# --- the periodic job's local part -----------------------------------------------------------------
def queue_reminders(session: Session, now: datetime) -> int:
    """One reminder per threshold in ``REMINDERS_BEFORE`` that the activation window has passed."""
    queued = 0
    bookings = session.scalars(
        select(Booking).where(
            Booking.status == BookingStatus.PRECONFIRMED, Booking.activation_deadline.is_not(None)
        )
    ).all()
    for booking in bookings:
        assert booking.activation_deadline is not None
        left = booking.activation_deadline - now
        if left <= timedelta(0):
            continue
        for before in sorted(REMINDERS_BEFORE):
            if left <= before:
                minutes_left = max(1, int(left.total_seconds() // 60))
                if _notify(
                    session,
                    booking,
                    BookingEvent.REMINDER,
                    now,
                    key=f"reminder:{int(before.total_seconds() // 60)}",
                    minutes_left=minutes_left,
                ):
                    queued += 1
                break  # only the tightest threshold reached; earlier ones were sent before or are moot
    session.flush()
    return queued


def close_stale(session: Session, now: datetime) -> tuple[int, int]:
    """Reservations past their deadline (the walk never preconfirmed) → expired; holding rows left
    by a dead worker → failed (interrupted). Returns (expired, interrupted)."""
    expired = 0
    for booking in session.scalars(
        select(Booking).where(
            Booking.status == BookingStatus.RESERVED,
            Booking.reservation_deadline.is_not(None),
            Booking.reservation_deadline <= now,
        )
    ).all():
        record_expired(session, booking.id, phase="reservation", now=now)
        expired += 1
    interrupted = 0
    for booking in session.scalars(
        select(Booking).where(
            Booking.status == BookingStatus.HOLDING, Booking.updated_at <= now - STALE_HOLDING
        )
    ).all():
        record_failed(
            session,
            booking.id,
            BookingError(
                kind=FailureKind.INTERRUPTED, code="interrupted", reason="the booking attempt was interrupted"
            ),
            now=now,
        )
        interrupted += 1
    return expired, interrupted


def preconfirmed_bookings(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(Booking.id).where(Booking.status == BookingStatus.PRECONFIRMED).order_by(Booking.id)
        ).all()
    )


def apply_site_state(
    session: Session, booking_id: int, *, found: bool, status: str | None, now: datetime
) -> BookingStatus:
    """Move a preconfirmed booking by what the site says: confirmed; gone, or still unconfirmed
    ``EXPIRY_GRACE`` past the deadline → expired (activation). Returns the new status."""
    booking = _get(session, booking_id)
    if booking.status is not BookingStatus.PRECONFIRMED:
        return booking.status
    if found and status == "confirmed":
        return record_confirmed(session, booking_id, now=now).status
    deadline = booking.activation_deadline
    if not found or (deadline is not None and deadline + EXPIRY_GRACE <= now):
        return record_expired(session, booking_id, phase="activation", now=now).status
    return booking.status


__all__ = [
    "EXPIRY_GRACE",
    "HELD_AT_CITY",
    "MAIL_CAP",
    "MAX_FALLBACK_ATTEMPTS",
    "REMINDERS_BEFORE",
    "STALE_HOLDING",
    "SWAPPABLE",
    "BookRequest",
    "BookingError",
    "BookingEvent",
    "FailureKind",
    "Start",
    "StartOutcome",
    "SubscriberNotice",
    "active_booking",
    "apply_site_state",
    "autobook_requests",
    "begin_booking",
    "blocking_booking",
    "bookings_for_mail",
    "cancellable",
    "close_stale",
    "held_by_mta",
    "next_candidate_slot",
    "notification_payload",
    "preconfirmed_bookings",
    "profile_for",
    "profile_refused",
    "queue_reminders",
    "record_cancelled",
    "record_confirmed",
    "record_expired",
    "record_failed",
    "record_preconfirmed",
    "record_reserved",
    "replaced_booking",
    "start_booking",
    "tell_subscriber",
]
