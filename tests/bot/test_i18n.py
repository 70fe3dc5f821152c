"""English source strings; German, Russian, Ukrainian and Turkish catalogues: complete, consistent, and
chosen per user."""

from __future__ import annotations

import asyncio
import string
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_file
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from telegram import Bot

from bot.alerts import describe_duration
from bot.handlers import COMMAND_DESCRIPTIONS, HELP_TEXT, START_TEXT, set_commands
from bot.i18n import LOCALE_DIR, SUPPORTED_LANGUAGES, normalize_language, translator
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.db.models import User
from tests.bot.conftest import RunningBot, UserChat
from tests.bot.test_conversation_subscribe import SERVICE_PROMPT

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "bot").glob("*.py")),
    *sorted((ROOT / "bot" / "handlers").glob("*.py")),
]
"""Every module of the bot that may say something to a person (alerts and the captcha relay too)."""
CATALOGUE_FILES = ("alerts.po", "booking.po", "bot.po", "core.po", "email.po", "family.po", "swap.po")
TRANSLATED = [language for language in SUPPORTED_LANGUAGES if language != "en"]
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
"""``_.ngettext(one, many, n)`` is found by its last name, like a plain call."""

MessageId = str | tuple[str, str]


def _source_strings() -> dict[MessageId, str]:
    found: dict[MessageId, str] = {}
    for path in SOURCES:
        for lineno, message, _comments, _context in extract_from_file("python", str(path), keywords=KEYWORDS):
            key: MessageId = message if isinstance(message, str) else (message[0], message[1])
            found.setdefault(key, f"{path.name}:{lineno}")
    return found


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _catalogue(language: str) -> dict[MessageId, Message]:
    entries: dict[MessageId, Message] = {}
    for name in CATALOGUE_FILES:
        path = LOCALE_DIR / language / "LC_MESSAGES" / name
        assert path.exists(), f"{language} has no {name}"
        with path.open("rb") as handle:
            for m in read_po(handle, locale=language):
                if m.id:
                    entries[m.id if isinstance(m.id, str) else (m.id[0], m.id[1])] = m
    return entries


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_string_has_a_translation_in_every_catalogue(language: str) -> None:
    """Every string the bot's modules mark (conversations, /bookings, alerts, captcha relay) is
    translated in ``language``, with one form per plural form Babel knows for it, the same
    placeholders, nothing fuzzy and nothing stale. Tried: deleting one msgstr of alerts.po, one
    plural form and a placeholder in ru, and adding an N_ string to bot/alerts.py; each fails here."""
    sources = _source_strings()
    assert len(sources) > 200
    catalogue = _catalogue(language)
    forms = get_plural(language).num_plurals
    missing = {}
    for text, where in sources.items():
        entry = catalogue.get(text)
        strings = entry.string if entry is not None else None
        if isinstance(text, tuple):
            complete = isinstance(strings, tuple | list) and len(strings) == forms and all(strings)
        else:
            complete = isinstance(strings, str) and bool(strings)
        if not complete:
            missing[text] = where
    assert not missing, f"untranslated in {language}: {missing}"
    fuzzy = [m.id for m in catalogue.values() if m.fuzzy]
    assert not fuzzy, f"fuzzy entries are ignored at run time: {fuzzy}"
    stale = sorted(str(i) for i in catalogue if i not in sources)
    assert not stale, f"entries no source uses any more: {stale}"
    for text in sources:
        entry = catalogue[text]
        if isinstance(text, tuple):
            wanted = _placeholders(text[1])
            assert all(_placeholders(str(form)) == wanted for form in entry.string or ()), text
        else:
            assert _placeholders(str(entry.string)) == _placeholders(text), text


@pytest.mark.parametrize(
    ("language", "counts"),
    [
        ("en", {1: "1 minute", 2: "2 minutes", 5: "5 minutes", 21: "21 minutes"}),
        ("de", {1: "1 Minute", 2: "2 Minuten", 5: "5 Minuten", 21: "21 Minuten"}),
        ("ru", {1: "1 минуту", 2: "2 минуты", 5: "5 минут", 21: "21 минуту", 12: "12 минут"}),
        ("uk", {1: "1 хвилину", 3: "3 хвилини", 11: "11 хвилин", 22: "22 хвилини"}),
        ("tr", {1: "1 dakika", 2: "2 dakika", 5: "5 dakika"}),
    ],
)
def test_plural_forms_follow_each_languages_rule(language: str, counts: dict[int, str]) -> None:
    """Durations in alerts pick the plural form of the language (Russian and Ukrainian have three).
    Tried: dropping the catalogue's plural function (Russian and Ukrainian fell back to two forms)."""
    _ = translator(language)
    for n, expected in counts.items():
        assert describe_duration(timedelta(minutes=n, seconds=5), _) == expected


def test_translator_gives_german_and_falls_back_to_english() -> None:
    de = translator("de")
    assert de("Cancel") == "Abbrechen"
    assert de(START_TEXT).startswith("Hallo!")
    assert translator("fr")("Cancel") == "Cancel"
    assert normalize_language("de-AT") == "de" and normalize_language(None) == "en"
    # the same msgid may sit in alerts.po too: the merged catalogue must agree on weekday names
    assert [de(d) for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")] == [
        "Mo",
        "Di",
        "Mi",
        "Do",
        "Fr",
        "Sa",
        "So",
    ]
    assert de(HELP_TEXT).startswith("Das kann ich:")


def _language(db: Database, user_id: int) -> str | None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        return user.language if user else None


def test_language_from_telegram_locale_at_first_contact(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """The first message's language_code picks the language (unsupported ones get English), and
    later messages keep the stored one whatever language_code they carry."""
    for user_id, code, expected in [
        (6001, "de-AT", "de"),
        (6002, "de", "de"),
        (6003, "en-GB", "en"),
        (6004, "fr", "en"),
        (6005, "ru", "ru"),
        (6006, "uk-UA", "uk"),
        (6007, "tr", "tr"),
    ]:
        chat = UserChat(fake_telegram, user_id, language_code=code)
        chat.send("/start", expect=translator(expected)(START_TEXT)[:40])
        assert _language(bot_db, user_id) == expected
    later = UserChat(fake_telegram, 6001, language_code="en")
    later.send("/help", expect="Das kann ich:")


def test_language_command_switches_and_sticks(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """/language: pressing Deutsch answers in German from then on, even though Telegram still says "en"."""
    chat = UserChat(fake_telegram, 6100, language_code="en")
    chat.send("/language", expect="Which language?")
    chat.press("Deutsch", expect="Ich spreche jetzt Deutsch mit dir.")
    assert _language(bot_db, 6100) == "de"
    chat.send("/help", expect="Das kann ich:")
    chat.send("/language", expect="Welche Sprache?")
    chat.press("English", expect="I will speak English with you.")
    chat.send("/help", expect="What I can do:")
    assert _language(bot_db, 6100) == "en"


def test_command_menu_in_every_language(fake_telegram: FakeBotApi) -> None:
    """set_commands (for the bot's post_init) sends the English menu as default and one per other
    supported language, each translated."""

    async def run() -> None:
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
            await set_commands(bot)

    asyncio.run(run())
    calls = {
        c["params"].get("language_code"): c["params"]["commands"]
        for c in fake_telegram.sent(method="setMyCommands")
    }
    assert set(calls) == {None, "de", "ru", "uk", "tr"}
    assert {c["command"] for c in calls[None]} == set(COMMAND_DESCRIPTIONS)
    delete = {code: {c["command"]: c["description"] for c in menu}["delete"] for code, menu in calls.items()}
    assert delete == {
        None: "erase all your data",
        "de": "alle deine Daten löschen",
        "ru": "удалить все ваши данные",
        "uk": "видалити всі ваші дані",
        "tr": "tüm verilerinizi sil",
    }


@pytest.mark.parametrize(
    ("button", "said", "help_start"),
    [
        ("Русский", "Теперь я говорю с вами по-русски.", "Что я умею:"),
        ("Українська", "Тепер я розмовляю з вами українською.", "Що я вмію:"),
        ("Türkçe", "Artık sizinle Türkçe konuşacağım.", "Neler yapabilirim:"),
    ],
)
def test_language_command_offers_the_new_languages(
    button: str,
    said: str,
    help_start: str,
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
    bot_db: Database,
) -> None:
    """/language lists every supported language by its own name; choosing one answers in it, /help and
    a whole /subscribe search step follow, and the choice is stored."""
    chat = UserChat(fake_telegram, 6200, language_code="en")
    chat.send("/language", expect="Which language?")
    chat.press(button, expect=said)
    chat.send("/help", expect=help_start)
    _ = translator(normalize_language(_language(bot_db, 6200)))
    assert _("Cancel") != "Cancel"
    chat.send("/subscribe", expect=_(SERVICE_PROMPT)[:20])
