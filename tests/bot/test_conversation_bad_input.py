"""Bad input of every kind gets a short clear answer, and the conversation carries on where it was."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.handlers import store
from bot.handlers.common import signer_for
from bot.testing import FakeBotApi
from bot.validation import site_today
from shared.db.database import Database
from shared.db.models import Subscription
from tests.bot.conftest import RunningBot, UserChat

REISEPASS = 1063453


def _to_offices(chat: UserChat) -> None:
    chat.send("/subscribe", expect="Which service")
    chat.press("Reisepass", expect="For how many people?")
    chat.press("1", expect="Which offices?")


def _latest_bot_message_id(api: FakeBotApi, chat_id: int) -> int:
    records = [r for r in api.sent(chat_id) if r["method"] in ("sendMessage", "editMessageText")]
    message_id = records[-1]["message_id"]
    assert isinstance(message_id, int)
    return message_id


def test_forged_and_stale_buttons_are_refused_and_the_conversation_continues(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot
) -> None:
    """Injected: made-up callback data, a real button's data with one character changed, data signed
    for another user, a button of an earlier step, and (after /cancel) a button of the cancelled
    conversation. Asserted: each gets a notice; the set-up continues with the next real button."""
    chat = UserChat(fake_telegram, 5001)
    _to_offices(chat)
    message_id = _latest_bot_message_id(fake_telegram, 5001)
    real = next(b["callback_data"] for b in chat.buttons(message_id) if "Done" in b["text"])
    signer = signer_for(conversation_bot.application.bot_data)
    nonce = real.split("|")[2]
    forged = [
        "od",
        "of|99999999||x",
        real[:-1] + ("A" if real[-1] != "A" else "B"),
        signer.sign(5002, "od", "", nonce),
        "x" * 64,
    ]
    for data in forged:
        mark = fake_telegram.mark()
        chat.press_data(data, message_id)
        chat.popup("This button is not valid", since=mark)
    mark = fake_telegram.mark()
    chat.press_data(signer.sign(5001, "np", 1, nonce), message_id)  # the people step is over
    chat.popup("belongs to an earlier step", since=mark)
    mark = fake_telegram.mark()
    chat.press_data(signer.sign(5001, "of", 1, nonce), message_id)  # not an office of this service
    chat.popup("Unknown choice", since=mark)

    chat.press("Any office", expect="Which dates?")  # the conversation carried on
    stale = next(b["callback_data"] for b in chat.buttons(message_id) if "Next month" in b["text"])
    chat.send("/cancel", expect="Cancelled.")
    mark = fake_telegram.mark()
    chat.press_data(stale, message_id)
    chat.popup("This conversation is over", since=mark)


def test_free_text_bad_dates_and_overlong_messages_mid_conversation(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Injected: text where buttons are expected, 31.02., a window ending before it starts, a window
    in the past, a 5000-character message, a backwards time range, a command of another conversation.
    Asserted: a clear answer each time, and the subscription still completes as chosen."""
    chat = UserChat(fake_telegram, 5003)
    _to_offices(chat)
    chat.send("the one near the station please", expect="Please use the buttons above, or /cancel.")
    chat.send("/list", expect="You are in the middle of setting up a subscription.")
    chat.send("/profile", expect="Continue with the buttons above, or send /cancel first.")
    chat.press("Any office", expect="Which dates?")

    today = site_today()
    chat.send(f"31.02.{today.year + 1}", expect="does not exist in the calendar")
    later, earlier = today + timedelta(days=20), today + timedelta(days=5)
    chat.send(f"{later:%d.%m.%Y} - {earlier:%d.%m.%Y}", expect="before it starts")
    past = today - timedelta(days=40)
    chat.send(f"{past:%d.%m.%Y} - {past + timedelta(days=3):%d.%m.%Y}", expect="is in the past")
    chat.send("next tuesday", expect="is not a date")
    chat.send("x" * 5000, expect="That message is too long (5000 characters; at most 4096).")
    chat.send("y" * 400, expect="That message is too long (400 characters; at most 300).")
    chat.send(f"{earlier:%d.%m.%Y}-{later:%d.%m.%Y}", expect="Which weekdays?")

    chat.press("Any day", expect="Which time of day?")
    chat.send("12:00-08:00", expect="The time range ends (08:00) before it starts (12:00).")
    chat.send("25:00-26:00", expect="is not a time of day")
    chat.press("From noon", expect="may MTA book it")
    chat.send("yes", expect="Please use the buttons above, or /cancel.")
    chat.press("No, only alert me", expect="Please check your subscription:")
    chat.press("Back", expect="may MTA book it")
    chat.press("No, only alert me", expect="Please check your subscription:")
    chat.press("Save", expect="Saved ✅")
    with bot_db.transaction() as session:
        sub = session.scalars(select(Subscription).where(Subscription.user_id == 5003)).one()
    assert (sub.date_from, sub.date_to) == (earlier, later)
    assert sub.office_ids == [] and sub.weekdays == []
    assert sub.time_from is not None and sub.time_from.hour == 12 and sub.time_to is None


def test_nearest_offices_from_a_shared_location(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot
) -> None:
    """ "Nearest to me" asks for a location; typed text meanwhile is answered; the shared location
    (Marienplatz) ticks the three nearest offices offering the service, listed by distance."""
    chat = UserChat(fake_telegram, 5004)
    _to_offices(chat)
    prompt = chat.press("Nearest to me", expect="📍")
    assert prompt is not None
    assert prompt["params"]["reply_markup"]["keyboard"][0][0]["request_location"] is True
    fake_telegram.wait_for_text(5004, "Share your location")
    chat.send("Marienplatz", expect="Please share your location with the 📍 button")
    record = chat.share_location(48.1374, 11.5755, expect="Which offices?")
    assert record is not None
    rows = record["params"]["reply_markup"]["inline_keyboard"]
    ticked = [row[0]["text"] for row in rows if row[0]["text"].startswith("✅")]
    assert len(ticked) == 3 and all(" km · " in label for label in ticked)
    assert rows[0][0]["text"].startswith("✅")  # nearest first
    chat.press("Done", expect="Which dates?")


def test_unknown_commands_other_messages_and_no_conversation(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot
) -> None:
    """An unknown command, a sticker, text and a location outside any conversation, /cancel with
    nothing to cancel: each gets a short hint."""
    chat = UserChat(fake_telegram, 5005)
    chat.send("/frobnicate", expect="I do not know that command.")
    chat.send("hello?", expect="I did not understand that.")
    chat.send("/cancel", expect="There is nothing to cancel.")
    chat.share_location(48.1, 11.5, expect="I only need a location while you choose offices")
    mark = fake_telegram.mark()
    fake_telegram.push_update(
        {
            "message": {
                "message_id": 999,
                "from": {"id": 5005, "is_bot": False, "first_name": "T", "language_code": "en"},
                "chat": {"id": 5005, "type": "private", "first_name": "T"},
                "date": 1_800_000_000,
                "sticker": {
                    "file_id": "s1",
                    "file_unique_id": "u1",
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                },
            }
        }
    )
    fake_telegram.wait_for_text(5005, "I can only read text", 20, since=mark)


def test_a_failing_handler_answers_the_user_and_the_bot_keeps_running(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: the database call behind /list raises (its message holds an e-mail address).
    Asserted: the user gets the short apology (no stack trace, no error text) and /help still works."""

    def broken(db: Database, user_id: int) -> list[Any]:
        raise RuntimeError("boom for someone@example.org")

    monkeypatch.setattr(store, "subscriptions_of", broken)
    chat = UserChat(fake_telegram, 5006)
    record = chat.send("/list", expect="Sorry, something went wrong on my side.")
    assert record is not None and "boom" not in record["params"]["text"]
    monkeypatch.undo()
    chat.send("/help", expect="What I can do")


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    inputs=st.lists(
        st.one_of(
            st.tuples(st.just("text"), st.text(min_size=1, max_size=300).filter(lambda s: s.strip() != "")),
            st.tuples(st.just("button"), st.text(min_size=1, max_size=64)),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_generated_updates_never_break_the_conversation(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, inputs: list[tuple[str, str]]
) -> None:
    """Injected: hypothesis-generated texts (any Unicode, commands included) and button data in the
    middle of /subscribe. Asserted: every input is answered, no answer shows a stack trace, and the
    conversation still reaches the next step afterwards."""
    chat = UserChat(fake_telegram, 5007)
    chat.send("/cancel")
    chat.send("/subscribe", expect="Which service")
    message_id = _latest_bot_message_id(fake_telegram, 5007)
    for kind, value in inputs:
        mark = fake_telegram.mark()
        if kind == "text":
            fake_telegram.push_message(5007, value)
            reply = fake_telegram.wait_for(
                lambda r: r["chat_id"] == 5007 and r["method"] in ("sendMessage", "sendDocument"),
                20,
                since=mark,
            )
        else:
            fake_telegram.push_callback(5007, value, message_id=message_id)
            reply = fake_telegram.wait_for(lambda r: r["method"] == "answerCallbackQuery", 20, since=mark)
        shown = str(reply["params"].get("text", "")) + str(reply["params"].get("caption", ""))
        assert "Traceback" not in shown and "Error" not in shown
    chat.send("/cancel")
    chat.send("/subscribe", expect="Which service")
    chat.press("Reisepass", expect="For how many people?")
