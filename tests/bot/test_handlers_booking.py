"""The alert's "Book this" button and /bookings, through the real Application and the fake Bot API.

Alerts reach the chat the way they do in production (outbox rows drained by the real ``Sender``);
the presses go through the fake server; what "Book this" queues is read back from the test Redis
(Dramatiq's ``mta:bookings.msgs``), the same queue the booking workers consume.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import delete, select

from bot.handlers import booking as booking_handlers
from bot.handlers.common import signer_for
from bot.i18n import translator
from bot.outbox_store import SenderConfig
from bot.sender import Sender
from bot.testing import FakeBotApi
from bot.testing.outbox import PASSPORT_SERVICE_ID, add_slot, add_users, queue_gone, queue_slot_alerts
from shared.db.database import Database
from shared.db.models import (
    Booking,
    BookingProfile,
    BookingStatus,
    Notification,
    Subscription,
    SubscriptionState,
    User,
)
from shared.domain import DEFAULT_SITE, utcnow
from shared.settings import Settings
from tests.bot.conftest import RunningBot, UserChat
from tests.conftest import free_port

WOHNSITZ = 1063475
PASING = 54261
QUEUE_MESSAGES = "mta:bookings.msgs"


@pytest.fixture
def booking_queue(redis_url: str) -> Iterator[None]:
    """The test Redis's bookings queue, empty at the start. The bot sends to it by actor name
    (``shared.enqueue``) on its settings' Redis: no worker code is imported, none is needed."""
    client = redis.Redis.from_url(redis_url)
    client.delete(QUEUE_MESSAGES, "mta:bookings")
    yield
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _queued(client: redis.Redis, actor_name: str) -> list[list[Any]]:
    """Args of the messages waiting on the bookings queue for ``actor_name``."""
    messages = [json.loads(raw) for raw in client.hvals(QUEUE_MESSAGES)]
    return [m["args"] for m in messages if m["actor_name"] == actor_name]


def _deliver_alerts(bot: RunningBot, db: Database, settings: Settings) -> int:
    """Send the pending outbox rows through the real sender, on the bot's own event loop."""
    sender = Sender(bot.application.bot, db, SenderConfig.from_settings(settings))
    return int(bot._call(sender.drain()))


def _alerted(
    bot: RunningBot,
    db: Database,
    settings: Settings,
    user_id: int,
    *,
    profile: bool = True,
    language: str = "en",
) -> tuple[int, int]:
    """A user with one active subscription (and a profile) who got the alert for a new slot (its
    start time depends on the user, so that several users get different slots)."""
    (sub_id,) = add_users(db, [user_id], with_profile=profile, language=language)
    start = (utcnow() + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    slot_id = add_slot(db, start_at=start + timedelta(minutes=15 * (user_id % 40)))
    queue_slot_alerts(db, slot_id, [sub_id])
    assert _deliver_alerts(bot, db, settings) >= 1
    return sub_id, slot_id


def _alert_message_id(api: FakeBotApi, chat_id: int) -> int:
    return int(api.sent(chat_id, "sendMessage")[-1]["message_id"])


def test_book_this_queues_one_booking_and_a_second_press_does_not(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """Pressing "Book this" with a profile queues one manual book_slot for exactly this user, slot
    and subscription; pressing it again says it is already on its way and queues nothing more."""
    sub_id, slot_id = _alerted(conversation_bot, bot_db, bot_settings, 7001)
    chat = UserChat(fake_telegram, 7001)
    chat.press("Book this", expect="Booking requested")
    assert "e***@example.org" in fake_telegram.texts(7001)[-1]
    sent = _queued(redis_client, "book_slot")
    assert len(sent) == 1
    user_id, queued_slot, queued_sub, _requested_at, manual = sent[0]
    assert (user_id, queued_slot, queued_sub, manual) == (7001, slot_id, sub_id, True)

    chat.press("Book this", expect="already booking this appointment")
    assert len(_queued(redis_client, "book_slot")) == 1


def test_a_second_slot_of_the_same_service_waits_for_the_first(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """Injected: two alerts for two slots of one service; "Book this" on both. Asserted: the second is
    refused while the first request is on its way (one booking per person and service)."""
    sub_id, first = _alerted(conversation_bot, bot_db, bot_settings, 7002)
    second = add_slot(bot_db, start_at=utcnow().replace(microsecond=0) + timedelta(days=5))
    queue_slot_alerts(bot_db, second, [sub_id])
    _deliver_alerts(conversation_bot, bot_db, bot_settings)
    messages = fake_telegram.sent(7002, "sendMessage")
    for message, expect in zip(messages, ["Booking requested", "already booking another"], strict=True):
        mark = fake_telegram.mark()
        fake_telegram.press(7002, "Book this", message_id=message["message_id"])
        fake_telegram.wait_for_text(7002, expect, 20.0, since=mark)
    assert [args[1] for args in _queued(redis_client, "book_slot")] == [first]


def test_forged_and_foreign_slot_ids_are_refused(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """Injected: "Book this" data naming a slot alerted only to someone else, a slot id that does not
    exist, and malformed data. Asserted: a clear refusal each time and nothing queued."""
    _alerted(conversation_bot, bot_db, bot_settings, 7003)
    _sub, theirs = _alerted(conversation_bot, bot_db, bot_settings, 7004)
    message_id = _alert_message_id(fake_telegram, 7003)
    chat = UserChat(fake_telegram, 7003)
    chat.press_data(f"book:{theirs}", message_id, expect="not an appointment I alerted you about")
    chat.press_data("book:987654321", message_id, expect="not an appointment I alerted you about")
    mark = fake_telegram.mark()
    chat.press_data("book:1;DROP", message_id)
    chat.popup("This button is not valid", since=mark)
    assert _queued(redis_client, "book_slot") == []


def test_without_a_profile_the_user_is_told_to_store_one(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """Injected: the profile is deleted after the alert (with its "Book this") went out; German user.
    Asserted: the press is answered with a pointer to /profile, in German, and nothing is queued."""
    _alerted(conversation_bot, bot_db, bot_settings, 7005, language="de")
    with bot_db.transaction() as session:
        session.execute(delete(BookingProfile).where(BookingProfile.user_id == 7005))
    chat = UserChat(fake_telegram, 7005, language_code="de")
    chat.press("Diesen Termin buchen", expect="Speichere sie mit /profile")
    assert _queued(redis_client, "book_slot") == []


def test_active_booking_gone_slot_and_paused_subscription_are_refused(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """Injected in turn: an active booking for the service, a paused subscription, a slot that is gone.
    Asserted: each press names the reason; nothing is queued."""
    sub_id, slot_id = _alerted(conversation_bot, bot_db, bot_settings, 7006)
    booking_id = _add_booking(bot_db, 7006, BookingStatus.PRECONFIRMED, service_id=PASSPORT_SERVICE_ID)
    chat = UserChat(fake_telegram, 7006)
    chat.press("Book this", expect=f"already have an active booking for this service (#{booking_id})")
    with bot_db.transaction() as session:
        session.execute(delete(Booking).where(Booking.id == booking_id))
        sub = session.get(Subscription, sub_id)
        assert sub is not None
        sub.state = SubscriptionState.PAUSED
    chat.press("Book this", expect="paused or finished")
    with bot_db.transaction() as session:
        sub = session.get(Subscription, sub_id)
        assert sub is not None
        sub.state = SubscriptionState.ACTIVE
    queue_gone(bot_db, slot_id)
    chat.press("Book this", expect="This appointment is gone")
    assert _queued(redis_client, "book_slot") == []


def test_the_e_mail_cap_across_profiles_is_said_before_queueing(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """Tried: three other people's profiles with the same e-mail address as this person's each hold an
    appointment to come, then this person presses "Book this"; then one of the three is cancelled and
    they press again. Asserted: the first press names the city's cap per address and queues nothing;
    the second queues the booking."""
    _sub_id, _slot_id = _alerted(conversation_bot, bot_db, bot_settings, 7010)
    add_users(bot_db, [7011, 7012, 7013], with_profile=True)  # the same address, e@example.org
    held = [_add_booking(bot_db, uid, BookingStatus.PRECONFIRMED) for uid in (7011, 7012, 7013)]
    chat = UserChat(fake_telegram, 7010)
    chat.press("Book this", expect="MTA already holds 3 appointments to come for this e-mail address")
    assert _queued(redis_client, "book_slot") == []
    with bot_db.transaction() as session:
        booking = session.get(Booking, held[0])
        assert booking is not None
        booking.status = BookingStatus.CANCELLED
    chat.press("Book this", expect="Booking requested")
    assert len(_queued(redis_client, "book_slot")) == 1


def test_a_queue_that_is_down_gets_a_clear_answer(bot_db: Database) -> None:
    """Injected: Redis unreachable (nothing listens on the port). Asserted: QUEUE_UNAVAILABLE, whose
    text points to the alert's link, rather than an exception."""
    (sub_id,) = add_users(bot_db, [7007], with_profile=True)
    slot_id = add_slot(bot_db)
    queue_slot_alerts(bot_db, slot_id, [sub_id])
    answer = booking_handlers.request_from_alert(bot_db, f"redis://127.0.0.1:{free_port()}/0", 7007, slot_id)
    assert answer.outcome is booking_handlers.BookOutcome.QUEUE_UNAVAILABLE
    text = booking_handlers.book_answer_text(answer, translator("en"), "en")
    assert "could not queue the booking" in text


def _add_booking(
    db: Database,
    user_id: int,
    status: BookingStatus,
    *,
    service_id: int = PASSPORT_SERVICE_ID,
    error: str | None = None,
) -> int:
    now = utcnow()
    with db.transaction() as session:
        if session.get(User, user_id) is None:
            session.add(User(id=user_id, language="en"))
            session.flush()
        row = Booking(
            user_id=user_id,
            profile_id=session.scalar(
                select(BookingProfile.id).where(BookingProfile.user_id == user_id).order_by(BookingProfile.id)
            ),
            site=DEFAULT_SITE,
            service_id=service_id,
            office_id=PASING,
            start_at=(now + timedelta(days=4)).replace(hour=9, minute=0, second=0, microsecond=0),
            status=status,
            error=error,
        )
        if status in (BookingStatus.RESERVED, BookingStatus.PRECONFIRMED, BookingStatus.CONFIRMED):
            row.process_id = "123456"
            row.auth_key = "abcdef"
        if status is BookingStatus.PRECONFIRMED:
            row.activation_deadline = now + timedelta(minutes=30)
        session.add(row)
        session.flush()
        return row.id


def test_bookings_lists_states_and_cancel_asks_before_queueing(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """/bookings shows each booking's state and a Cancel button only where the city holds something;
    Cancel asks first ("Keep it" changes nothing), "Yes" queues exactly one cancel_booking."""
    reserved = _add_booking(bot_db, 7010, BookingStatus.PRECONFIRMED)
    holding = _add_booking(bot_db, 7010, BookingStatus.HOLDING, service_id=WOHNSITZ)
    taken = _add_booking(
        bot_db,
        7010,
        BookingStatus.FAILED,
        error=json.dumps({"kind": "taken", "code": "appointmentNotAvailable"}),
    )
    chat = UserChat(fake_telegram, 7010)
    record = chat.send("/bookings", expect="Your bookings:")
    assert record is not None
    text = record["params"]["text"]
    assert f"#{reserved}" in text and "reserved: open the activation link" in text
    assert f"#{holding}" in text and "booking in progress" in text
    assert f"#{taken}" in text and "someone else was faster" in text
    labels = [b["text"] for b in chat.buttons(record["message_id"])]
    assert labels == [f"✖ Cancel booking #{reserved}", f"⏪ Earlier date #{reserved}"]

    chat.press(f"Cancel booking #{reserved}", expect="Cancel this booking?")
    chat.press("Keep it", expect="Your bookings:")
    assert _queued(redis_client, "cancel_booking") == []
    chat.press(f"Cancel booking #{reserved}", expect="Cancel this booking?")
    chat.press("Yes, cancel it", expect=f"Cancellation of booking #{reserved} requested")
    assert _queued(redis_client, "cancel_booking") == [[reserved, 7010]]


def test_cancel_buttons_for_someone_elses_booking_are_refused(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    booking_queue: None,
    redis_client: redis.Redis,
) -> None:
    """Injected: correctly signed cancel buttons for user A naming user B's booking, and a German user
    with no bookings. Asserted: A is refused with a notice, nothing queued; /bookings in German."""
    theirs = _add_booking(bot_db, 7012, BookingStatus.PRECONFIRMED)
    chat = UserChat(fake_telegram, 7011)
    chat.send("/bookings", expect="You have no bookings.")
    message_id = _alert_message_id(fake_telegram, 7011)
    signer = signer_for(conversation_bot.application.bot_data)
    for action in ("bc", "bcy"):
        mark = fake_telegram.mark()
        chat.press_data(signer.sign(7011, action, theirs), message_id)
        chat.popup("is not yours", since=mark)
    assert _queued(redis_client, "cancel_booking") == []
    with bot_db.transaction() as session:
        status = session.scalar(select(Booking.status).where(Booking.id == theirs))
        assert status is BookingStatus.PRECONFIRMED
        assert session.scalar(select(Notification.id).where(Notification.user_id == 7012)) is None

    german = UserChat(fake_telegram, 7013, language_code="de")
    german.send("/bookings", expect="Du hast keine Buchungen.")
