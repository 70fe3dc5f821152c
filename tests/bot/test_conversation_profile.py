"""/profile: the site's own rules refuse bad values before anything is stored; values are encrypted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import select

from bot.handlers import store
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.db.models import BookingProfile
from shared.settings import Settings
from tests.bot.conftest import RunningBot, UserChat

EMAIL = "erika.mustermann@example.org"
EINBUERGERUNG = 1071907


def test_profile_refuses_plus_address_and_stores_valid_one_encrypted(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database, bot_settings: Settings
) -> None:
    """Injected: "a+b@example.org" (the city refuses "+"), a phone with letters, 31.02.1990. Asserted:
    each gets a clear refusal and the same question again; the valid profile is stored, readable
    through the model, and none of its values appears in plain text in the SQLite files."""
    chat = UserChat(fake_telegram, 3001)
    chat.send("/profile", expect="Do you agree that I keep these details for booking?")
    chat.press("I agree", expect="Your first name")
    chat.send("Erika", expect="Your last name?")
    chat.send("Mustermann", expect="Your e-mail address?")
    chat.send("a+b@example.org", expect="does not accept this e-mail address")
    with bot_db.transaction() as session:
        assert session.scalars(select(BookingProfile)).first() is None
    chat.send(EMAIL, expect="Your phone number")
    chat.send("call me maybe", expect="does not accept this phone number")
    chat.send("+49 151 2345678", expect="Your date of birth")
    chat.send("31.02.1990", expect="Please send your date of birth like 24.12.1990")
    chat.send("24.12.1990", expect="Please check your details:")
    chat.press("Save", expect="Saved ✅")

    with bot_db.transaction() as session:
        profile = session.scalars(select(BookingProfile).where(BookingProfile.user_id == 3001)).one()
        assert (profile.first_name, profile.last_name, profile.email) == ("Erika", "Mustermann", EMAIL)
        assert profile.phone == "+491512345678"
        assert profile.custom_fields == {"date_of_birth": "24.12.1990"}

    db_file = Path(bot_db.engine.url.database or "")
    with sqlite3.connect(db_file) as raw:
        stored = raw.execute("SELECT first_name, last_name, email, phone FROM booking_profiles").fetchone()
    assert stored is not None and EMAIL not in str(stored) and "Mustermann" not in str(stored)
    for path in db_file.parent.glob(db_file.name + "*"):  # the database and its WAL
        content = path.read_bytes()
        for secret in (EMAIL, "Mustermann", "+491512345678", "24.12.1990"):
            assert secret.encode() not in content, f"{secret!r} in plain text in {path.name}"

    record = chat.send("/profile", expect="Your booking profile (stored encrypted):")
    assert record is not None and "e***@example.org" in record["params"]["text"]
    assert EMAIL not in record["params"]["text"]


def test_profile_skip_back_and_remove(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Back returns to the previous question, Skip leaves optional fields empty, Remove deletes the row."""
    chat = UserChat(fake_telegram, 3002)
    chat.send("/profile", expect="Do you agree that I keep these details for booking?")
    chat.press("I agree", expect="Your first name")
    chat.send("Max", expect="Your last name?")
    chat.press("Back", expect="Your first name")
    chat.send("Moritz", expect="Your last name?")
    chat.send("Muster", expect="Your e-mail address?")
    chat.send("max@example.org", expect="Your phone number")
    chat.press("Skip", expect="Your date of birth")
    chat.press("Skip", expect="Please check your details:")
    chat.press("Save", expect="Saved ✅")
    with bot_db.transaction() as session:
        profile = session.scalars(select(BookingProfile).where(BookingProfile.user_id == 3002)).one()
        assert profile.first_name == "Moritz" and profile.phone is None and not profile.custom_fields
    chat.send("/profile", expect="Your booking profile")
    chat.press("Remove", expect="Remove your booking profile?")
    chat.press("Yes, remove it", expect="Your booking profile is removed.")
    with bot_db.transaction() as session:
        assert session.scalars(select(BookingProfile).where(BookingProfile.user_id == 3002)).first() is None


def test_case_number_is_asked_only_of_einbuergerung_subscribers(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Someone subscribed to Einbürgerung is asked for the case number the office's form requires;
    an overlong answer is refused; the answer lands in custom_fields["case_reference"]."""
    store.ensure_user(bot_db, 3003, "en")
    draft = store.SubscriptionDraft(EINBUERGERUNG, 1, [], None, None, [], None, None, True)
    store.save_subscription(bot_db, 3003, draft, None)
    chat = UserChat(fake_telegram, 3003)
    chat.send("/profile", expect="Do you agree that I keep these details for booking?")
    chat.press("I agree", expect="Your first name")
    chat.send("Ada", expect="Your last name?")
    chat.send("Lovelace", expect="Your e-mail address?")
    chat.send("ada@example.org", expect="Your phone number")
    chat.press("Skip", expect="Your date of birth")
    chat.press("Skip", expect="case number")
    chat.send("x" * 251, expect="Please send at most 250 characters.")
    chat.send("EB-2026-0042, Frau Beispiel", expect="Case number: EB-2026-0042, Frau Beispiel")
    chat.press("Save", expect="Saved ✅")
    with bot_db.transaction() as session:
        profile = session.scalars(select(BookingProfile).where(BookingProfile.user_id == 3003)).one()
        assert profile.custom_fields == {"case_reference": "EB-2026-0042, Frau Beispiel"}
