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
  half a booking profile.
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


def purge(session: Session, now: datetime, retention_days: int) -> PurgeReport:
    """Delete history older than ``retention_days`` and end subscriptions past their window."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    now = ensure_utc(now, "now")
    cutoff = now - timedelta(days=retention_days)

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
    forgotten = session.execute(delete(Conversation).where(Conversation.updated_at < now - CONVERSATION_KEEP))
    session.flush()
    report = PurgeReport(
        checks_deleted, slots_deleted, slots_kept, ended, queued, int(getattr(forgotten, "rowcount", 0) or 0)
    )
    log.info("retention_purge", retention_days=retention_days, **vars(report))
    return report


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


__all__ = ["CONVERSATION_KEEP", "ENDED_REASON", "PurgeReport", "purge"]
