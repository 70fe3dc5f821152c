"""Retention: forget old history, and end subscriptions whose date window is over.

``purge`` runs in the caller's transaction (schedule it once a day or so):
- checks started before the cutoff are deleted;
- slot episodes that ended (or were last seen) before the cutoff are deleted, except those a
  notification still waiting to be sent (pending/failed) or an active booking refers to — the
  sender and the booking flow still need them. Deleting a slot deletes its old, settled alert rows
  with it (``ON DELETE CASCADE``): they are history of the same age;
- active subscriptions whose ``date_to`` lies before today (Europe/Berlin) cannot match anything
  any more: they are marked done and their owner gets one notice (a ``REMINDER`` outbox row with a
  ready text and ``payload.reason == "subscription_ended"``; dedup key per subscription, so a second
  run never notifies twice);
- conversations the bot kept (``conversations``) untouched for ``CONVERSATION_KEEP`` are deleted:
  the bot forgets a conversation after an hour's silence anyway, and an abandoned one may hold
  half a booking profile;
- with ``inactive_user_days``: a person with no active subscription or booking whose last sign of
  life (joining, a subscription or booking changed, a conversation) is older than that is warned
  once (a ``REMINDER`` row, ``payload.reason == "inactive_user"``), and erased with their profile,
  subscriptions and bookings ``inactive_warning_days`` after the warning if nothing happened since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from shared.catalog import get_catalog
from shared.db.models import (
    ACTIVE_BOOKING_STATUSES,
    Booking,
    Check,
    Conversation,
    Notification,
    NotificationKind,
    NotificationStatus,
    Slot,
    Subscription,
    SubscriptionState,
    User,
)
from shared.db.outbox import enqueue_notifications
from shared.domain import SITE_TIMEZONE, ensure_utc
from shared.logging import get_logger

log = get_logger(__name__)

UNSETTLED = (NotificationStatus.PENDING, NotificationStatus.FAILED)
ENDED_REASON = "subscription_ended"
_BATCH = 500
CONVERSATION_KEEP = timedelta(days=1)
"""Well past the bot's idle timeout, so no conversation in use is ever deleted under it."""

_ENDED_TEXT = {
    "de": (
        "Ihr Abo für „{service}“ ist beendet: der gewünschte Zeitraum endete am {date}. "
        "Legen Sie mit /start ein neues an, wenn Sie weiter suchen möchten."
    ),
    "en": (
        "Your watch for “{service}” has ended: its date range ended on {date}. "
        "Use /start to set up a new one if you are still looking."
    ),
}


@dataclass(frozen=True)
class PurgeReport:
    checks_deleted: int
    slots_deleted: int
    slots_kept: int
    """Old slot episodes kept because an unsent notification or an active booking refers to them."""
    subscriptions_ended: int
    notifications_queued: int
    conversations_deleted: int = 0
    users_warned: int = 0
    users_erased: int = 0
    bookings_deleted: int = 0
    """Settled bookings (not holding, reserved or preconfirmed) whose appointment and last change
    are both older than the retention: their encrypted process id and key serve nobody any more."""


def _service_name(site: str, service_id: int) -> str:
    try:
        service = get_catalog(site).service(service_id)
    except KeyError:
        service = None
    return service.name if service else f"#{service_id}"


def _delete_in_batches(session: Session, model: type[Check] | type[Slot], ids: list[int]) -> int:
    deleted = 0
    for i in range(0, len(ids), _BATCH):
        chunk = ids[i : i + _BATCH]
        result = session.execute(delete(model).where(model.id.in_(chunk)))
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


def purge(
    session: Session,
    now: datetime,
    retention_days: int,
    *,
    inactive_user_days: int = 0,
    inactive_warning_days: int = 14,
) -> PurgeReport:
    """Delete history older than ``retention_days``, end subscriptions past their window, and
    (``inactive_user_days`` > 0) warn, then erase, people who stopped using MTA."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    now = ensure_utc(now, "now")
    cutoff = now - timedelta(days=retention_days)

    settled_long_ago = (
        Booking.status.not_in(ACTIVE_BOOKING_STATUSES),
        Booking.updated_at < cutoff,
        or_(Booking.start_at.is_(None), Booking.start_at < cutoff),
    )
    bookings_gone = session.execute(delete(Booking).where(*settled_long_ago))

    check_ids = list(session.scalars(select(Check.id).where(Check.started_at < cutoff)))
    checks_deleted = _delete_in_batches(session, Check, check_ids)

    old = func.coalesce(Slot.gone_at, Slot.last_seen_at) < cutoff
    referenced = or_(
        select(Notification.id)
        .where(Notification.slot_id == Slot.id, Notification.status.in_(UNSETTLED))
        .exists(),
        select(Booking.id)
        .where(Booking.slot_id == Slot.id, Booking.status.in_(ACTIVE_BOOKING_STATUSES))
        .exists(),
    )
    slot_ids = list(session.scalars(select(Slot.id).where(old, ~referenced)))
    slots_kept = int(session.scalar(select(func.count()).select_from(Slot).where(old, referenced)) or 0)
    slots_deleted = _delete_in_batches(session, Slot, slot_ids)

    ended, queued = _end_expired_subscriptions(session, now)
    warned = erased = 0
    if inactive_user_days > 0:  # before the conversations go: a recent one is a sign of life
        warned, erased = purge_inactive_users(session, now, inactive_user_days, inactive_warning_days)
    forgotten = session.execute(delete(Conversation).where(Conversation.updated_at < now - CONVERSATION_KEEP))
    session.flush()
    report = PurgeReport(
        checks_deleted,
        slots_deleted,
        slots_kept,
        ended,
        queued,
        int(getattr(forgotten, "rowcount", 0) or 0),
        warned,
        erased,
        int(getattr(bookings_gone, "rowcount", 0) or 0),
    )
    log.info("retention_purge", retention_days=retention_days, **vars(report))
    return report


INACTIVE_REASON = "inactive_user"
_INACTIVE_TEXT = {
    "de": (
        "Sie haben MTA seit {days} Tagen nicht genutzt und kein aktives Abo. Ihre Daten (auch Ihr "
        "Buchungsprofil) werden in {warn} Tagen gelöscht. Um sie zu behalten, legen Sie mit /start "
        "ein Abo an."
    ),
    "en": (
        "You have not used MTA for {days} days and have no active watch. Your data (your booking "
        "profile too) will be erased in {warn} days. To keep it, set up a watch with /start."
    ),
}


def _last_activity(session: Session) -> dict[int, datetime]:
    """Each user's newest sign of life: joining, a subscription or booking changed, a conversation."""
    latest: dict[int, datetime] = {}
    for who, column in (
        (User.id, User.created_at),
        (Subscription.user_id, Subscription.updated_at),
        (Booking.user_id, Booking.updated_at),
        (Conversation.user_id, Conversation.updated_at),
    ):
        for user_id, at in session.execute(select(who, func.max(column)).group_by(who)):
            if at is not None and (user_id not in latest or ensure_utc(at) > latest[user_id]):
                latest[user_id] = ensure_utc(at)
    return latest


def purge_inactive_users(
    session: Session, now: datetime, inactive_days: int, warn_days: int
) -> tuple[int, int]:
    """Warn people inactive for ``inactive_days`` (once per quiet spell), erase those warned
    ``warn_days`` ago who stayed quiet; returns (warned, erased)."""
    busy = set(
        session.scalars(select(Subscription.user_id).where(Subscription.state == SubscriptionState.ACTIVE))
    ) | set(session.scalars(select(Booking.user_id).where(Booking.status.in_(ACTIVE_BOOKING_STATUSES))))
    warnings: dict[int, datetime] = {}
    for user_id, at in session.execute(
        select(Notification.user_id, func.max(Notification.created_at))
        .where(Notification.payload["reason"].as_string() == INACTIVE_REASON)
        .group_by(Notification.user_id)
    ):
        if user_id is not None and at is not None:
            warnings[int(user_id)] = ensure_utc(at)
    languages = {user_id: language for user_id, language in session.execute(select(User.id, User.language))}
    notices, doomed = [], []
    for user_id, last in _last_activity(session).items():
        if user_id in busy or last >= now - timedelta(days=inactive_days):
            continue
        warned_at = warnings.get(user_id)
        if warned_at is None or warned_at < last:  # not yet warned in this quiet spell
            template = _INACTIVE_TEXT.get((languages.get(user_id) or "de")[:2], _INACTIVE_TEXT["de"])
            notices.append(
                {
                    "kind": NotificationKind.REMINDER,
                    "user_id": user_id,
                    "chat_id": user_id,
                    "text": template.format(days=inactive_days, warn=warn_days),
                    "payload": {"reason": INACTIVE_REASON, "last_activity": last.isoformat()},
                    "dedup_key": f"{INACTIVE_REASON}:{user_id}:{last:%Y%m%dT%H%M%S}",
                    "next_attempt_at": now,
                    "created_at": now,  # when warned: the erasure counts from here
                }
            )
        elif warned_at < now - timedelta(days=warn_days):
            doomed.append(user_id)
    warned = len(enqueue_notifications(session, notices)) if notices else 0
    for i in range(0, len(doomed), _BATCH):  # profile, subscriptions, bookings, conversations go with them
        session.execute(delete(User).where(User.id.in_(doomed[i : i + _BATCH])))
    if warned or doomed:
        log.info("inactive_users", warned=warned, erased=len(doomed))
    return warned, len(doomed)


def _end_expired_subscriptions(session: Session, now: datetime) -> tuple[int, int]:
    today = now.astimezone(SITE_TIMEZONE).date()
    rows = session.execute(
        select(Subscription, User.language)
        .join(User, User.id == Subscription.user_id)
        .where(
            Subscription.state == SubscriptionState.ACTIVE,
            Subscription.date_to.is_not(None),
            Subscription.date_to < today,
        )
        .order_by(Subscription.id)
        .with_for_update()
    ).all()
    notices = []
    for sub, language in rows:
        sub.state = SubscriptionState.DONE
        sub.updated_at = now
        assert sub.date_to is not None
        template = _ENDED_TEXT.get((language or "de")[:2], _ENDED_TEXT["de"])
        notices.append(
            {
                "kind": NotificationKind.REMINDER,
                "subscription_id": sub.id,
                "user_id": sub.user_id,
                "chat_id": sub.user_id,
                "text": template.format(
                    service=_service_name(sub.site, sub.service_id), date=sub.date_to.strftime("%d.%m.%Y")
                ),
                "payload": {
                    "reason": ENDED_REASON,
                    "subscription_id": sub.id,
                    "service_id": sub.service_id,
                    "date_to": sub.date_to.isoformat(),
                },
                "dedup_key": f"{ENDED_REASON}:{sub.id}",
                "next_attempt_at": now,
            }
        )
    queued = len(enqueue_notifications(session, notices)) if notices else 0
    return len(rows), queued


__all__ = [
    "CONVERSATION_KEEP",
    "ENDED_REASON",
    "INACTIVE_REASON",
    "PurgeReport",
    "purge",
    "purge_inactive_users",
]
