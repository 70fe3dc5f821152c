"""The alert's "Book this" button, and ``/bookings``: what MTA booked for you, and cancelling it.

"Book this" carries ``book:<slot id>`` (``bot.alerts.BOOK_CALLBACK_PREFIX``), made with the alert and
not signed, so nothing in it is trusted. Before anything is queued the database must show that
MTA alerted *this* user about *this* slot (a slot row in the outbox for them), through a
subscription of theirs that is still active; that the slot is still open; that they stored a
booking profile (and agreed to MTA keeping it: details from before consent was asked get the
consent question instead, ``profile.ask_stored_consent``) the site has not refused; and that
they hold no other active booking for the service (one per person and service,
``shared.booking``) and have no other request for it on its way. Only then
``shared.enqueue.request_booking(..., manual=True)`` queues a ``book_slot`` message by name; its
Redis marker makes a second press a no-op ("already on its way").

``/bookings`` lists the latest bookings with their state (holding, held by the city, reserved with
the activation deadline, confirmed, expired, failed, cancelled). Bookings that hold something at
the city (``shared.booking.cancellable``) get a signed "Cancel" button; a confirmation step
follows, then ``shared.enqueue.request_cancel`` queues the cancellation at the city, which frees
the slot for others. The outcome ("cancelled") reaches the user through the outbox.

The bot imports no worker code: it sends the worker's actors messages by name
(``shared.contracts``) through a send-only broker on a Redis connection it opens per press.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot.alerts import BOOK_CALLBACK_PREFIX, berlin_datetime
from bot.calendar import Appointment, appointment_ics, filename
from bot.callbacks import Callback
from bot.i18n import Gettext
from bot.keyboards import ButtonSpec, KeyboardMaker, yes_no_keyboard
from bot.services import service_label
from bot.validation import N_
from shared import booking as policy
from shared import enqueue
from shared.catalog import get_catalog
from shared.contracts import booking_marker_key, booking_marker_pattern
from shared.db.database import Database
from shared.db.models import (
    Booking,
    BookingStatus,
    Notification,
    NotificationKind,
    Slot,
    Subscription,
    SubscriptionState,
    User,
)
from shared.domain import utcnow

from .common import Turn, log
from .profile import ask_stored_consent, mask_email

BOOK_PATTERN = re.compile(rf"^{re.escape(BOOK_CALLBACK_PREFIX)}")
"""Every "Book this" press (the router in ``bot.handlers`` leaves these to ``on_book_button``)."""
_BOOK_DATA = re.compile(rf"^{re.escape(BOOK_CALLBACK_PREFIX)}([0-9]{{1,18}})$")
ACTIONS = frozenset({"bc", "bcy", "bck", "bi"})
"""Signed buttons under /bookings: cancel (bc) → yes (bcy) / keep (bck); the argument is a booking id."""
LIST_LIMIT = 10
"""/bookings shows this many of the latest bookings (/export has all of them)."""
REDIS_TIMEOUT_S = 5.0
"""A press waits at most this long for Redis before it is told the queue is unavailable."""
HELP_LINE = N_("/bookings – your bookings (status, cancel)")


class BookOutcome(enum.StrEnum):
    """What pressing "Book this" led to; each has one answer for the user."""

    REQUESTED = "requested"
    ALREADY_REQUESTED = "already_requested"
    NOT_OFFERED = "not_offered"
    SUBSCRIPTION_INACTIVE = "subscription_inactive"
    SLOT_GONE = "slot_gone"
    NO_PROFILE = "no_profile"
    NO_CONSENT = "no_consent"
    """Details stored before consent was asked: the consent question comes instead of a booking."""
    PROFILE_REFUSED = "profile_refused"
    ALREADY_ACTIVE = "already_active"
    MAIL_CAP = "mail_cap"
    OTHER_PENDING = "other_pending"
    QUEUE_UNAVAILABLE = "queue_unavailable"


@dataclass(frozen=True)
class SlotFacts:
    site: str
    service_id: int
    office_id: int
    start_at: datetime


@dataclass(frozen=True)
class BookAnswer:
    outcome: BookOutcome
    slot: SlotFacts | None = None
    subscription_id: int | None = None
    email: str | None = None
    """Masked (``e***@example.org``): where the city sends the activation link."""
    active: BookingView | None = None
    """The booking that already holds the service (``ALREADY_ACTIVE``)."""


@dataclass(frozen=True)
class BookingView:
    """A booking as /bookings shows it; detached from the session."""

    id: int
    status: BookingStatus
    site: str
    service_id: int
    office_id: int
    start_at: datetime | None
    activation_deadline: datetime | None
    reservation_deadline: datetime | None
    error: policy.BookingError | None

    @property
    def cancellable(self) -> bool:
        """It holds something at the city (same rule as ``shared.booking.cancellable``)."""
        return self.status in (BookingStatus.RESERVED, BookingStatus.PRECONFIRMED, BookingStatus.CONFIRMED)

    @classmethod
    def of(cls, row: Booking) -> BookingView:
        return cls(
            id=row.id,
            status=row.status,
            site=row.site,
            service_id=row.service_id,
            office_id=row.office_id,
            start_at=row.start_at,
            activation_deadline=row.activation_deadline,
            reservation_deadline=row.reservation_deadline,
            error=policy.BookingError.from_text(row.error),
        )


# --- "Book this": the checks (synchronous, in a worker thread) --------------------------------------


def check_book_request(session: Session, user_id: int, slot_id: int, now: datetime) -> BookAnswer:
    """Everything the database can say about this press; ``REQUESTED`` means "may be queued"."""
    slot = session.get(Slot, slot_id)
    alert = session.scalars(
        select(Notification)
        .where(
            Notification.kind == NotificationKind.SLOT,
            Notification.slot_id == slot_id,
            Notification.user_id == user_id,
        )
        .order_by(Notification.id.desc())
        .limit(1)
    ).first()
    if slot is None or alert is None or alert.subscription_id is None:
        return BookAnswer(BookOutcome.NOT_OFFERED)
    facts = SlotFacts(slot.site, slot.service_id, slot.office_id, slot.start_at)
    subscription = session.get(Subscription, alert.subscription_id)
    if subscription is None or subscription.user_id != user_id:
        return BookAnswer(BookOutcome.NOT_OFFERED)
    if subscription.state is not SubscriptionState.ACTIVE:
        return BookAnswer(BookOutcome.SUBSCRIPTION_INACTIVE, facts, subscription.id)
    if slot.gone_at is not None or slot.start_at <= now:
        return BookAnswer(BookOutcome.SLOT_GONE, facts, subscription.id)
    profile = policy.profile_for(session, user_id, subscription)
    if profile is None or not (profile.email and profile.last_name):
        return BookAnswer(BookOutcome.NO_PROFILE, facts, subscription.id)
    user = session.get(User, user_id)
    if user is None or user.consented_at is None:
        return BookAnswer(BookOutcome.NO_CONSENT, facts, subscription.id)
    if policy.profile_refused(session, user_id, profile) is not None:
        return BookAnswer(BookOutcome.PROFILE_REFUSED, facts, subscription.id)
    replaces = policy.replaced_booking(session, subscription, profile.id, slot)  # an earlier date
    active = policy.blocking_booking(session, profile.id, slot.service_id, replaces=replaces)
    if active is not None:
        return BookAnswer(BookOutcome.ALREADY_ACTIVE, facts, subscription.id, active=BookingView.of(active))
    if policy.bookings_for_mail(session, profile.email, slot.site, now) >= policy.MAIL_CAP:
        return BookAnswer(BookOutcome.MAIL_CAP, facts, subscription.id)
    return BookAnswer(BookOutcome.REQUESTED, facts, subscription.id, email=mask_email(profile.email))


def _other_request_pending(
    db: Database, client: redis.Redis, user_id: int, slot_id: int, slot: SlotFacts
) -> bool:
    """A request of this user for another slot of the same service is queued or running (its
    ``request_booking`` marker, ``shared.contracts.booking_marker_key``, is still there)."""
    others = []
    for key in client.scan_iter(match=booking_marker_pattern(user_id), count=100):
        tail = (key.decode() if isinstance(key, bytes) else str(key)).rsplit(":", 1)[-1]
        if tail.isascii() and tail.isdigit() and int(tail) != slot_id:
            others.append(int(tail))
    if not others:
        return False
    with db.transaction() as session:
        return (
            session.scalar(
                select(Slot.id)
                .where(Slot.id.in_(others), Slot.site == slot.site, Slot.service_id == slot.service_id)
                .limit(1)
            )
            is not None
        )


def request_from_alert(
    db: Database, redis_url: str, user_id: int, slot_id: int, now: datetime | None = None
) -> BookAnswer:
    """Check the press (``check_book_request``), then queue the booking; never raises for a queue
    that is down (``QUEUE_UNAVAILABLE``)."""
    with db.transaction() as session:
        answer = check_book_request(session, user_id, slot_id, now or utcnow())
    if answer.outcome is not BookOutcome.REQUESTED:
        return answer
    assert answer.slot is not None
    if not redis_url:
        log.warning("booking_queue_unconfigured")
        return BookAnswer(BookOutcome.QUEUE_UNAVAILABLE, answer.slot, answer.subscription_id)
    client = redis.Redis.from_url(
        redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
    )
    try:
        if _other_request_pending(db, client, user_id, slot_id, answer.slot):
            return BookAnswer(BookOutcome.OTHER_PENDING, answer.slot, answer.subscription_id)
        try:
            queued = enqueue.request_booking(
                client, enqueue.sender_broker(client), user_id, slot_id, answer.subscription_id, manual=True
            )
        except Exception:
            # the marker may be set while no message went out: let the next press try again
            _forget_marker(client, user_id, slot_id)
            raise
    except Exception as exc:  # Redis down, broker misconfigured: say so, lose nothing
        log.warning("booking_request_failed", slot_id=slot_id, error=type(exc).__name__)
        return BookAnswer(BookOutcome.QUEUE_UNAVAILABLE, answer.slot, answer.subscription_id)
    finally:
        client.close()
    if not queued:
        return BookAnswer(BookOutcome.ALREADY_REQUESTED, answer.slot, answer.subscription_id)
    log.info("booking_requested", slot_id=slot_id, subscription_id=answer.subscription_id)
    return answer


def _forget_marker(client: redis.Redis, user_id: int, slot_id: int) -> None:
    try:
        client.delete(booking_marker_key(user_id, slot_id))
    except Exception as exc:  # it expires by itself
        log.warning("booking_marker_cleanup_failed", error=type(exc).__name__)


# --- "Book this": the handler ---------------------------------------------------------------------


def _names(site: str, service_id: int, office_id: int, language: str) -> tuple[str, str]:
    """The service's (with a hint in the reader's language) and the office's names from the
    catalogue (their ids when unknown)."""
    catalog = get_catalog(site)
    service = catalog.service(service_id)
    office = catalog.office(office_id)
    office_name = (office.display_name or office.name) if office else str(office_id)
    return (service_label(service, language) if service else str(service_id)), office_name


def _slot_line(facts: SlotFacts, language: str) -> str:
    service, office = _names(facts.site, facts.service_id, facts.office_id, language)
    return f"{service}, {office}, {berlin_datetime(facts.start_at, language)}"


def book_answer_text(answer: BookAnswer, _: Gettext, language: str) -> str:
    """The reply to a "Book this" press, in the user's language."""
    what = _slot_line(answer.slot, language) if answer.slot is not None else ""
    outcome = answer.outcome
    if outcome is BookOutcome.REQUESTED:
        return _(
            "📝 Booking requested: {what}.\n"
            "I am filling in the city's form for you now. The city will e-mail the activation link to "
            "{email}; I will tell you how it goes. /bookings shows the state."
        ).format(what=what, email=answer.email or "…")
    if outcome is BookOutcome.ALREADY_REQUESTED:
        return _("I am already booking this appointment for you; you will hear from me shortly.")
    if outcome is BookOutcome.NOT_OFFERED:
        return _(
            "I cannot book this: it is not an appointment I alerted you about. "
            "Please use the buttons under my own alerts."
        )
    if outcome is BookOutcome.SUBSCRIPTION_INACTIVE:
        return _(
            "The subscription this alert came from is paused or finished, so I do not book from it. "
            "Resume it with /list if you still want such an appointment."
        )
    if outcome is BookOutcome.SLOT_GONE:
        return _(
            "This appointment is gone: someone else took it or the city withdrew it. "
            "I keep watching and will tell you about the next one."
        )
    if outcome is BookOutcome.NO_PROFILE:
        return _(
            "To book for you I need your details for the city's form. Store them with /profile, "
            'then press "Book this" again.'
        )
    if outcome is BookOutcome.PROFILE_REFUSED:
        return _(
            "The city refused your details the last time I booked with them. Please correct them "
            'with /profile, then press "Book this" again.'
        )
    if outcome is BookOutcome.ALREADY_ACTIVE:
        booking = answer.active
        return _(
            "You already have an active booking for this service (#{id}): the city allows one per "
            "person and service. See /bookings; cancel it there first if you want this one instead."
        ).format(id=booking.id if booking else "?")
    if outcome is BookOutcome.MAIL_CAP:
        return _(
            "MTA already holds {cap} appointments to come for this e-mail address (for you or "
            "family members who share it), as many as the city allows per address. Cancel one in "
            "/bookings, or give this person an e-mail address of their own in /profile."
        ).format(cap=policy.MAIL_CAP)
    if outcome is BookOutcome.OTHER_PENDING:
        return _(
            "I am already booking another appointment for this service for you. Wait for its result "
            "(see /bookings) before asking for another."
        )
    return _(
        "I could not queue the booking right now. Please try again in a minute, or book it yourself "
        "with the link in the alert."
    )


async def on_book_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A press on an alert's "Book this": check it against the database, then queue the booking."""
    turn = await Turn.load(update, context)
    query = update.callback_query
    if turn is None or query is None:
        return
    _ = turn._
    match = _BOOK_DATA.match(query.data or "")
    if match is None:
        log.info("callback_refused", reason="bad_book_data")
        await turn.answer(
            _("This button is not valid. Please use the buttons of my latest message."), alert=True
        )
        return
    slot_id = int(match.group(1))
    redis_url = turn.settings.redis_url if turn.settings is not None else ""
    answer = await asyncio.to_thread(request_from_alert, turn.db, redis_url, turn.user_id, slot_id)
    log.info("book_button", slot_id=slot_id, outcome=answer.outcome.value)
    await turn.answer()
    if answer.outcome is BookOutcome.NO_CONSENT:
        await ask_stored_consent(turn, after="book")
        return
    await turn.say(book_answer_text(answer, _, turn.language))


# --- /bookings ------------------------------------------------------------------------------------


def bookings_of(db: Database, user_id: int, limit: int = LIST_LIMIT) -> tuple[list[BookingView], int]:
    """The user's latest bookings (newest first) and how many they have in all."""
    with db.transaction() as session:
        rows = session.scalars(
            select(Booking)
            .where(Booking.user_id == user_id)
            .order_by(Booking.created_at.desc(), Booking.id.desc())
            .limit(limit)
        ).all()
        total = len(session.scalars(select(Booking.id).where(Booking.user_id == user_id)).all())
        return [BookingView.of(row) for row in rows], total


def cancellable_booking(db: Database, user_id: int, booking_id: int) -> BookingView | None:
    with db.transaction() as session:
        row = policy.cancellable(session, booking_id, user_id)
        return BookingView.of(row) if row is not None else None


def _status_text(view: BookingView, _: Gettext, language: str) -> str:
    status = view.status
    if status is BookingStatus.HOLDING:
        return _("⏳ booking in progress")
    if status is BookingStatus.RESERVED:
        return _("⏳ held by the city; MTA is finishing the form")
    if status is BookingStatus.PRECONFIRMED:
        if view.activation_deadline is not None:
            return _("📨 reserved: open the activation link in the city's e-mail before {deadline}").format(
                deadline=berlin_datetime(view.activation_deadline, language)
            )
        return _("📨 reserved: open the activation link in the city's e-mail")
    if status is BookingStatus.CONFIRMED:
        return _("✅ confirmed")
    if status is BookingStatus.EXPIRED:
        return _("⌛ expired")
    if status is BookingStatus.CANCELLED:
        return _("🚫 cancelled")
    error = view.error
    if error is not None and error.kind == policy.FailureKind.TAKEN:
        return _("❌ failed: someone else was faster")
    if error is not None and error.kind == policy.FailureKind.PROFILE:
        return _("❌ failed: the city refused your details ({field})").format(field=error.field or "?")
    return _("❌ failed")


def describe_booking(view: BookingView, _: Gettext, language: str) -> str:
    service, office = _names(view.site, view.service_id, view.office_id, language)
    when = berlin_datetime(view.start_at, language) if view.start_at else "?"
    state = _("State: {state}").format(state=_status_text(view, _, language))
    return f"#{view.id} · {service}\n📍 {office}\n🕒 {when}\n{state}"


def _list_message(
    views: list[BookingView], total: int, _: Gettext, language: str, kb: KeyboardMaker
) -> tuple[str, InlineKeyboardMarkup | None]:
    if not views:
        return (
            _(
                'You have no bookings. When MTA books for you, or you press "Book this" under an '
                "alert, the booking shows up here."
            ),
            None,
        )
    blocks = [_("Your bookings:")]
    blocks.extend(describe_booking(v, _, language) for v in views)
    if total > len(views):
        more = _("(the {n} latest of {total}; /export has all of them)")
        blocks.append(more.format(n=len(views), total=total))
    rows: list[list[ButtonSpec]] = []
    for v in views:
        row: list[ButtonSpec] = []
        if v.status is BookingStatus.CONFIRMED and v.start_at is not None:
            row.append(("📅 " + _("Calendar #{id}").format(id=v.id), "bi", v.id))
        if v.cancellable:
            row.append(("✖ " + _("Cancel booking #{id}").format(id=v.id), "bc", v.id))
        if v.cancellable and v.start_at is not None and v.start_at > utcnow():  # shared.swaps
            row.append(("⏪ " + _("Earlier date #{id}").format(id=v.id), "ew", v.id))
        if row:
            rows.append(row)
    return "\n\n".join(blocks), kb.markup(rows) if rows else None


async def show_bookings(turn: Turn) -> None:
    """/bookings"""
    views, total = await turn.run(bookings_of, turn.user_id)
    text, markup = _list_message(views, total, turn._, turn.language, turn.keys())
    await turn.say(text, markup)


async def on_button(turn: Turn, cb: Callback) -> None:
    """Cancel (bc) → confirm (bcy) or keep (bck), for the user's own cancellable booking only."""
    _ = turn._
    try:
        booking_id = int(cb.arg)
    except ValueError:
        booking_id = -1
    if cb.action == "bi":
        await _send_calendar(turn, booking_id)
        return
    if cb.action == "bck":
        views, total = await turn.run(bookings_of, turn.user_id)
        text, markup = _list_message(views, total, _, turn.language, turn.keys())
        await turn.show(text, markup)
        return
    view = await turn.run(cancellable_booking, turn.user_id, booking_id)
    if view is None:
        await turn.answer(
            _("That booking does not exist, is not yours, or holds nothing at the city to cancel."),
            alert=True,
        )
        return
    if cb.action == "bc":
        question = _(
            "Cancel this booking? The city then frees the appointment for others; it cannot be undone."
        )
        yes: ButtonSpec = ("🗑 " + _("Yes, cancel it"), "bcy", view.id)
        await turn.show(
            describe_booking(view, _, turn.language) + "\n\n" + question,
            yes_no_keyboard(turn.keys(), yes=yes, no=(_("Keep it"), "bck", view.id)),
        )
        return
    # bcy: confirmed
    try:
        redis_url = turn.settings.redis_url if turn.settings is not None else ""
        await asyncio.to_thread(_send_cancel, redis_url, view.id, turn.user_id)
    except Exception as exc:  # Redis down: nothing was queued, the booking stays as it is
        log.warning("booking_cancel_request_failed", booking_id=view.id, error=type(exc).__name__)
        await turn.answer(
            _("I could not send the cancellation right now. Please try again in a minute."), alert=True
        )
        return
    log.info("booking_cancel_requested", booking_id=view.id)
    await turn.show(
        _(
            "Cancellation of booking #{id} requested. I will tell you as soon as the city has cancelled it."
        ).format(id=view.id)
    )


def confirmed_booking(db: Database, user_id: int, booking_id: int) -> BookingView | None:
    """The user's own confirmed booking with a known time, else None."""
    with db.transaction() as session:
        row = session.get(Booking, booking_id)
        if row is None or row.user_id != user_id or row.status != BookingStatus.CONFIRMED:
            return None
        return BookingView.of(row) if row.start_at is not None else None


async def _send_calendar(turn: Turn, booking_id: int) -> None:
    """/bookings → "Calendar": the appointment's .ics file again."""
    view = await turn.run(confirmed_booking, turn.user_id, booking_id)
    if view is None or view.start_at is None:
        await turn.answer(turn._("That booking is not a confirmed appointment of yours."), alert=True)
        return
    appointment = Appointment(view.id, view.site, view.service_id, view.office_id, view.start_at)
    await turn.answer()
    await turn.context.bot.send_document(
        turn.chat_id,
        document=appointment_ics(appointment, turn.language),
        filename=filename(appointment),
        caption=turn._("Your appointment, for your calendar."),
    )


def _send_cancel(redis_url: str, booking_id: int, user_id: int) -> None:
    if not redis_url:
        raise RuntimeError("MTA_REDIS_URL is empty: no queue to send the cancellation to")
    client = redis.Redis.from_url(
        redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
    )
    try:
        enqueue.request_cancel(enqueue.sender_broker(client), booking_id, user_id)
    finally:
        client.close()


__all__ = [
    "ACTIONS",
    "BOOK_PATTERN",
    "HELP_LINE",
    "BookAnswer",
    "BookOutcome",
    "BookingView",
    "book_answer_text",
    "bookings_of",
    "check_book_request",
    "on_book_button",
    "on_button",
    "request_from_alert",
    "show_bookings",
]
