"""An answer from Telegram that cannot be read: the alert counts as delivered (never resent), is
recorded as such (not as "the bot stopped"), and its "gone" notice still reaches the person."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.outbox_store import UNCONFIRMED, UNCONFIRMED_UNREADABLE
from bot.testing import FakeBotApi
from bot.testing.outbox import add_slot, add_users, queue_gone, queue_slot_alerts
from shared.db.database import Database
from shared.db.models import Notification, NotificationKind, NotificationStatus
from shared.domain import utcnow
from shared.settings import Settings
from tests.bot.conftest import run_bot, until
from tests.bot.test_sender import _settled


class _UnreadableAnswers:
    """The real bot, except that ``send_message`` fails after Telegram took the message (as when
    its answer cannot be parsed)."""

    def __init__(self, bot: Any) -> None:
        self._bot = bot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bot, name)

    async def send_message(self, *args: Any, **kwargs: Any) -> Any:
        await self._bot.send_message(*args, **kwargs)
        raise ValueError("unreadable answer")


def test_an_unreadable_answer_is_delivered_unconfirmed_and_the_gone_notice_still_arrives(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected: Telegram takes the alert but its answer cannot be read (the bot keeps running);
    then the slot goes. Asserted: one alert on the wire, recorded sent with "Telegram's answer
    could not be read", not "the bot stopped"; the gone notice, which cannot edit an alert whose
    message id is unknown, arrives as a message of its own. (Tried: with the old handling the
    row says "the bot stopped while Telegram was answering" and the gone notice is skipped.)"""
    sub_ids = add_users(bot_db, [601], with_profile=True)
    slot_id = add_slot(bot_db, seen_at=utcnow() - timedelta(minutes=5))

    async def body(application: Any) -> None:
        telegram = application.bot_data["sender"].notifiers["telegram"]  # bot.telegram_notifier
        sender = application.bot_data["sender"]
        real = telegram.bot
        telegram.bot = _UnreadableAnswers(real)
        await asyncio.to_thread(queue_slot_alerts, bot_db, slot_id, sub_ids)
        sender.wake()
        await until(_settled(bot_db, 1))
        telegram.bot = real
        await asyncio.to_thread(queue_gone, bot_db, slot_id)
        sender.wake()
        await until(_settled(bot_db, 2))

    run_bot(bot_settings, bot_db, body)
    with bot_db.transaction() as session:
        alert = session.scalars(select(Notification).where(Notification.kind == NotificationKind.SLOT)).one()
        assert alert.status == NotificationStatus.SENT and alert.telegram_message_id is None
        assert (alert.last_error or "").startswith(UNCONFIRMED_UNREADABLE)
        assert UNCONFIRMED not in (alert.last_error or "")
    sent = fake_telegram.sent(601, "sendMessage")
    assert len(sent) == 2, sent
    assert "Gone after" in str(sent[1]["params"]["text"])
    assert not fake_telegram.sent(601, "editMessageText")
