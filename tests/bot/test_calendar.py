"""A confirmed appointment's calendar: the .ics file after "confirmed", the reminder the day before,
and /bookings offering the file again; through the real Application (sender and conversations)
against the fake Bot API."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import redis as sync_redis
from sqlalchemy import select, update

from bot.alerts import DAY_BEFORE
from bot.i18n import SUPPORTED_LANGUAGES, translator
from bot.services import HINTED_LANGUAGES, service_table
from bot.testing import FakeBotApi
from bot.testing.outbox import add_users
from shared.catalog import get_catalog
from shared.contracts import WAKE_CHANNEL
from shared.db.database import Database
from shared.db.models import Booking, BookingStatus, Notification, NotificationKind, NotificationStatus
from shared.db.outbox import enqueue_notification
from shared.domain import DEFAULT_SITE, utcnow
from shared.settings import Settings
from tests.bot.conftest import UserChat, run_bot, until

REISEPASS = 1063453
PASING = 54261


def _documents(api: FakeBotApi, chat_id: int) -> list[dict[str, Any]]:
    return [r["params"] for r in api.sent(chat_id, "sendDocument")]


def _ics(params: dict[str, Any]) -> str:
    content = params["document"]["content"]
    return bytes(content).decode("utf-8").replace("\r\n ", "")


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_confirmed_booking_brings_a_calendar_file_a_reminder_and_bookings_offers_it_again(
    language: str, bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """A "confirmed" booking update is sent with an .ics document (the service with the reader's hint,
    the office's address, the start in UTC, the catalogue's duration, an alarm a day before); a
    reminder row is queued for a day before the start, once; when due it says "tomorrow" in the
    person's language; /bookings shows a Calendar button that sends the file again, with its caption
    in that language. Tried: no document after the message (fails), no reminder queued (fails), and
    the caption in English only (fails for de, ru, uk, tr)."""
    _ = translator(language)
    user_id = 9400 + SUPPORTED_LANGUAGES.index(language)
    add_users(bot_db, [user_id], language=language, with_profile=True)
    start = (utcnow() + timedelta(days=4)).replace(hour=8, minute=30, second=0, microsecond=0)
    with bot_db.transaction() as session:
        booking = Booking(
            user_id=user_id,
            site=DEFAULT_SITE,
            service_id=REISEPASS,
            office_id=PASING,
            start_at=start,
            status=BookingStatus.CONFIRMED,
            process_id="123456",
            auth_key="abcdef",
        )
        session.add(booking)
        session.flush()
        booking_id = booking.id
        enqueue_notification(
            session,
            kind=NotificationKind.BOOKING,
            user_id=user_id,
            chat_id=user_id,
            booking_id=booking_id,
            payload={"status": "confirmed"},
        )
    office = get_catalog().office(PASING)
    assert office is not None
    hint = service_table()[REISEPASS].hints.get(language) if language in HINTED_LANGUAGES else None
    title = f"Reisepass ({hint})" if hint else "Reisepass"

    def reminder() -> Notification | None:
        with bot_db.transaction() as session:
            row = session.scalar(
                select(Notification).where(
                    Notification.booking_id == booking_id, Notification.kind == NotificationKind.REMINDER
                )
            )
            if row is not None:
                session.expunge(row)
            return row

    async def body(application: Any) -> None:
        await until(lambda: len(_documents(fake_telegram, user_id)) == 1)
        texts = fake_telegram.texts(user_id)
        assert any(_("Your appointment is confirmed.") in t for t in texts)
        ics = _ics(_documents(fake_telegram, user_id)[0])
        assert f"SUMMARY:{title}" in ics
        assert "Landsberger Straße 486\\, 81241 München" in ics
        assert f"DTSTART:{start:%Y%m%dT%H%M%SZ}" in ics
        assert f"DTEND:{start + timedelta(minutes=15):%Y%m%dT%H%M%SZ}" in ics
        assert "TRIGGER:-P1D" in ics and "Erika" not in ics
        await until(lambda: reminder() is not None)
        row = reminder()
        assert row is not None and row.status == NotificationStatus.PENDING
        assert row.next_attempt_at == start - timedelta(days=1)
        assert (row.payload or {}).get("status") == DAY_BEFORE
        # the day before: the row comes due
        with bot_db.transaction() as session:
            session.execute(
                update(Notification).where(Notification.id == row.id).values(next_attempt_at=utcnow())
            )
        client = sync_redis.Redis.from_url(bot_settings.redis_url)
        client.publish(WAKE_CHANNEL, "1")
        client.close()
        tomorrow = _("Your appointment is tomorrow. Bring what the city's confirmation e-mail asks for.")
        await until(lambda: any(tomorrow in t for t in fake_telegram.texts(user_id)))
        with bot_db.transaction() as session:
            count = len(
                session.scalars(
                    select(Notification.id).where(
                        Notification.booking_id == booking_id, Notification.kind == NotificationKind.REMINDER
                    )
                ).all()
            )
        assert count == 1

        chat = UserChat(fake_telegram, user_id, language_code=language)
        await asyncio.to_thread(chat.send, "/bookings", _("Your bookings:"))
        await asyncio.to_thread(chat.press, _("Calendar #{id}").format(id=booking_id))
        await until(lambda: len(_documents(fake_telegram, user_id)) == 2)
        again = _documents(fake_telegram, user_id)[1]
        assert again.get("caption") == _("Your appointment, for your calendar.")
        assert f"SUMMARY:{title}" in _ics(again)

    run_bot(bot_settings, bot_db, body)
