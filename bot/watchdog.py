"""The bot's watch on the watchers: one operator alert when a site has been blocked for long.

A layout change raises its own alert where checks are recorded (``shared.recording``); a site that
keeps answering 429/503, keeps asking for captchas or times out does not — each check is a normal,
backed-off failure. Here, periodically: if every active target of a site is in trouble (backing
off, blocked, captcha) and none has succeeded for ``blocked_after``, the operators get one alert per
trouble episode (deduplicated on the site's last success).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import NotificationKind, Target, TargetState
from shared.db.outbox import enqueue_notifications
from shared.logging import get_logger

TROUBLE_STATES = frozenset({TargetState.BACKING_OFF, TargetState.BLOCKED, TargetState.CAPTCHA})

log = get_logger("mta.bot.watchdog")


def queue_site_blocked_alerts(
    session: Session, operator_chat_ids: Sequence[int], *, blocked_after: timedelta, now: datetime
) -> int:
    """Queue "site blocked" operator alerts that are due; returns how many rows were new."""
    by_site: dict[str, list[Target]] = {}
    for target in session.scalars(select(Target).where(Target.active.is_(True))):
        by_site.setdefault(target.site, []).append(target)
    rows = []
    for site, targets in sorted(by_site.items()):
        if not all(t.state in TROUBLE_STATES for t in targets):
            continue
        successes = [t.last_success_at for t in targets if t.last_success_at is not None]
        since = max(successes) if successes else min(t.created_at for t in targets)
        if now - since < blocked_after:
            continue
        minutes = int((now - since).total_seconds() // 60)
        states = ", ".join(sorted({str(t.state) for t in targets}))
        last_error = next((t.last_error for t in targets if t.last_error), None)
        text = (
            f"MTA operator alert: no check of the {site} site has succeeded for {minutes} minutes "
            f"({len(targets)} targets; states: {states}). Last error: {last_error or 'none recorded'}"
        )
        payload = {
            "reason": "site_blocked",
            "site": site,
            "since": since.isoformat(),
            "targets": len(targets),
        }
        chats: list[int | None] = list(operator_chat_ids) or [None]
        for chat in chats:
            rows.append(
                {
                    "kind": NotificationKind.OPERATOR,
                    "chat_id": chat,
                    "text": text,
                    "payload": payload,
                    "next_attempt_at": now,
                    "dedup_key": f"operator:site_blocked:{site}:{since.isoformat()}:{chat or 'console'}",
                }
            )
    inserted = len(enqueue_notifications(session, rows)) if rows else 0
    if inserted:
        log.warning("site_blocked_alert", alerts=inserted)
    return inserted


__all__ = ["TROUBLE_STATES", "queue_site_blocked_alerts"]
