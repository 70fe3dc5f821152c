"""Booking details stored before MTA asked for consent (migration 0004): the next /profile or "Book
this" asks first, agreeing lets the booking go ahead, declining offers to erase them. Through the real
Application and the fake Bot API, in every language the bot speaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select, update

from bot.handlers.profile import CONSENT_STORED_TEXT, ERASE_STORED_TEXT
from bot.i18n import SUPPORTED_LANGUAGES, translator
from bot.outbox_store import SenderConfig
from bot.sender import Sender
from bot.testing import FakeBotApi
from bot.testing.outbox import add_slot, add_users, queue_slot_alerts
from shared.db.database import Database
from shared.db.models import BookingProfile, User
from shared.domain import utcnow
from shared.settings import Settings
from tests.bot.conftest import RunningBot, UserChat

QUEUE_MESSAGES = "mta:bookings.msgs"
KEPT = "All right: they stay stored, but I do not book with them. /profile asks again when you like."
ERASED = (
    "Erased: I keep no booking details of yours. Alerts still come, and you can book "
    "yourself with the link in each one."
)
BOOK_AGAIN = (
    "Thank you: I may now book with your stored details. Press “Book this” under the "
    "alert again if you still want that appointment."
)
REQUESTED = (
    "📝 Booking requested: {what}.\n"
    "I am filling in the city's form for you now. The city will e-mail the activation link to "
    "{email}; I will tell you how it goes. /bookings shows the state."
)


@pytest.fixture
def booking_queue(redis_url: str) -> Iterator[redis.Redis]:
    """The test Redis with an empty bookings queue (the bot sends "Book this" there by actor name)."""
    client = redis.Redis.from_url(redis_url)
    client.delete(QUEUE_MESSAGES, "mta:bookings")
    yield client
    client.close()


def _queued(client: redis.Redis) -> list[list[object]]:
    messages = [json.loads(raw) for raw in client.hvals(QUEUE_MESSAGES)]
    return [m["args"] for m in messages if m["actor_name"] == "book_slot"]


def _stored_before_consent(db: Database, user_ids: list[int], language: str) -> list[int]:
    """Users whose profile predates consent (as migration 0004 left them); their subscription ids."""
    subs = add_users(db, user_ids, language=language, with_profile=True)
    with db.transaction() as session:
        session.execute(update(User).where(User.id.in_(user_ids)).values(consented_at=None))
    return subs


def _consented(db: Database, user_id: int) -> bool:
    with db.transaction() as session:
        user = session.get(User, user_id)
        return user is not None and user.consented_at is not None


def _profiles(db: Database, user_id: int) -> int:
    with db.transaction() as session:
        return len(session.scalars(select(BookingProfile.id).where(BookingProfile.user_id == user_id)).all())


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_details_stored_before_consent_are_used_only_after_agreeing(
    language: str,
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    booking_queue: redis.Redis,
) -> None:
    """Three people whose profile predates consent. One opens /profile: the statement for stored
    details comes first; "No, thanks" offers to erase them, "Keep them" keeps them unused (no
    consent); the next /profile asks again and "I agree" shows their profile. One presses "Book
    this" under an alert: the statement instead of a booking (nothing queued), "I agree", and the
    next press queues the booking. One presses "Book this", declines and erases: no profile left,
    nothing queued. Tried: /profile showing the stored profile without asking (the first
    expectation fails), "Book this" queueing without consent (a message is queued; fails), and
    "Erase them" keeping the profiles (the count fails)."""
    _ = translator(language)
    base = 9700 + 10 * SUPPORTED_LANGUAGES.index(language)
    profile_user, booker, eraser = base, base + 1, base + 2
    subs = _stored_before_consent(bot_db, [profile_user, booker, eraser], language)
    start = (utcnow() + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    for number, sub_id in enumerate(subs[1:]):
        slot_id = add_slot(bot_db, start_at=start + timedelta(minutes=15 * number))
        queue_slot_alerts(bot_db, slot_id, [sub_id])
    sender = Sender(conversation_bot.application.bot, bot_db, SenderConfig.from_settings(bot_settings))
    assert int(conversation_bot._call(sender.drain())) == 2

    chat = UserChat(fake_telegram, profile_user, language_code=language)
    chat.send("/profile", expect=_(CONSENT_STORED_TEXT))
    chat.press(_("No, thanks"), expect=_(ERASE_STORED_TEXT))
    chat.press(_("Keep them"), expect=_(KEPT))
    assert _profiles(bot_db, profile_user) == 1 and not _consented(bot_db, profile_user)
    chat.send("/profile", expect=_(CONSENT_STORED_TEXT))
    chat.press(_("I agree"), expect=_("Your booking profile (stored encrypted):"))
    assert _consented(bot_db, profile_user)

    chat = UserChat(fake_telegram, booker, language_code=language)
    chat.press(_("Book this"), expect=_(CONSENT_STORED_TEXT))
    assert _queued(booking_queue) == []
    chat.press(_("I agree"), expect=_(BOOK_AGAIN))
    chat.press(_("Book this"), expect=_(REQUESTED).split("{what}")[0])
    assert [args[0] for args in _queued(booking_queue)] == [booker]

    chat = UserChat(fake_telegram, eraser, language_code=language)
    chat.press(_("Book this"), expect=_(CONSENT_STORED_TEXT))
    chat.press(_("No, thanks"), expect=_(ERASE_STORED_TEXT))
    chat.press(_("Erase them"), expect=_(ERASED))
    assert _profiles(bot_db, eraser) == 0 and not _consented(bot_db, eraser)
    assert [args[0] for args in _queued(booking_queue)] == [booker]
