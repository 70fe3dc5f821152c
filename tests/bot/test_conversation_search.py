"""/subscribe's service search in a person's own words: misspelt, in every language the bot speaks,
through the real Application and the fake Bot API; service names carry a hint in ru/uk/tr."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.app import build_application, running
from bot.i18n import translator
from bot.services import service_table
from bot.testing import FakeBotApi
from bot.testing.outbox import PASSPORT_SERVICE_ID, seed_slot_alerts
from shared.catalog import get_catalog
from shared.db.database import Database
from shared.settings import Settings
from tests.bot.conftest import RunningBot, UserChat
from tests.bot.test_conversation_subscribe import SERVICE_PROMPT

WOHNSITZ = 1063475
REISEPASS = 1063453
FOREIGN_LICENCE = 1071896
RESIDENCE_EMERGENCY = 10339028
NATURALISATION = 1071907
MAX_HINT_CHARS = 40
RESULTS = "Services matching “{query}”. Tap one, or type another search:"

CASES = [
    # (language, what the person types, the service that must come first)
    ("de", "Anmeldng", WOHNSITZ),
    ("de", "Aufenthalstitel", RESIDENCE_EMERGENCY),
    ("de", "Fuhrerschein", FOREIGN_LICENCE),
    ("en", "registraton", WOHNSITZ),
    ("en", "driving lisence", FOREIGN_LICENCE),
    ("en", "residense permit", RESIDENCE_EMERGENCY),
    ("ru", "пррописка", WOHNSITZ),
    ("ru", "пасспорт", REISEPASS),
    ("ru", "водительские прав", FOREIGN_LICENCE),
    ("uk", "реестрація", WOHNSITZ),
    ("uk", "громадянство", NATURALISATION),
    ("uk", "посвидка на проживання", RESIDENCE_EMERGENCY),
    ("tr", "ikamet kayıdı", WOHNSITZ),
    ("tr", "pasaportt", REISEPASS),
    ("tr", "ehliyt", FOREIGN_LICENCE),
]


def _first_button(record: dict[str, Any]) -> str:
    rows = record["params"]["reply_markup"]["inline_keyboard"]
    return str(rows[0][0]["text"])


def _button_shows(button: str, name: str, hint: str | None) -> bool:
    """The hint first (it must survive the button's length cut), then the start of the German name."""
    if hint is None:
        return button == name
    return button.startswith(f"{hint} · {name[:5]}")


@pytest.mark.parametrize(("language", "typed", "service_id"), CASES)
def test_misspelt_words_in_each_language_find_the_service(
    language: str,
    typed: str,
    service_id: int,
    fake_telegram: FakeBotApi,
    conversation_bot: RunningBot,
) -> None:
    """A person types a misspelt everyday word for a service (not its German name, for the other
    languages) at the search step: the bot's first result is that service, labelled with its German
    name (for ru/uk/tr with the hint in their language, first on the button), and pressing it leads
    on to "how many people" naming it "German name (hint)". Tried: searching with the catalogue's
    substring search instead of bot.services (every misspelt case fails), and dropping the hint from
    the labels (the ru/uk/tr cases fail)."""
    _ = translator(language)
    service = get_catalog().service(service_id)
    assert service is not None
    hint = service_table()[service_id].hints.get(language) if language in ("ru", "uk", "tr") else None
    label = f"{service.name} ({hint})" if hint else service.name
    chat = UserChat(fake_telegram, 7000 + CASES.index((language, typed, service_id)), language_code=language)
    chat.send("/subscribe", expect=_(SERVICE_PROMPT)[:20])
    found = chat.send(typed, expect=_(RESULTS).format(query=typed))
    assert found is not None
    assert _button_shows(_first_button(found), service.name, hint)
    chat.press(_first_button(found), expect=_("{service}\n\nFor how many people?").format(service=label))


def test_nonsense_finds_nothing_and_the_step_stays(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot
) -> None:
    """Typing nonsense says nothing matched (in Ukrainian here), and the search step still takes a
    next try that does match."""
    _ = translator("uk")
    chat = UserChat(fake_telegram, 7100, language_code="uk")
    chat.send("/subscribe", expect=_(SERVICE_PROMPT)[:20])
    chat.send(
        "qxzjwv",
        expect=_("No service matches “{query}”. Try another word, or tap one of the buttons.").format(
            query="qxzjwv"
        ),
    )
    found = chat.send("паспорт", expect=_(RESULTS).format(query="паспорт"))
    assert found is not None and _first_button(found).endswith(" · Reisepass")


def test_every_hint_leaves_room_for_the_german_name_on_a_button() -> None:
    """Each shown hint (ru/uk/tr) is short enough that a button (cut at 60 characters) still shows
    the start of the German name after it, and every service in the table exists in the catalogue."""
    catalog = get_catalog()
    for service_id, entry in service_table().items():
        assert catalog.service(service_id) is not None, service_id
        for language in ("ru", "uk", "tr"):
            hint = entry.hints[language]
            assert len(hint) <= MAX_HINT_CHARS, (service_id, language, hint)


@pytest.mark.parametrize("language", ["ru", "uk", "tr"])
def test_alerts_name_the_service_with_its_hint(
    language: str, bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """A slot alert sent by the real sender to a ru/uk/tr reader is in their language and names the
    service "German name (hint)". Tried: dropping the hint from alerts (fails)."""
    _ = translator(language)
    first_user_id = 7200 + ["ru", "uk", "tr"].index(language)
    seeded = seed_slot_alerts(bot_db, 1, first_user_id=first_user_id, language=language)
    hint = service_table()[PASSPORT_SERVICE_ID].hints[language]

    async def main() -> None:
        client = Redis.from_url(bot_settings.redis_url)
        application = build_application(bot_settings, db=bot_db, redis=client)
        try:
            async with running(application):
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 20
                while not fake_telegram.texts(seeded.user_ids[0]):
                    assert loop.time() < deadline, "no alert"
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    asyncio.run(main())
    [text] = fake_telegram.texts(seeded.user_ids[0])
    assert f"Personalausweis ({hint})" in text
    assert _("Free appointment!") in text and _("Open the booking page") in text
