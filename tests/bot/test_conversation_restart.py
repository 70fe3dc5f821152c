"""A conversation in progress survives a bot restart, encrypted at rest, and /delete erases it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from bot.handlers.common import FLOW_KEY, LANGUAGE_KEY, Flow
from bot.persistence import DatabasePersistence
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.db.models import BookingProfile, Conversation, User
from shared.domain import utcnow
from shared.settings import Settings
from tests.bot.conftest import RunningBot, UserChat, build_conversation_application
from tests.support.farm import wait_until

EMAIL = "erika.restart@example.org"


def _raw_conversations(db: Database) -> list[tuple[int, str]]:
    with sqlite3.connect(Path(db.engine.url.database or "")) as raw:
        return [(int(u), str(s)) for u, s in raw.execute("SELECT user_id, state FROM conversations")]


def _profile_up_to_phone(chat: UserChat, first: str, last: str, email: str) -> None:
    chat.send("/profile", expect="Do you agree that I keep these details for booking?")
    chat.press("I agree", expect="Your first name")
    chat.send(first, expect="Your last name?")
    chat.send(last, expect="Your e-mail address?")
    chat.send(email, expect="Your phone number")


def test_profile_conversation_carries_on_after_a_restart(
    fake_telegram: FakeBotApi, bot_settings: Settings, bot_db: Database
) -> None:
    """Injected: the bot shut down (as a deploy does) right after asking for the phone number in
    /profile, then a new Application started on the same database. Asserted: while it is down
    the kept conversation holds none of the typed values in plain text; after the restart the
    "Skip" button of the question sent before the restart still works and the conversation goes
    on; the saved profile has the name and e-mail typed before the restart; once saved, nothing
    of the conversation is kept."""
    chat = UserChat(fake_telegram, 3101)
    bot = RunningBot(build_conversation_application(bot_settings, bot_db)).start()
    try:
        _profile_up_to_phone(chat, "Erika", "Mustermann", EMAIL)
    finally:
        bot.stop()

    kept = _raw_conversations(bot_db)
    assert [user for user, _state in kept] == [3101]
    for secret in (EMAIL, "Mustermann", "Erika"):
        assert secret not in kept[0][1], f"{secret!r} in plain text"

    bot = RunningBot(build_conversation_application(bot_settings, bot_db)).start()
    try:
        chat.press("Skip", expect="Your date of birth")
        chat.send("24.12.1990", expect="Please check your details:")
        chat.press("Save", expect="Saved ✅")
    finally:
        bot.stop()

    with bot_db.transaction() as session:
        profile = session.scalars(select(BookingProfile).where(BookingProfile.user_id == 3101)).one()
        assert (profile.first_name, profile.last_name, profile.email) == ("Erika", "Mustermann", EMAIL)
        assert profile.phone is None
    assert _raw_conversations(bot_db) == []


def test_delete_erases_a_kept_conversation(
    fake_telegram: FakeBotApi, bot_settings: Settings, bot_db: Database
) -> None:
    """Injected: a /profile conversation with a typed e-mail kept in the table, then /cancel and
    /delete (whose confirmation is itself a kept conversation). Asserted: the cancelled
    conversation is no longer kept; confirming /delete erases the kept one with everything else,
    and the bot's next write of its memory (at shutdown at the latest) does not bring it back."""
    chat = UserChat(fake_telegram, 3102)
    bot = RunningBot(build_conversation_application(bot_settings, bot_db)).start()
    try:
        _profile_up_to_phone(chat, "Max", "Muster", "max.muster@example.org")
        wait_until(lambda: _raw_conversations(bot_db), 20, "the conversation kept")
        chat.send("/cancel", expect="Cancelled.")
        wait_until(lambda: not _raw_conversations(bot_db), 20, "the cancelled conversation dropped")
        chat.send("/delete", expect="This cannot be undone.")
        wait_until(lambda: _raw_conversations(bot_db), 20, "the confirmation kept")
        chat.press("Yes, erase everything", expect="everything about you is erased")
        assert _raw_conversations(bot_db) == []
    finally:
        bot.stop()
    assert _raw_conversations(bot_db) == []
    with bot_db.transaction() as session:
        assert session.get(User, 3102) is None


def test_persistence_drops_stale_unreadable_and_orphaned_states(bot_db: Database) -> None:
    """Injected: a kept conversation idle for over the idle timeout, one written by a version whose
    flow had other fields, and a save for a person erased meanwhile. Asserted: the stale one is
    gone at load; the unreadable flow is dropped while its language stays; the orphan save
    writes nothing."""
    persistence = DatabasePersistence(lambda: bot_db)
    with bot_db.transaction() as session:
        session.add_all([User(id=1), User(id=2), User(id=3)])
        session.flush()
        session.add_all(
            [
                Conversation(user_id=1, state={"flow": {"kind": "profile", "step": "email"}}),
                Conversation(user_id=2, state={"flow": {"kind": "x", "shape": "old"}, "language": "de"}),
            ]
        )
    with bot_db.transaction() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.user_id == 1)
            .values(updated_at=utcnow() - timedelta(hours=2))
        )

    loaded = asyncio.run(persistence.get_user_data())
    assert loaded == {2: {LANGUAGE_KEY: "de"}}
    with bot_db.transaction() as session:
        assert session.get(Conversation, 1) is None

    flow = Flow(kind="profile", step="email", data={"first": "Ada"}, touched_at=time.time())
    asyncio.run(persistence.update_user_data(4, {FLOW_KEY: flow}))
    asyncio.run(persistence.update_user_data(3, {FLOW_KEY: flow, LANGUAGE_KEY: "en"}))
    again = asyncio.run(persistence.get_user_data())
    assert set(again) == {2, 3}
    assert again[3][FLOW_KEY] == flow and again[3][LANGUAGE_KEY] == "en"
