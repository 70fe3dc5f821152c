"""Booking for the family through the fake Bot API: a second profile with a label, a subscription that
books for it, /list saying for whom, /export with every profile, removing one profile."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.handlers import store
from bot.i18n import translator
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.db.models import BookingProfile, Subscription, User
from tests.bot.conftest import RunningBot, UserChat
from tests.bot.test_conversation_subscribe import AUTOBOOK_PROMPT, TIME_PROMPT, WEEKDAYS_PROMPT, WINDOW_PROMPT

FS_SERVICE = 1071896
"""Umschreibung einer ausländischen Fahrerlaubnis: one office, so /subscribe skips the office step."""


def _profiles(db: Database, user_id: int) -> list[BookingProfile]:
    with db.transaction() as session:
        return list(
            session.scalars(
                select(BookingProfile).where(BookingProfile.user_id == user_id).order_by(BookingProfile.id)
            )
        )


def _fill_profile(chat: UserChat, first: str, email: str, birth: str | None) -> None:
    chat.send(first, expect="Your last name?")
    chat.send("Mustermann", expect="Your e-mail address?")
    chat.send(email, expect="Your phone number")
    chat.press("Skip", expect="Your date of birth")
    if birth is None:
        chat.press("Skip", expect="Please check your details:")
    else:
        chat.send(birth, expect="Please check your details:")


def test_two_profiles_a_subscription_for_the_child_export_and_removal(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Tried: a parent stores their own profile, adds "Anna" (a too long label first), subscribes with
    autobook and picks Anna, then /list, /export, and removes Anna. Asserted: the too long label is
    refused and asked again; the child's profile is stored encrypted with its label; /subscribe asks
    whom to book for and the row names Anna's profile; /list says "Books for: Anna"; /export holds
    both profiles decrypted; removing Anna leaves the parent's profile and consent, and the
    subscription falls back to the default profile."""
    chat = UserChat(fake_telegram, 3101)
    chat.send("/profile", expect="Do you agree that I keep these details for booking?")
    chat.press("I agree", expect="Your first name")
    _fill_profile(chat, "Erika", "erika@example.org", None)
    chat.press("Save", expect="Saved ✅")

    chat.send("/profile", expect="Your booking profile (stored encrypted):")
    chat.press("Add a person", expect="Whom is this profile for?")
    chat.send("x" * 31, expect="1 to 30 characters")
    chat.send("Anna", expect="Your first name")
    _fill_profile(chat, "Anna", "erika@example.org", "24.12.2015")
    record = chat.press("Save", expect="Saved ✅")
    assert record is not None
    parent, child = _profiles(bot_db, 3101)
    assert (parent.label, child.label) == (None, "Anna")
    assert child.first_name == "Anna" and child.custom_fields == {"date_of_birth": "24.12.2015"}

    listing = chat.send("/profile", expect="Your booking profiles (stored encrypted)")
    assert listing is not None
    text = listing["params"]["text"]
    assert "1. Myself: Erika Mustermann, e***@example.org" in text and "2. Anna: Anna Mustermann" in text
    chat.press("Close", expect="Cancelled.")

    chat.send("/subscribe", expect="Which service")
    chat.send("ausländischen Führerscheins", expect="Services matching")
    chat.press("Umschreibung eines ausländischen", expect="For how many people?")
    chat.press("1", expect="Which offices?")
    chat.press("Any office", expect=WINDOW_PROMPT[:16])
    chat.press("Any date", expect=WEEKDAYS_PROMPT[:14])
    chat.press("Any day", expect=TIME_PROMPT[:16])
    chat.press("Any time", expect=AUTOBOOK_PROMPT[:30])
    chat.press("Yes, book for me", expect="Whom should MTA book for?")
    summary = chat.press("Anna", expect="Please check your subscription:")
    assert summary is not None and "Books for: Anna" in summary["params"]["text"]
    chat.press("Save", expect="Saved ✅")
    with bot_db.transaction() as session:
        sub = session.scalars(select(Subscription).where(Subscription.user_id == 3101)).one()
        assert sub.autobook and sub.profile_id == child.id

    chat.send("/list", expect="Books for: Anna")

    chat.send("/export")
    exported = fake_telegram.wait_for(lambda r: r["method"] == "sendDocument" and r["chat_id"] == 3101, 20)
    data = json.loads(exported["params"]["document"]["content"])
    assert [(p["label"], p["first_name"], p["email"]) for p in data["booking_profiles"]] == [
        (None, "Erika", "erika@example.org"),
        ("Anna", "Anna", "erika@example.org"),
    ]

    chat.send("/profile", expect="Your booking profiles")
    chat.press("Anna", expect="Booking profile “Anna” (stored encrypted):")
    chat.press("Remove", expect="Remove the booking profile “Anna”?")
    chat.press("Yes, remove it", expect="Your booking profile is removed.")
    assert [p.id for p in _profiles(bot_db, 3101)] == [parent.id]
    assert store.has_consented(bot_db, 3101)
    with bot_db.transaction() as session:
        assert session.get(Subscription, sub.id).profile_id is None  # type: ignore[union-attr]
    chat.send("/list", expect="Books for: Myself")


@pytest.mark.parametrize("language", ["en", "de", "ru", "uk", "tr"])
def test_family_texts_in_every_language(
    language: str, fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Tried: a person reading ``language`` with two stored profiles opens /profile, adds a person and
    sends an empty-looking label. Asserted: the list, the label question, the refusal and the /help
    line come in that language (the catalogue's text, not the English source)."""
    _ = translator(language)
    user_id = 3200 + ["en", "de", "ru", "uk", "tr"].index(language)
    store.ensure_user(bot_db, user_id, language)
    store.record_consent(bot_db, user_id)
    store.save_profile(bot_db, user_id, store.ProfileData("Erika", "Muster", "e@example.org", None, {}))
    store.save_profile(
        bot_db, user_id, store.ProfileData("Max", "Muster", "e@example.org", None, {}, label="Max")
    )
    with bot_db.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None and user.language == language
    chat = UserChat(fake_telegram, user_id, language_code=language)
    heading = _("Your booking profiles (stored encrypted); MTA books for the person a subscription names:")
    if language != "en":
        assert (
            heading
            != "Your booking profiles (stored encrypted); MTA books for the person a subscription names:"
        )
    listing = chat.send("/profile", expect=heading[:30])
    assert listing is not None and "1. " + _("Myself") in listing["params"]["text"]
    label_question = _(
        "Whom is this profile for? Send a short name that you will recognise, like Anna or My son "
        "(only you see it), or tap Myself."
    )
    chat.press(_("Add a person"), expect=label_question[:20])
    chat.send("x" * 31, expect=_("Please send a short name for this person: 1 to 30 characters.")[:25])
    chat.send("/cancel")
    help_line = _(
        "/profile also keeps booking details for your partner and children; /subscribe asks for whom."
    )
    chat.send("/help", expect=help_line[:30])
