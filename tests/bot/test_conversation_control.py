"""Consent before /profile, quiet hours (/quiet and the sender holding alerts), and /test: through the
real Application and the fake Bot API, in every language the bot speaks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any

import pytest
import redis as sync_redis
from sqlalchemy import select, update

from bot.handlers.control import QUIET_EXPLAINED, TEST_HEAD
from bot.handlers.profile import CONSENT_TEXT
from bot.i18n import SUPPORTED_LANGUAGES, translator
from bot.quiet import HELD_KEY
from bot.testing import FakeBotApi
from bot.testing.outbox import add_slot, add_users, queue_gone, queue_slot_alerts
from shared.contracts import WAKE_CHANNEL
from shared.db.database import Database
from shared.db.models import BookingProfile, Notification, NotificationStatus, User
from shared.domain import SITE_TIMEZONE, utcnow
from shared.settings import Settings
from tests.bot.conftest import RunningBot, UserChat, run_bot, until

DECLINED = (
    "All right: I keep none of these details. Alerts still come, and you can book yourself with the "
    "link in each one."
)


def _user(db: Database, user_id: int) -> User | None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is not None:
            session.expunge(user)
        return user


def _has_profile(db: Database, user_id: int) -> bool:
    with db.transaction() as session:
        return session.scalar(select(BookingProfile.id).where(BookingProfile.user_id == user_id)) is not None


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_profile_asks_for_consent_first_and_keeps_nothing_without_it(
    language: str, fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """/profile first shows what is kept, why, how long and how to erase it, with two buttons. "No,
    thanks" stores nothing and the next /profile asks again; "I agree" stores the time of consent and
    only then asks for the first name; removing the profile withdraws the consent. Tried: starting the
    profile at "first" without the consent step (the first expectation fails), and not clearing the
    consent on removal (the last assertion fails)."""
    _ = translator(language)
    user_id = 9000 + SUPPORTED_LANGUAGES.index(language)
    chat = UserChat(fake_telegram, user_id, language_code=language)
    chat.send("/profile", expect=_(CONSENT_TEXT))
    chat.press(_("No, thanks"), expect=_(DECLINED))
    user = _user(bot_db, user_id)
    assert user is not None and user.consented_at is None and not _has_profile(bot_db, user_id)

    chat.send("/profile", expect=_(CONSENT_TEXT))
    before = utcnow()
    chat.press(_("I agree"), expect=_("Your first name (as in your ID)?"))
    user = _user(bot_db, user_id)
    assert user is not None and user.consented_at is not None and user.consented_at >= before
    chat.send("Erika", expect=_("Your last name?"))
    chat.send(
        "Muster",
        expect=_(
            "Your e-mail address? The city sends the activation link there. (The city refuses addresses "
            "containing “+”.)"
        ),
    )
    chat.send(
        "erika@example.org",
        expect=_("Your phone number, like +491511234567? Some offices ask for it; you may skip."),
    )
    chat.press(
        _("Skip"),
        expect=_(
            "Your date of birth, like 24.12.1990? The driving licence office (Führerscheinstelle) asks for "
            "it; you may skip."
        ),
    )
    chat.press(_("Skip"), expect=_("Please check your details:"))
    chat.press(
        _("Save"),
        expect=_("Saved ✅ Your booking profile is stored encrypted. /profile shows or changes it."),
    )
    assert _has_profile(bot_db, user_id)

    chat.send("/profile", expect=_("Your booking profile (stored encrypted):"))
    chat.press(_("Remove"), expect=_("Remove your booking profile? MTA can then no longer book for you."))
    chat.press(_("Yes, remove it"), expect=_("Your booking profile is removed."))
    user = _user(bot_db, user_id)
    assert user is not None and user.consented_at is None
    chat.send("/profile", expect=_(CONSENT_TEXT))


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_quiet_command_sets_and_clears_quiet_hours(
    language: str, fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """/quiet explains quiet hours in the person's language; a preset button stores it, /quiet then
    ticks it, "No quiet hours" clears it; /test afterwards mentions the quiet hours. Tried: storing
    nothing on the button (the stored hours stay None; fails)."""
    _ = translator(language)
    user_id = 9100 + SUPPORTED_LANGUAGES.index(language)
    chat = UserChat(fake_telegram, user_id, language_code=language)
    chat.send("/quiet", expect=_(QUIET_EXPLAINED))
    chat.press(
        "22:00–07:00",
        expect=_("Quiet hours set: {hours} (Berlin time). /test shows what an alert looks like.").format(
            hours="22:00–07:00"
        ),
    )
    user = _user(bot_db, user_id)
    assert user is not None and (user.quiet_start, user.quiet_end) == (time(22, 0), time(7, 0))
    chat.send("/quiet", expect=_("Now: {hours}.").format(hours="22:00–07:00"))
    chat.send(
        "/test",
        expect=_(
            "Your quiet hours are {hours}: real alerts in them wait until they end (see /quiet)."
        ).format(hours="22:00–07:00"),
    )
    chat.press(_("No quiet hours"), expect=_("Quiet hours off: alerts reach you at any hour."))
    user = _user(bot_db, user_id)
    assert user is not None and user.quiet_start is None and user.quiet_end is None


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_test_command_sends_a_sample_alert(
    language: str, fake_telegram: FakeBotApi, conversation_bot: RunningBot
) -> None:
    """/test sends one message, with a notification (not silent), in HTML like a real alert: the test
    heading, the sample service and "Free appointment!" in the person's language, no buttons (nothing
    to book). Tried: sending it with disable_notification (fails) and without the heading (fails)."""
    _ = translator(language)
    user_id = 9200 + SUPPORTED_LANGUAGES.index(language)
    chat = UserChat(fake_telegram, user_id, language_code=language)
    record = chat.send("/test", expect=_(TEST_HEAD)[:30])
    assert record is not None
    params = record["params"]
    assert params.get("parse_mode") == "HTML"
    assert not params.get("disable_notification")
    assert "Wohnsitzanmeldung" in params["text"] and _("Free appointment!") in params["text"]
    assert not params.get("reply_markup")


# --- the sender holds alerts in quiet hours ---------------------------------------------------------


def _set_quiet(db: Database, user_ids: list[int], start: time, end: time) -> None:
    with db.transaction() as session:
        session.execute(update(User).where(User.id.in_(user_ids)).values(quiet_start=start, quiet_end=end))


def _row(db: Database, notification_id: int) -> Notification:
    with db.transaction() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        session.expunge(row)
        return row


def test_sender_holds_alerts_in_quiet_hours_unless_the_slot_is_by_tomorrow(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Three people; two have quiet hours around now. A slot days away reaches only the one without
    quiet hours at once; for the others the alert is held (pending, marked, due when the hours end),
    while a slot within the quiet hours themselves (so by tomorrow) reaches a quiet person at once.
    The slot one of them waits for goes in the night: its "gone" edit and the held alert are dropped,
    nothing is sent. After the quiet hours (their window moved past, the held rows made due) the other
    held alert arrives. Tried: not holding (the quiet people get the far slot at once; fails), and
    sending held alerts whose slot went (the gone person gets a message; fails)."""
    berlin_now = datetime.now(SITE_TIMEZONE)
    start, end = (berlin_now - timedelta(hours=1)).time(), (berlin_now + timedelta(hours=2)).time()
    waits, goes, awake = 9301, 9302, 9303
    subs = add_users(bot_db, [waits, goes, awake])
    _set_quiet(bot_db, [waits, goes], start, end)
    far = add_slot(bot_db, start_at=utcnow() + timedelta(days=5))
    far_goes = add_slot(bot_db, start_at=utcnow() + timedelta(days=6))
    soon = add_slot(bot_db, start_at=utcnow() + timedelta(hours=1))
    [held_waits, _awake_far] = queue_slot_alerts(bot_db, far, [subs[0], subs[2]])
    [held_goes] = queue_slot_alerts(bot_db, far_goes, [subs[1]])
    queue_slot_alerts(bot_db, soon, [subs[0]])

    def held(notification_id: int) -> Callable[[], bool]:
        return lambda: bool((_row(bot_db, notification_id).payload or {}).get(HELD_KEY))

    async def body(application: Any) -> None:
        await until(lambda: len(fake_telegram.texts(awake)) == 1 and len(fake_telegram.texts(waits)) == 1)
        await until(held(held_waits))
        await until(held(held_goes))
        for notification_id in (held_waits, held_goes):
            row = _row(bot_db, notification_id)
            assert row.status == NotificationStatus.PENDING and row.next_attempt_at is not None
            due = row.next_attempt_at.astimezone(SITE_TIMEZONE)
            assert (due.hour, due.minute) == (end.hour, end.minute)
        [gone_row] = [i for i in queue_gone(bot_db, far_goes)]
        client = sync_redis.Redis.from_url(bot_settings.redis_url)
        client.publish(WAKE_CHANNEL, "1")
        await until(lambda: _row(bot_db, gone_row).status == NotificationStatus.SENT)
        assert _row(bot_db, gone_row).telegram_message_id is None
        # morning: the quiet hours no longer cover now, and the held rows are due
        _set_quiet(
            bot_db,
            [waits, goes],
            (berlin_now + timedelta(hours=3)).time(),
            (berlin_now + timedelta(hours=4)).time(),
        )
        with bot_db.transaction() as session:
            session.execute(
                update(Notification)
                .where(Notification.id.in_([held_waits, held_goes]))
                .values(next_attempt_at=utcnow())
            )
        client.publish(WAKE_CHANNEL, "1")
        await until(lambda: _row(bot_db, held_waits).status == NotificationStatus.SENT)
        await until(lambda: _row(bot_db, held_goes).status == NotificationStatus.SENT)
        client.close()

    run_bot(bot_settings, bot_db, body)
    texts_waits = fake_telegram.texts(waits)
    assert len(texts_waits) == 2  # the soon slot at once, the far one in the morning
    assert _row(bot_db, held_waits).telegram_message_id is not None
    assert fake_telegram.texts(goes) == []
    assert _row(bot_db, held_goes).telegram_message_id is None
