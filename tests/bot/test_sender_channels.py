"""The outbox drain is channel-independent: each row goes to its channel's ``Notifier`` (here the
``FakeNotifier`` of ``shared.notify``), and each failure type gets its one policy."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.outbox_store import SenderConfig
from bot.sender import Sender
from bot.testing.outbox import add_slot, add_users, queue_slot_alerts
from shared.db.database import Database
from shared.db.models import Notification, NotificationChannel, NotificationKind, NotificationStatus, User
from shared.db.outbox import enqueue_notification
from shared.domain import utcnow
from shared.notify import FakeNotifier, Rejected, RetryLater


def test_each_row_goes_through_its_channels_notifier_with_its_failure_policy(bot_db: Database) -> None:
    """Two Telegram rows and one e-mail row of one slot: the e-mail row reaches the e-mail notifier
    with the person's address and the alert as subject, after one ``RetryLater`` retried in the same
    drain; a ``Rejected`` Telegram row is dead, the other sent with the notifier's id; a channel
    without a notifier is settled as skipped, not sent anywhere. Tried: routing every row to
    Telegram (the address check fails) and treating ``Rejected`` as retry (the row stays due)."""
    sub_ids = add_users(bot_db, [8101, 8102])
    slot_id = add_slot(bot_db)
    queue_slot_alerts(bot_db, slot_id, sub_ids)
    with bot_db.transaction() as session:
        user = session.get(User, 8101)
        assert user is not None
        user.alert_email = "x@example.org"
        for channel in (NotificationChannel.EMAIL, "pigeon"):
            enqueue_notification(
                session,
                subscription_id=sub_ids[0],
                user_id=8101,
                slot_id=slot_id,
                episode=1,
                kind=NotificationKind.SLOT,
                channel=channel,
                chat_id=None if channel == NotificationChannel.EMAIL else 8101,
                payload={},
                next_attempt_at=utcnow(),
            )
    telegram = FakeNotifier("telegram", failures=[Rejected("BadRequest: chat not found")])
    email = FakeNotifier("email", failures=[RetryLater("SMTP server away", wait_s=0.0)])
    sender = Sender(None, bot_db, SenderConfig(), notifiers={"telegram": telegram, "email": email})
    assert asyncio.run(sender.drain()) == 4

    assert [m.recipient for m in email.sent] == ["x@example.org"]
    assert email.sent[0].subject.startswith("🔔 Free appointment!")
    assert len(telegram.sent) == 1 and telegram.sent[0].recipient in ("8101", "8102")
    with bot_db.transaction() as session:
        rows = {(r.channel, r.chat_id): r for r in session.scalars(select(Notification))}
        by_status = sorted((str(r.channel), str(r.status)) for r in rows.values())
        assert by_status == [
            ("email", NotificationStatus.SENT),
            ("pigeon", NotificationStatus.SENT),
            ("telegram", NotificationStatus.DEAD),
            ("telegram", NotificationStatus.SENT),
        ]
        sent_telegram = rows[("telegram", int(telegram.sent[0].recipient))]
        assert sent_telegram.telegram_message_id == 1
        assert rows[("pigeon", 8101)].last_error == "no pigeon channel configured"
