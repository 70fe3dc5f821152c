"""Issue #16's "done means", where no other test covers it: /help names every command of the menu in
every language, README's BotFather list is the bot's own menu, "Book this" says the city's cap per
e-mail address, and /subscribe and /list say for whom, in every language. Through the real
Application and the fake Bot API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bot.handlers import COMMAND_DESCRIPTIONS, COMMANDS, HELP_TEXT, store
from bot.i18n import SUPPORTED_LANGUAGES, translator
from bot.outbox_store import SenderConfig
from bot.sender import Sender
from bot.testing import FakeBotApi
from bot.testing.outbox import PASSPORT_SERVICE_ID, add_slot, add_users, queue_slot_alerts
from shared.db.database import Database
from shared.db.models import Booking, BookingProfile, BookingStatus
from shared.domain import DEFAULT_SITE, utcnow
from shared.settings import Settings
from tests.bot.conftest import RunningBot, UserChat
from tests.bot.test_conversation_search import RESULTS
from tests.bot.test_conversation_subscribe import (
    AUTOBOOK_PROMPT,
    OFFICES_PROMPT,
    SERVICE_PROMPT,
    TIME_PROMPT,
    WEEKDAYS_PROMPT,
    WINDOW_PROMPT,
)

README = Path(__file__).resolve().parents[2] / "README.md"
MAIL_CAP_ANSWER = (
    "MTA already holds {cap} appointments to come for this e-mail address (for you or "
    "family members who share it), as many as the city allows per address. Cancel one in "
    "/bookings, or give this person an e-mail address of their own in /profile."
)


def _botfather_list() -> list[str]:
    """The lines of README's block for BotFather's /setcommands."""
    after = README.read_text(encoding="utf-8").split("BotFather's `/setcommands`", 1)[1]
    return after.split("```", 2)[1].strip().splitlines()


def test_readme_botfather_list_is_the_bots_own_menu() -> None:
    """README's list for /setcommands is, line by line, the English menu the bot sets itself, and
    the menu names every command the bot answers (but /start, which Telegram sends by itself). Tried:
    a command added to the menu but not to README (the first assertion fails; it did for /email)."""
    assert _botfather_list() == [f"{name} - {text}" for name, text in COMMAND_DESCRIPTIONS.items()]
    assert set(COMMANDS) - {"start"} == set(COMMAND_DESCRIPTIONS)


def test_help_names_every_command_in_every_language(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot
) -> None:
    """/help, in each person's language, names every command of the menu (/help itself aside).
    Tried: leaving the /bookings line out of /help (fails)."""
    for number, language in enumerate(SUPPORTED_LANGUAGES):
        _ = translator(language)
        chat = UserChat(fake_telegram, 9800 + number, language_code=language)
        record = chat.send("/help", expect=_(HELP_TEXT))
        assert record is not None
        words = record["params"]["text"].split()
        missing = [name for name in COMMAND_DESCRIPTIONS if name != "help" and f"/{name}" not in words]
        assert not missing, f"/help in {language} does not name {missing}"
        assert language == "en" or _(HELP_TEXT) != HELP_TEXT


def test_book_this_says_the_mail_cap_in_every_language(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
) -> None:
    """People (one per language) whose e-mail address already holds three appointments to come
    press "Book this" under an alert: the answer names the city's cap and what to do, in their
    language. Tried: the cap off by one (the press is queued instead; fails)."""
    for number, language in enumerate(SUPPORTED_LANGUAGES):
        _press_over_the_cap(fake_telegram, conversation_bot, bot_db, bot_settings, 9810 + number, language)


def _press_over_the_cap(
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
    bot_settings: Settings,
    user_id: int,
    language: str,
) -> None:
    _ = translator(language)
    (sub_id,) = add_users(bot_db, [user_id], language=language, with_profile=True)
    with bot_db.transaction() as session:
        profile_id = session.scalar(select(BookingProfile.id).where(BookingProfile.user_id == user_id))
        for day in (5, 6, 7):
            session.add(
                Booking(
                    user_id=user_id,
                    profile_id=profile_id,
                    site=DEFAULT_SITE,
                    service_id=PASSPORT_SERVICE_ID + 1,
                    office_id=54261,
                    start_at=utcnow() + timedelta(days=day),
                    status=BookingStatus.CONFIRMED,
                )
            )
    start = (utcnow() + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    slot_id = add_slot(bot_db, start_at=start + timedelta(minutes=15 * (user_id % 40)))
    queue_slot_alerts(bot_db, slot_id, [sub_id])
    sender = Sender(conversation_bot.application.bot, bot_db, SenderConfig.from_settings(bot_settings))
    assert int(conversation_bot._call(sender.drain())) == 1
    chat = UserChat(fake_telegram, user_id, language_code=language)
    chat.press(_("Book this"), expect=_(MAIL_CAP_ANSWER).format(cap=3))


def test_subscribe_asks_for_whom_and_list_says_it_in_every_language(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """People (one per language) with their own profile and one for "Anna" subscribe with "book for
    me": /subscribe asks whom to book for, the summary and /list say "Books for: Anna", in their
    language. Tried: the summary without the person (fails)."""
    for number, language in enumerate(SUPPORTED_LANGUAGES):
        _ = translator(language)
        user_id = 9820 + number
        store.ensure_user(bot_db, user_id, language)
        store.record_consent(bot_db, user_id)
        store.save_profile(bot_db, user_id, store.ProfileData("Erika", "Muster", "e@example.org", None, {}))
        anna = store.ProfileData("Anna", "Muster", "e@example.org", None, {}, label="Anna")
        store.save_profile(bot_db, user_id, anna)
        chat = UserChat(fake_telegram, user_id, language_code=language)
        chat.send("/subscribe", expect=_(SERVICE_PROMPT)[:20])
        results = chat.send("Fuhrerschein", expect=_(RESULTS).split("{query}")[0])
        assert results is not None
        how_many = _("{service}\n\nFor how many people?").split("{service}")[1].strip()
        chat.press(results["params"]["reply_markup"]["inline_keyboard"][0][0]["text"], expect=how_many)
        chat.press("1", expect=_(OFFICES_PROMPT).split("{service}")[0])
        chat.press(_("Any office"), expect=_(WINDOW_PROMPT)[:16])
        chat.press(_("Any date"), expect=_(WEEKDAYS_PROMPT)[:14])
        chat.press(_("Any day"), expect=_(TIME_PROMPT)[:16])
        chat.press(_("Any time"), expect=_(AUTOBOOK_PROMPT)[:30])
        chat.press(
            _("Yes, book for me"),
            expect=_("Whom should MTA book for? Their booking profile goes into the city's form."),
        )
        books_for = _("Books for: {person}").format(person="Anna")
        summary = chat.press("Anna", expect=_("Please check your subscription:"))
        assert summary is not None and books_for in summary["params"]["text"]
        chat.press(_("Save"), expect=_("Saved ✅ I will message you when a matching appointment appears."))
        chat.send("/list", expect=books_for)
