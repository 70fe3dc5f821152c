"""The outbox store: claims, loads and settles ``notifications`` rows for one sender run.

Synchronous database work only (the sender, ``bot.sender``, runs it in threads); every update of a
row is guarded by this run's ``claim_token``. The states a row walks and why (claimed, ``sending``
right before its request leaves, then ``sent``, a retry time, or ``dead``) are described in
``bot.sender``. Loading a row renders it in its reader's language, in the transaction that read it.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.alerts import (
    DAY_BEFORE,
    BookingNotice,
    BookingUpdate,
    Filters,
    Rendered,
    SlotAlert,
    render_booking,
    render_booking_notice,
    render_gone,
    render_operator,
    render_slot_alert,
)
from bot.calendar import Appointment, appointment_ics, filename
from bot.metrics import ALERTS, DETECTION_LATENCY
from bot.quiet import HELD_KEY, QuietHours, hold_until
from bot.swaps import is_swap, render_swap
from shared.booking import MAIL_CAP, SubscriberNotice
from shared.db.database import Database
from shared.db.models import (
    Booking,
    BookingProfile,
    BookingStatus,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
    Slot,
    Subscription,
    SubscriptionState,
    User,
)
from shared.domain import ensure_utc, utcnow
from shared.logging import get_logger
from shared.notify import Outgoing
from shared.settings import Settings

UNCONFIRMED = "delivery unconfirmed: the bot stopped while Telegram was answering; not resent"
UNCONFIRMED_AFTER_ERROR = "delivery unconfirmed: the database refused its result; not resent"
UNCONFIRMED_UNREADABLE = "delivery unconfirmed: Telegram's answer could not be read; not resent"
"""The request left and an answer came, but not one we could use (the bot did not stop): without a
message id the alert cannot be edited, so its "gone" notice is sent as a message of its own."""
DUE_STATUSES = (NotificationStatus.PENDING, NotificationStatus.FAILED)
_TAGS = re.compile(r"<[^>]+>")

log = get_logger("mta.bot.outbox_store")


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
    operator_console: bool = False
    """Operator alerts without a chat go to the ``console`` channel (``mta up`` without a bot)
    instead of the log only."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderConfig:
        return cls(sweep_s=settings.outbox_sweep_s, site_url=settings.site_url)

    def backoff_s(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, attempt))))


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
    channel: str = NotificationChannel.TELEGRAM.value
    recipient: str | None = None
    """The e-mail address of an e-mail row (personal data: never logged); Telegram uses ``chat_id``."""

    def outgoing(self) -> Outgoing:
        """The message for the row's ``Notifier``."""
        assert self.rendered is not None
        if self.channel == NotificationChannel.EMAIL:
            assert self.recipient is not None
            recipient = self.recipient
        else:  # a chat; none for the console
            recipient = str(self.chat_id) if self.chat_id is not None else ""
        lines = [_TAGS.sub("", line).strip() for line in self.rendered.text.splitlines()]
        return Outgoing(
            notification_id=self.id,
            recipient=recipient,
            subject=" — ".join(html.unescape(line) for line in lines[:2] if line),
            text=self.rendered.text,
            html=self.rendered.parse_mode == "HTML",
            edit_of=self.edit_message_id,
            markup=self.rendered.markup,
            attachment=self.document,
        )


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
                        channel=str(row.channel),
                    )
                    user = users.get(row.user_id) if row.user_id is not None else None
                    language = user.language if user else None
                    try:
                        if job.channel == NotificationChannel.EMAIL:
                            self._prepare_email(job, row, user, language, now, subs, slots, with_profile)
                        else:
                            self._prepare(
                                session, job, row, language, now, subs, slots, bookings, with_profile
                            )
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

    def _prepare_email(
        self,
        job: Job,
        row: Notification,
        user: User | None,
        language: str | None,
        now: datetime,
        subs: dict[int, Subscription],
        slots: dict[int, Slot],
        with_profile: set[int],
    ) -> None:
        """An e-mail row: a slot alert to the person's verified address. A mail cannot be edited,
        so a slot that went before its mail left is skipped, and no "gone" mail follows a sent one
        (the recording queues "gone" rows for Telegram only)."""
        if user is None or not user.alert_email:
            job.skip_reason = "no alert e-mail address (removed)"
            return
        slot = slots.get(row.slot_id) if row.slot_id is not None else None
        if row.kind != NotificationKind.SLOT or slot is None:
            job.skip_reason = "e-mail carries slot alerts only"
            return
        sub = subs.get(row.subscription_id) if row.subscription_id is not None else None
        alert = self._slot_alert(row, slot, sub, with_profile)
        if alert.gone_at is not None:
            job.skip_reason = "the slot went before the mail left"
            return
        job.rendered = render_slot_alert(alert, language, now)
        job.recipient = user.alert_email

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
            if row.chat_id is None and self.config.operator_console:
                job.channel = "console"
            elif row.chat_id is None:
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
        notice = _booking_notice(session, row, subs)
        if notice is not None:
            job.rendered = render_booking_notice(notice, language)
            return
        if row.kind == NotificationKind.BOOKING and is_swap(row.payload):  # an earlier date
            job.rendered = render_swap(row.payload or {}, language)
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
            # a "late" alert went to someone who subscribed after the slot appeared: no detection;
            # the metric is "accepted by Telegram", so an alert's e-mail copy is not counted again
            if (
                row is not None
                and row.kind == NotificationKind.SLOT
                and row.channel == NotificationChannel.TELEGRAM
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


def _booking_notice(
    session: Session, row: Notification, subs: dict[int, Subscription]
) -> BookingNotice | None:
    """A reminder row the worker queued because an autobook could not start (``payload["reason"]``
    a ``shared.booking.SubscriberNotice``), with the person's label when it was for a family member."""
    payload = row.payload or {}
    if row.kind != NotificationKind.REMINDER or payload.get("reason") not in set(SubscriberNotice):
        return None
    sub = subs.get(row.subscription_id) if row.subscription_id is not None else None
    profile = session.get(BookingProfile, sub.profile_id) if sub is not None and sub.profile_id else None
    return BookingNotice(
        reason=SubscriberNotice(payload["reason"]),
        site=str(payload.get("site") or (sub.site if sub is not None else "munich")),
        service_id=int(payload.get("service_id") or (sub.service_id if sub is not None else 0)),
        cap=int(payload.get("cap") or MAIL_CAP),
        person=profile.label if profile is not None else None,
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return ensure_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _with_gone(alert: SlotAlert, gone_at: datetime) -> SlotAlert:
    return replace(alert, gone_at=gone_at)


__all__ = [
    "DUE_STATUSES",
    "UNCONFIRMED",
    "UNCONFIRMED_AFTER_ERROR",
    "UNCONFIRMED_UNREADABLE",
    "Job",
    "OutboxStore",
    "SenderConfig",
]
