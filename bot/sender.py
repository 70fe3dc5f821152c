"""The one outbox sender: drains ``notifications`` to Telegram, once each, in a fair order.

Woken by Redis pub/sub (``mta:outbox:wake``, published by the workers after they queue alerts) and
by a periodic sweep that catches a lost wake-up and rows whose retry time came.

Crash safety, row by row (``claim_token`` and the ``sending`` status, migration 0002):

1. A drain *claims* due rows (``claim_token`` = this run's token). Claimed rows are not yet on the wire.
2. Right before the HTTP request leaves (``OutboxRequest``, after the ``AIORateLimiter`` let it
   through) the row turns ``sending``; any error answer from Telegram turns it back (not delivered).
3. The answer is recorded: ``sent`` with the Telegram message id, or a retry time, or ``dead``.

A clean stop (SIGTERM) claims nothing new, lets requests in flight finish and releases the rest.
After a crash, the next start releases the dead run's claims, and rows left ``sending`` — the bot
died while Telegram was answering — count as delivered: Telegram has no idempotency key, so
resending could double the alert. The price: a crash in the instant between marking a row
``sending`` and its request reaching Telegram loses that one alert (at most once, never twice).
A read timeout is the one ambiguous answer that is retried (Telegram answers well within the
timeout, so it most likely did not process the request; if it did, the user sees it twice).

429 (``retry_after``) is honoured (the rate limiter also pauses every other request), 5xx and
timeouts are retried with exponential backoff, 403 (the user blocked the bot) pauses the user's
subscriptions, and a "gone" row edits the original alert. Many subscribers of one slot are served
in an order that rotates from slot to slot, so the same people are not always last.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from telegram import Bot, LinkPreviewOptions, Message
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest, RequestData

from bot.alerts import (
    DAY_BEFORE,
    BookingUpdate,
    Filters,
    Rendered,
    SlotAlert,
    render_booking,
    render_gone,
    render_operator,
    render_slot_alert,
)
from bot.calendar import Appointment, appointment_ics, filename
from bot.metrics import ALERTS, DETECTION_LATENCY
from bot.quiet import HELD_KEY, QuietHours, hold_until
from shared.contracts import WAKE_CHANNEL
from shared.db.database import Database
from shared.db.models import (
    Booking,
    BookingProfile,
    BookingStatus,
    Notification,
    NotificationKind,
    NotificationStatus,
    Slot,
    Subscription,
    SubscriptionState,
    User,
)
from shared.domain import ensure_utc, utcnow
from shared.logging import get_logger
from shared.settings import Settings

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
GOLDEN_RATIO = 0.6180339887498949
UNCONFIRMED = "delivery unconfirmed: the bot stopped while Telegram was answering; not resent"
UNCONFIRMED_AFTER_ERROR = "delivery unconfirmed: the database refused its result; not resent"
UNCONFIRMED_UNREADABLE = "delivery unconfirmed: Telegram's answer could not be read; not resent"
"""The request left and an answer came, but not one we could use (the bot did not stop): without a
message id the alert cannot be edited, so its "gone" notice is sent as a message of its own."""
DUE_STATUSES = (NotificationStatus.PENDING, NotificationStatus.FAILED)

log = get_logger("mta.bot.sender")


@dataclass(frozen=True)
class SenderConfig:
    """How hard the sender tries; built from settings once."""

    sweep_s: float = 5.0
    batch_size: int = 2000
    concurrency: int = 8
    """Requests in flight at once; the rate limiter paces them to Telegram's limits."""
    inline_attempts: int = 4
    """Tries within one drain before the row waits for a later sweep."""
    max_attempts: int = 12
    """Tries in all before a row is given up (``dead``)."""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 300.0
    defer_s: float = 3.0
    """Wait of a "gone" edit whose alert has not been sent yet."""
    site_url: str = ""
    stop_timeout_s: float = 10.0
    """On a clean stop, how long requests in flight may take to finish."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderConfig:
        return cls(sweep_s=settings.outbox_sweep_s, site_url=settings.site_url)

    def backoff_s(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, attempt))))


# --- the moment a request goes on the wire ----------------------------------------------------


class WireHook:
    """Told when the HTTP request for one outbox row leaves, and when Telegram refused it."""

    def __init__(
        self, on_wire: Callable[[], Awaitable[None]], on_refused: Callable[[], Awaitable[None]]
    ) -> None:
        self.on_wire = on_wire
        self.on_refused = on_refused


CURRENT_SEND: contextvars.ContextVar[WireHook | None] = contextvars.ContextVar(
    "mta_current_send", default=None
)


class OutboxRequest(HTTPXRequest):
    """``HTTPXRequest`` that marks the current outbox row ``sending`` just before the bytes leave.

    It sits below the rate limiter, so rows waiting for their turn are still only claimed.
    """

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        hook = CURRENT_SEND.get()
        if hook is not None:
            await hook.on_wire()
        code, payload = await super().do_request(
            url,
            method,
            request_data=request_data,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
        )
        if hook is not None and code != 200:
            await hook.on_refused()  # an error answer: Telegram did not perform the call
        return code, payload


# --- the database side (synchronous; the sender runs it in threads) ----------------------------


@dataclass
class Job:
    """One claimed row, ready to go: a message to send, a message to edit, or nothing to do."""

    id: int
    kind: str
    chat_id: int | None
    user_id: int | None
    attempts: int
    rendered: Rendered | None = None
    edit_message_id: int | None = None
    skip_reason: str | None = None
    defer: bool = False
    hold_until: datetime | None = None
    """A slot alert due inside its person's quiet hours: wait until then (``bot.quiet``)."""
    document: tuple[str, bytes] | None = None
    """Sent after the message (a confirmed appointment's .ics); its failure does not fail the row."""
    day_before: tuple[int, datetime] | None = None
    """(booking id, when): once the message is sent, queue the day-before reminder."""
    slot_id: int | None = None
    subscription_id: int | None = None


@dataclass
class DrainStats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    blocked: int = 0
    deferred: int = 0
    last_drain_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "dead": self.dead,
            "skipped": self.skipped,
            "blocked": self.blocked,
            "deferred": self.deferred,
            "last_drain_at": self.last_drain_at.isoformat() if self.last_drain_at else None,
        }


class OutboxStore:
    """Claims, loads and settles outbox rows for one sender run (``token``)."""

    def __init__(self, db: Database, config: SenderConfig, token: str | None = None) -> None:
        self.db = db
        self.config = config
        self.token = token or secrets.token_hex(8)

    def _mine(self, notification_id: int) -> Any:
        return (Notification.id == notification_id) & (Notification.claim_token == self.token)

    def reconcile(self) -> tuple[int, int]:
        """After a restart: release old claims; rows left ``sending`` count as delivered.

        Returns (released, assumed delivered). Only one bot runs at a time (Telegram refuses a
        second poller), so every claim found here belongs to a dead run.
        """
        now = utcnow()
        with self.db.transaction() as session:
            released = _rowcount(
                session.execute(
                    update(Notification)
                    .where(Notification.claim_token.is_not(None), Notification.status.in_(DUE_STATUSES))
                    .values(claim_token=None, claimed_at=None)
                )
            )
            assumed = _rowcount(
                session.execute(
                    update(Notification)
                    .where(Notification.status == NotificationStatus.SENDING)
                    .values(
                        status=NotificationStatus.SENT,
                        sent_at=now,
                        claim_token=None,
                        last_error=UNCONFIRMED,
                    )
                )
            )
        if released or assumed:
            log.warning("outbox_reconciled", released=released, assumed_delivered=assumed)
        return released, assumed

    def settle_own_claims(self) -> tuple[int, int]:
        """After a failed drain (the database refused a write): settle this run's claims as
        ``reconcile`` settles a dead run's, so ``claim`` (unclaimed rows only) sees them again.

        Only safe when none of this run's requests is in flight. Rows not on the wire are
        released; rows left ``sending`` may have reached Telegram and count as delivered (never
        twice). Returns (released, assumed delivered).
        """
        now = utcnow()
        with self.db.transaction() as session:
            released = _rowcount(
                session.execute(
                    update(Notification)
                    .where(Notification.claim_token == self.token, Notification.status.in_(DUE_STATUSES))
                    .values(claim_token=None, claimed_at=None)
                )
            )
            assumed = _rowcount(
                session.execute(
                    update(Notification)
                    .where(
                        Notification.claim_token == self.token,
                        Notification.status == NotificationStatus.SENDING,
                    )
                    .values(
                        status=NotificationStatus.SENT,
                        sent_at=now,
                        claim_token=None,
                        last_error=UNCONFIRMED_AFTER_ERROR,
                    )
                )
            )
        return released, assumed

    def claim(self, limit: int) -> list[int]:
        now = utcnow()
        with self.db.transaction() as session:
            query = (
                select(Notification.id)
                .where(
                    Notification.status.in_(DUE_STATUSES),
                    Notification.claim_token.is_(None),
                    (Notification.next_attempt_at.is_(None)) | (Notification.next_attempt_at <= now),
                )
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(limit)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list(session.scalars(query))
            for chunk in _chunks(ids):
                session.execute(
                    update(Notification)
                    .where(Notification.id.in_(chunk), Notification.claim_token.is_(None))
                    .values(claim_token=self.token, claimed_at=now)
                )
        return ids

    def next_due(self) -> datetime | None:
        with self.db.transaction() as session:
            return session.scalar(
                select(Notification.next_attempt_at)
                .where(Notification.status.in_(DUE_STATUSES), Notification.claim_token.is_(None))
                .order_by(Notification.next_attempt_at)
                .limit(1)
            )

    def load(self, ids: Sequence[int]) -> list[Job]:
        """Render every claimed row (in its user's language) or decide it needs nothing."""
        now = utcnow()
        jobs: list[Job] = []
        with self.db.transaction() as session:
            for chunk in _chunks(list(ids)):
                rows = session.scalars(select(Notification).where(Notification.id.in_(chunk))).all()
                users = _by_id(session, User, {r.user_id for r in rows if r.user_id is not None})
                subs = _by_id(session, Subscription, {r.subscription_id for r in rows if r.subscription_id})
                slots = _by_id(session, Slot, {r.slot_id for r in rows if r.slot_id is not None})
                bookings = _by_id(session, Booking, {r.booking_id for r in rows if r.booking_id is not None})
                with_profile = set(
                    session.scalars(
                        select(BookingProfile.user_id).where(BookingProfile.user_id.in_(list(users) or [-1]))
                    )
                )
                for row in rows:
                    job = Job(
                        id=row.id,
                        kind=str(row.kind),
                        chat_id=row.chat_id,
                        user_id=row.user_id,
                        attempts=row.attempts,
                        slot_id=row.slot_id,
                        subscription_id=row.subscription_id,
                    )
                    user = users.get(row.user_id) if row.user_id is not None else None
                    language = user.language if user else None
                    try:
                        self._prepare(session, job, row, language, now, subs, slots, bookings, with_profile)
                    except Exception as exc:  # a row we cannot render must not stop the others
                        log.exception("outbox_render_failed", notification_id=row.id)
                        job.skip_reason = f"cannot render: {type(exc).__name__}: {exc}"[:500]
                        job.rendered = None
                    slot = slots.get(row.slot_id) if row.slot_id is not None else None
                    if (
                        user is not None
                        and row.kind == NotificationKind.SLOT
                        and job.rendered is not None
                        and slot is not None
                        and slot.gone_at is None
                    ):
                        quiet = QuietHours.of(user.quiet_start, user.quiet_end)
                        job.hold_until = hold_until(quiet, slot.start_at, now)
                    jobs.append(job)
        return jobs

    def _prepare(
        self,
        session: Session,
        job: Job,
        row: Notification,
        language: str | None,
        now: datetime,
        subs: dict[int, Subscription],
        slots: dict[int, Slot],
        bookings: dict[int, Booking],
        with_profile: set[int],
    ) -> None:
        if row.kind == NotificationKind.OPERATOR:
            job.rendered = render_operator(row.text, row.payload or {})
            if row.chat_id is None:
                log.warning("operator_alert", text=row.text, payload=row.payload)
                job.skip_reason = "operator alert without a chat: logged only"
            return
        if job.chat_id is None:
            job.skip_reason = "no chat to send to"
            return
        if row.text and row.kind != NotificationKind.GONE:
            job.rendered = Rendered(row.text, None, parse_mode="")
            return
        if row.kind in (NotificationKind.SLOT, NotificationKind.GONE):
            slot = slots.get(row.slot_id) if row.slot_id is not None else None
            sub = subs.get(row.subscription_id) if row.subscription_id is not None else None
            if slot is None:
                job.skip_reason = "the slot no longer exists"
                return
            alert = self._slot_alert(row, slot, sub, with_profile)
            if row.kind == NotificationKind.SLOT and alert.gone_at and (row.payload or {}).get(HELD_KEY):
                job.skip_reason = "the slot went during the person's quiet hours"
                return
            if row.kind == NotificationKind.SLOT:
                job.rendered = (
                    render_gone(alert, language, now)
                    if alert.gone_at
                    else render_slot_alert(alert, language, now)
                )
                return
            original_id = (row.payload or {}).get("alert_notification_id")
            original = session.get(Notification, int(original_id)) if original_id is not None else None
            if original is None:
                job.skip_reason = "the alert to edit no longer exists"
            elif original.status in DUE_STATUSES and (original.payload or {}).get(HELD_KEY):
                job.skip_reason = "its alert waits for the end of quiet hours, and will be dropped"
            elif original.status in (*DUE_STATUSES, NotificationStatus.SENDING):
                job.defer = True  # wait until the alert itself is settled
            elif (
                original.telegram_message_id is None
                and original.chat_id is not None
                and (original.last_error or "").startswith("delivery unconfirmed")
            ):  # probably delivered, but not editable: say it is gone in a message of its own
                gone_at = slot.gone_at or _parse_time((row.payload or {}).get("gone_at")) or now
                job.rendered = render_gone(_with_gone(alert, gone_at), language, now)
                job.chat_id = original.chat_id
            elif original.telegram_message_id is None or original.chat_id is None:
                job.skip_reason = "the alert was never delivered (or its message id is unknown)"
            else:
                gone_at = slot.gone_at or _parse_time((row.payload or {}).get("gone_at")) or now
                job.rendered = render_gone(_with_gone(alert, gone_at), language, now)
                job.edit_message_id = original.telegram_message_id
                job.chat_id = original.chat_id
            return
        if row.kind in (NotificationKind.BOOKING, NotificationKind.REMINDER):
            booking = bookings.get(row.booking_id) if row.booking_id is not None else None
            payload = row.payload or {}
            if booking is None:
                job.skip_reason = "the booking no longer exists"
                return
            if row.kind == NotificationKind.REMINDER:
                status = DAY_BEFORE if payload.get("status") == DAY_BEFORE else "reminder"
            else:
                status = str(payload.get("status") or booking.status)
            if status == DAY_BEFORE and booking.status != BookingStatus.CONFIRMED:
                job.skip_reason = "the appointment is no longer confirmed"
                return
            if status == BookingStatus.CONFIRMED and booking.start_at is not None:
                appointment = Appointment(
                    booking.id, booking.site, booking.service_id, booking.office_id, booking.start_at
                )
                job.document = (filename(appointment), appointment_ics(appointment, language or "en", now))
                remind_at = booking.start_at - timedelta(days=1)
                if remind_at > now:
                    job.day_before = (booking.id, remind_at)
            job.rendered = render_booking(
                BookingUpdate(
                    status=status,
                    site=booking.site,
                    service_id=booking.service_id,
                    office_id=booking.office_id,
                    start_at=booking.start_at,
                    site_url=self.config.site_url,
                    service_count=booking.service_count,
                    activation_deadline=booking.activation_deadline,
                    reason=payload.get("reason") or booking.error,
                ),
                language,
                now,
            )
            return
        job.skip_reason = f"unknown kind {row.kind}"

    def _slot_alert(
        self, row: Notification, slot: Slot, sub: Subscription | None, with_profile: set[int]
    ) -> SlotAlert:
        filters = Filters()
        if sub is not None:
            filters = Filters(
                office_ids=tuple(int(i) for i in sub.office_ids or ()),
                date_from=sub.date_from,
                date_to=sub.date_to,
                weekdays=tuple(int(d) for d in sub.weekdays or ()),
                time_from=sub.time_from,
                time_to=sub.time_to,
            )
        observed = _parse_time((row.payload or {}).get("observed_at"))
        seen = max(slot.last_seen_at, observed) if observed else slot.last_seen_at
        return SlotAlert(
            slot_id=slot.id,
            site=slot.site,
            service_id=slot.service_id,
            service_count=slot.service_count,
            office_id=slot.office_id,
            start_at=slot.start_at,
            first_seen_at=slot.first_seen_at,
            last_seen_at=seen,
            site_url=self.config.site_url,
            filters=filters,
            has_profile=row.user_id in with_profile,
            autobook=bool(sub.autobook) if sub is not None else bool((row.payload or {}).get("autobook")),
            gone_at=slot.gone_at,
        )

    # settling one row; every update is guarded by this run's claim
    def release(self) -> int:
        """Give back this run's claims on rows not yet on the wire (a clean stop)."""
        with self.db.transaction() as session:
            return _rowcount(
                session.execute(
                    update(Notification)
                    .where(Notification.claim_token == self.token, Notification.status.in_(DUE_STATUSES))
                    .values(claim_token=None, claimed_at=None)
                )
            )

    def mark_wire(self, notification_id: int) -> None:
        with self.db.transaction() as session:
            session.execute(
                update(Notification)
                .where(self._mine(notification_id))
                .values(status=NotificationStatus.SENDING)
            )

    def mark_refused(self, notification_id: int, error: str | None = None) -> None:
        with self.db.transaction() as session:
            values: dict[str, Any] = {"status": NotificationStatus.PENDING}
            if error is not None:
                values["last_error"] = error[:1000]
            session.execute(update(Notification).where(self._mine(notification_id)).values(**values))

    def mark_sent(self, notification_id: int, message_id: int | None, note: str | None = None) -> None:
        with self.db.transaction() as session:
            row = session.get(Notification, notification_id)
            # a "late" alert went to someone who subscribed after the slot appeared: no detection
            if (
                row is not None
                and row.kind == NotificationKind.SLOT
                and row.slot_id is not None
                and not (row.payload or {}).get("late")
                and not (row.payload or {}).get(HELD_KEY)
            ):
                slot = session.get(Slot, row.slot_id)
                if slot is not None:
                    DETECTION_LATENCY.observe(max(0.0, (utcnow() - slot.first_seen_at).total_seconds()))
            ALERTS.labels(status="sent").inc()
            session.execute(
                update(Notification)
                .where(self._mine(notification_id))
                .values(
                    status=NotificationStatus.SENT,
                    telegram_message_id=message_id,
                    sent_at=utcnow(),
                    attempts=Notification.attempts + 1,
                    claim_token=None,
                    last_error=note,
                )
            )

    def mark_retry(self, notification_id: int, error: str, attempts: int) -> bool:
        """Give the row back for a later sweep, or give up after ``max_attempts``; True if dead."""
        dead = attempts >= self.config.max_attempts
        ALERTS.labels(status="dead" if dead else "retried").inc()
        with self.db.transaction() as session:
            session.execute(
                update(Notification)
                .where(self._mine(notification_id))
                .values(
                    status=NotificationStatus.DEAD if dead else NotificationStatus.FAILED,
                    attempts=attempts,
                    last_error=error[:1000],
                    next_attempt_at=utcnow() + timedelta(seconds=self.config.backoff_s(attempts)),
                    claim_token=None,
                )
            )
        return dead

    def settle_after_error(self, notification_id: int, error: str) -> None:
        """After an unexpected error: a row already on the wire counts as delivered (as after a
        crash); one that never left is retried later."""
        with self.db.transaction() as session:
            row = session.get(Notification, notification_id)
            if row is None or row.claim_token != self.token:
                return
            if row.status == NotificationStatus.SENDING:
                row.status = NotificationStatus.SENT
                row.sent_at = utcnow()
                row.last_error = f"{UNCONFIRMED_UNREADABLE} ({error})"[:1000]
            else:
                row.status = NotificationStatus.FAILED
                row.attempts += 1
                row.last_error = error[:1000]
                row.next_attempt_at = utcnow() + timedelta(seconds=self.config.backoff_s(row.attempts))
            row.claim_token = None

    def defer(self, notification_id: int) -> None:
        with self.db.transaction() as session:
            session.execute(
                update(Notification)
                .where(self._mine(notification_id))
                .values(
                    status=NotificationStatus.PENDING,
                    next_attempt_at=utcnow() + timedelta(seconds=self.config.defer_s),
                    claim_token=None,
                )
            )

    def queue_day_before(self, job: Job) -> None:
        """The reminder the day before a confirmed appointment (once per booking)."""
        if job.day_before is None:
            return
        booking_id, remind_at = job.day_before
        with self.db.transaction() as session:
            exists = session.scalar(
                select(Notification.id).where(
                    Notification.booking_id == booking_id,
                    Notification.kind == NotificationKind.REMINDER,
                    Notification.payload["status"].as_string() == DAY_BEFORE,
                )
            )
            if exists is None:
                session.add(
                    Notification(
                        kind=NotificationKind.REMINDER,
                        user_id=job.user_id,
                        chat_id=job.chat_id,
                        booking_id=booking_id,
                        payload={"status": DAY_BEFORE},
                        next_attempt_at=remind_at,
                    )
                )

    def hold(self, notification_id: int, until: datetime) -> None:
        """Put a slot alert back until its person's quiet hours end (not an attempt)."""
        with self.db.transaction() as session:
            row = session.scalar(select(Notification).where(self._mine(notification_id)))
            if row is None:
                return
            row.status = NotificationStatus.PENDING
            row.next_attempt_at = ensure_utc(until)
            row.claim_token = None
            row.claimed_at = None
            row.payload = {**(row.payload or {}), HELD_KEY: True}

    def mark_dead(self, notification_id: int, error: str) -> None:
        with self.db.transaction() as session:
            session.execute(
                update(Notification)
                .where(self._mine(notification_id))
                .values(
                    status=NotificationStatus.DEAD,
                    attempts=Notification.attempts + 1,
                    last_error=error[:1000],
                    claim_token=None,
                )
            )

    def blocked(self, job: Job, error: str) -> int:
        """The user blocked the bot: pause their subscriptions, stop their queued messages."""
        from shared.recording import sync_targets

        with self.db.transaction() as session:
            session.execute(
                update(Notification)
                .where(self._mine(job.id))
                .values(status=NotificationStatus.DEAD, last_error=error[:1000], claim_token=None)
            )
            paused = 0
            if job.user_id is not None:
                paused = _rowcount(
                    session.execute(
                        update(Subscription)
                        .where(
                            Subscription.user_id == job.user_id,
                            Subscription.state == SubscriptionState.ACTIVE,
                        )
                        .values(state=SubscriptionState.PAUSED, updated_at=utcnow())
                    )
                )
                session.execute(
                    update(Notification)
                    .where(
                        Notification.user_id == job.user_id,
                        Notification.status.in_(DUE_STATUSES),
                        (Notification.claim_token.is_(None)) | (Notification.claim_token == self.token),
                        Notification.id != job.id,
                    )
                    .values(
                        status=NotificationStatus.DEAD,
                        last_error="the user blocked the bot",
                        claim_token=None,
                    )
                )
                if paused:
                    sync_targets(session)
        return paused


def _rowcount(result: Any) -> int:
    """Rows an UPDATE touched (``CursorResult.rowcount``; the generic ``Result`` type lacks it)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _chunks(items: list[int], size: int = 500) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _by_id(session: Session, model: Any, ids: set[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for chunk in _chunks(sorted(i for i in ids if i is not None)):
        for item in session.scalars(select(model).where(model.id.in_(chunk))):
            found[item.id] = item
    return found


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return ensure_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _with_gone(alert: SlotAlert, gone_at: datetime) -> SlotAlert:
    from dataclasses import replace

    return replace(alert, gone_at=gone_at)


def rotated(jobs: Sequence[Job]) -> list[Job]:
    """Send order: operator and booking news first, then slot alerts slot by slot, each slot's
    subscribers in a cyclic order whose start moves from slot to slot (by the golden ratio, so
    every subscriber is early about as often), then "gone" edits."""
    first = [j for j in jobs if j.kind not in (NotificationKind.SLOT, NotificationKind.GONE)]
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        if job.kind == NotificationKind.SLOT:
            groups.setdefault(job.slot_id or 0, []).append(job)
    slot_jobs: list[Job] = []
    for slot_id, group in groups.items():
        group.sort(key=lambda j: (j.subscription_id or 0, j.id))
        offset = int(((slot_id * GOLDEN_RATIO) % 1.0) * len(group))
        slot_jobs.extend(group[offset:] + group[:offset])
    gone = [j for j in jobs if j.kind == NotificationKind.GONE]
    return first + slot_jobs + gone


# --- the sender --------------------------------------------------------------------------------


@dataclass
class Sender:
    """Drains the outbox through ``bot`` (the application's bot, with its rate limiter).

    An async context manager: entering reconciles a previous run and starts the drain loop and the
    Redis wake-up listener (when a client is given); leaving stops both.
    """

    bot: Bot
    db: Database
    config: SenderConfig = field(default_factory=SenderConfig)
    redis: Any = None
    """A ``redis.asyncio.Redis`` for wake-ups; None: sweeps only."""
    stats: DrainStats = field(default_factory=DrainStats)

    def __post_init__(self) -> None:
        self.store = OutboxStore(self.db, self.config)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def __aenter__(self) -> Sender:
        await asyncio.to_thread(self.store.reconcile)
        self._stopping = False
        self._tasks = [asyncio.create_task(self._loop(), name="outbox-sender")]
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="outbox-wake-listener"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop claiming, let requests in flight finish (up to ``stop_timeout_s``), release the rest.

        Cancelling a request that already went out would leave its row ``sending`` — counted as
        delivered at the next start although it may never have reached Telegram.
        """
        self._stopping = True
        self._wake.set()
        loop_task = self._tasks[0] if self._tasks else None
        for task in self._tasks[1:]:
            task.cancel()
        if loop_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(loop_task), timeout=self.config.stop_timeout_s)
            except (TimeoutError, Exception):
                loop_task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            released = await asyncio.to_thread(self.store.release)
            if released:
                log.info("outbox_claims_released", rows=released)

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        """Redis pub/sub: any message on the wake channel starts a drain; reconnects on errors."""
        delay_s = 0.5
        while not self._stopping:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(WAKE_CHANNEL)
                    delay_s = 0.5
                    self._wake.set()  # rows queued while we were not listening
                    while not self._stopping:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._wake.set()
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("wake_listener_error", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.drain()
                wait_s = self.config.sweep_s
                next_due = await asyncio.to_thread(self.store.next_due)
                if next_due is not None:
                    wait_s = max(0.05, min(wait_s, (next_due - utcnow()).total_seconds()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_drain_failed")
                wait_s = self.config.sweep_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)

    async def drain(self) -> int:
        """Send everything due now; returns how many rows were handled.

        When a step fails (the database locked past its busy timeout), every worker is let finish
        first, then this run's claims are settled before the error goes up: otherwise the rows
        would stay claimed by a run that is still alive, and wait for the next start of the bot.
        """
        handled = 0
        try:
            while not self._stopping:
                ids = await asyncio.to_thread(self.store.claim, self.config.batch_size)
                if not ids:
                    break
                jobs = rotated(await asyncio.to_thread(self.store.load, ids))
                queue: asyncio.Queue[Job] = asyncio.Queue()
                for job in jobs:
                    queue.put_nowait(job)

                workers = max(1, min(self.config.concurrency, len(jobs)))
                results = await asyncio.gather(
                    *(self._work(queue) for _ in range(workers)), return_exceptions=True
                )
                handled += len(jobs)
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        except Exception:
            await self._settle_own_claims()
            raise
        self.stats.last_drain_at = utcnow()
        return handled

    async def _settle_own_claims(self) -> None:
        """``OutboxStore.settle_own_claims``, retried until the database answers (or we stop:
        then ``__aexit__`` releases and the next start reconciles)."""
        delay_s = 0.25
        while True:
            try:
                released, assumed = await asyncio.to_thread(self.store.settle_own_claims)
            except Exception as exc:
                if self._stopping:
                    return
                log.warning(
                    "outbox_claims_settle_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay_s
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
                continue
            if released or assumed:
                log.warning("outbox_claims_settled", released=released, assumed_delivered=assumed)
            return

    async def _work(self, queue: asyncio.Queue[Job]) -> None:
        while not queue.empty() and not self._stopping:
            job = queue.get_nowait()
            try:
                await self._deliver(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or an unreadable answer: settle the row, keep going
                log.exception("outbox_deliver_failed", notification_id=job.id)
                await asyncio.to_thread(self.store.settle_after_error, job.id, f"{type(exc).__name__}: {exc}")

    async def _deliver(self, job: Job) -> None:
        store = self.store
        if job.defer:
            self.stats.deferred += 1
            await asyncio.to_thread(store.defer, job.id)
            return
        if job.hold_until is not None:
            log.info("alert_held_for_quiet_hours", notification_id=job.id)
            await asyncio.to_thread(store.hold, job.id, job.hold_until)
            return
        if job.rendered is None or job.skip_reason is not None:
            self.stats.skipped += 1
            await asyncio.to_thread(store.mark_sent, job.id, None, job.skip_reason)
            return
        attempts = job.attempts
        error = ""
        hook = WireHook(
            on_wire=lambda: asyncio.to_thread(store.mark_wire, job.id),
            on_refused=lambda: asyncio.to_thread(store.mark_refused, job.id),
        )
        for inline in range(self.config.inline_attempts):
            token = CURRENT_SEND.set(hook)
            try:
                message_id = await self._call(job)
            except RetryAfter as exc:
                wait_s = _retry_after_s(exc) + 0.1
                error = f"429 retry after {wait_s:.1f}s"
            except Forbidden as exc:
                self.stats.blocked += 1
                paused = await asyncio.to_thread(store.blocked, job, str(exc))
                log.info("user_blocked_bot", user_id=job.user_id, subscriptions_paused=paused)
                return
            except BadRequest as exc:
                await self._bad_request(job, exc)
                return
            except (TimedOut, NetworkError) as exc:  # 5xx, timeouts, connection trouble
                wait_s = self.config.backoff_s(inline)
                error = f"{type(exc).__name__}: {exc}"
            except TelegramError as exc:  # 401/404/409: nothing a retry fixes soon
                wait_s = self.config.backoff_s(inline + 2)
                error = f"{type(exc).__name__}: {exc}"
            else:
                self.stats.sent += 1
                await asyncio.to_thread(store.mark_sent, job.id, message_id)
                await self._after_sent(job)
                return
            finally:
                CURRENT_SEND.reset(token)
            attempts += 1
            await asyncio.to_thread(store.mark_refused, job.id, error)
            log.info("telegram_send_retry", notification_id=job.id, error=error, wait_s=round(wait_s, 2))
            if (
                self._stopping
                or attempts >= self.config.max_attempts
                or inline == self.config.inline_attempts - 1
            ):
                break
            await asyncio.sleep(wait_s)
        self.stats.retried += 1
        if await asyncio.to_thread(store.mark_retry, job.id, error, attempts):
            self.stats.dead += 1
            log.warning("notification_dead", notification_id=job.id, error=error)

    async def _after_sent(self, job: Job) -> None:
        """The calendar file and the day-before reminder of a confirmed appointment: extras, so a
        failure is logged and /bookings offers the file again."""
        try:
            if job.day_before is not None:
                await asyncio.to_thread(self.store.queue_day_before, job)
            if job.document is not None and job.chat_id is not None:
                name, content = job.document
                await self.bot.send_document(job.chat_id, document=content, filename=name)
        except Exception as exc:
            log.warning("booking_extras_failed", notification_id=job.id, error=type(exc).__name__)

    async def _call(self, job: Job) -> int | None:
        rendered = job.rendered
        assert rendered is not None and job.chat_id is not None
        parse_mode = rendered.parse_mode or None
        if job.edit_message_id is not None:
            edited = await self.bot.edit_message_text(
                rendered.text,
                chat_id=job.chat_id,
                message_id=job.edit_message_id,
                parse_mode=parse_mode,
                reply_markup=rendered.markup,
                link_preview_options=NO_PREVIEW,
            )
            return edited.message_id if isinstance(edited, Message) else job.edit_message_id
        message = await self.bot.send_message(
            job.chat_id,
            rendered.text,
            parse_mode=parse_mode,
            reply_markup=rendered.markup,
            link_preview_options=NO_PREVIEW,
        )
        return message.message_id

    async def _bad_request(self, job: Job, exc: BadRequest) -> None:
        text = str(exc).lower()
        if job.edit_message_id is not None and (
            "not modified" in text or "message to edit not found" in text
        ):
            self.stats.sent += 1
            await asyncio.to_thread(self.store.mark_sent, job.id, job.edit_message_id, f"edit: {exc}")
            return
        self.stats.dead += 1
        log.warning("notification_rejected", notification_id=job.id, error=str(exc))
        await asyncio.to_thread(self.store.mark_dead, job.id, f"BadRequest: {exc}")


def _retry_after_s(exc: RetryAfter) -> float:
    value = exc.retry_after  # a timedelta: ``bot/__init__`` opts into PTB_TIMEDELTA
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


__all__ = [
    "CURRENT_SEND",
    "UNCONFIRMED",
    "UNCONFIRMED_AFTER_ERROR",
    "UNCONFIRMED_UNREADABLE",
    "WAKE_CHANNEL",
    "DrainStats",
    "Job",
    "OutboxRequest",
    "OutboxStore",
    "Sender",
    "SenderConfig",
    "WireHook",
    "rotated",
]
