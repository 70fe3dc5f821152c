"""English source strings, German catalogue: complete, consistent, and chosen per user."""

from __future__ import annotations

import asyncio
import string
from pathlib import Path

from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from telegram import Bot

from bot.handlers import COMMAND_DESCRIPTIONS, HELP_TEXT, START_TEXT, set_commands
from bot.i18n import LOCALE_DIR, normalize_language, translator
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.db.models import User
from tests.bot.conftest import RunningBot, UserChat

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "bot" / "handlers").glob("*.py")),
    ROOT / "bot" / "keyboards.py",
    ROOT / "bot" / "validation.py",
]
CATALOGUES = [LOCALE_DIR / "de" / "LC_MESSAGES" / name for name in ("bot.po", "booking.po")]
"""The conversations' German; booking.po holds "Book this" and /bookings (bot/handlers/booking.py)."""


def _source_strings() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in SOURCES:
        for lineno, message, _comments, _context in extract_from_file(
            "python", str(path), keywords={"_": None, "N_": None}
        ):
            text = message[0] if isinstance(message, tuple) else message
            found.setdefault(text, f"{path.name}:{lineno}")
    return found


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_conversation_string_has_a_german_translation() -> None:
    sources = _source_strings()
    assert len(sources) > 100
    german = {}
    for path in CATALOGUES:
        with path.open("rb") as handle:
            german.update({m.id: m for m in read_po(handle, locale="de") if m.id})
    missing = {
        text: where for text, where in sources.items() if text not in german or not german[text].string
    }
    assert not missing, f"untranslated: {missing}"
    fuzzy = [m.id for m in german.values() if m.fuzzy]
    assert not fuzzy, f"fuzzy entries are ignored at run time: {fuzzy}"
    stale = sorted(str(i) for i in german if i not in sources)
    assert not stale, f"entries no source uses any more: {stale}"
    for text in sources:
        translated = str(german[text].string)
        assert _placeholders(translated) == _placeholders(text), text


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


def test_command_menu_in_both_languages(fake_telegram: FakeBotApi) -> None:
    """set_commands (for the bot's post_init) sends the English menu as default and a German one."""

    async def run() -> None:
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
            await set_commands(bot)

    asyncio.run(run())
    calls = {
        c["params"].get("language_code"): c["params"]["commands"]
        for c in fake_telegram.sent(method="setMyCommands")
    }
    assert set(calls) == {None, "de"}
    assert {c["command"] for c in calls[None]} == set(COMMAND_DESCRIPTIONS)
    german = {c["command"]: c["description"] for c in calls["de"]}
    assert german["delete"] == "alle deine Daten löschen"
