"""A notice to every user (a maintenance, a change): one outbox row per person, sent by the bot's
sender like any alert, so Telegram's flood limits and the retries apply to it as well."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import NotificationKind, User
from shared.db.outbox import enqueue_notifications

NOTICE_REASON = "notice"


def queue_notice(session: Session, text: str, now: datetime) -> tuple[str, int]:
    """Queue ``text`` for every user; returns (the notice's id, rows queued). The same text queued
    twice within a minute is one notice (a repeated click sends nothing twice)."""
    notice_id = hashlib.sha256(f"{now:%Y%m%d%H%M}\0{text}".encode()).hexdigest()[:16]
    rows = [
        {
            "kind": NotificationKind.REMINDER,
            "user_id": user_id,
            "chat_id": user_id,
            "text": text,
            "payload": {"reason": NOTICE_REASON, "notice_id": notice_id},
            "dedup_key": f"{NOTICE_REASON}:{notice_id}:{user_id}",
            "next_attempt_at": now,
        }
        for user_id in session.scalars(select(User.id).order_by(User.id))
    ]
    return notice_id, len(enqueue_notifications(session, rows)) if rows else 0


__all__ = ["NOTICE_REASON", "queue_notice"]
