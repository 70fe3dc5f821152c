"""The fake Bot API answers python-telegram-bot the way Telegram does, over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, RetryAfter, TimedOut
from telegram.request import HTTPXRequest

from bot.testing import FakeBotApi


def _bot(api: FakeBotApi, read_timeout_s: float = 5.0) -> Bot:
    return Bot(api.token, base_url=api.base_url, request=HTTPXRequest(read_timeout=read_timeout_s))


def test_send_edit_and_read_back(fake_telegram: FakeBotApi) -> None:
    """sendMessage with a keyboard, then editMessageText: the record and the user's view agree."""

    async def run() -> None:
        async with _bot(fake_telegram) as bot:
            me = await bot.get_me()
            assert me.is_bot and me.username == "mta_test_bot"
            markup = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go:1")]])
            message = await bot.send_message(42, "<b>hello</b>", parse_mode="HTML", reply_markup=markup)
            assert message.message_id == 1 and message.chat.id == 42
            edited = await bot.edit_message_text("bye", chat_id=42, message_id=message.message_id)
            assert not isinstance(edited, bool) and edited.text == "bye"
            with pytest.raises(BadRequest, match=r"(?i)not modified"):
                await bot.edit_message_text("bye", chat_id=42, message_id=message.message_id)
            with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
                await bot.edit_message_text("x", chat_id=42, message_id=99)
            with pytest.raises(BadRequest, match=r"(?i)can.t parse entities"):
                await bot.send_message(42, "<b>open", parse_mode="HTML")
            with pytest.raises(BadRequest, match=r"(?i)too long"):
                await bot.send_message(42, "x" * 4097)

    asyncio.run(run())
    sent = fake_telegram.sent(42, "sendMessage")
    assert len(sent) == 1
    assert sent[0]["params"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "go:1"
    assert fake_telegram.message(42, 1)["text"] == "bye"
    assert fake_telegram.wait_for_text(42, "bye")["method"] == "editMessageText"


def test_updates_by_long_polling_and_callbacks(fake_telegram: FakeBotApi) -> None:
    """Pushed messages, locations and button presses arrive through getUpdates with offsets."""
    fake_telegram.push_message(7, "/start", language_code="de")
    fake_telegram.push_location(7, 48.137, 11.575)

    async def run() -> None:
        async with _bot(fake_telegram) as bot:
            updates = await bot.get_updates(timeout=1)
            assert [u.update_id for u in updates] == [1, 2]
            first = updates[0].message
            assert first is not None and first.text == "/start" and first.from_user is not None
            assert first.from_user.language_code == "de"
            assert first.entities[0].type == "bot_command"
            location = updates[1].message
            assert location is not None and location.location is not None
            assert location.location.latitude == pytest.approx(48.137)
            sent = await bot.send_message(
                7,
                "pick",
                reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]]),
            )
            fake_telegram.press(7, "Yes")
            later = await bot.get_updates(offset=3, timeout=2)
            assert len(later) == 1 and later[0].callback_query is not None
            query = later[0].callback_query
            assert query.data == "yes" and query.message is not None
            assert query.message.message_id == sent.message_id
            assert await query.answer()
            with pytest.raises(BadRequest, match=r"(?i)query is too old"):
                await bot.answer_callback_query(query.id)
            assert await bot.get_updates(offset=4, timeout=0) == ()

    asyncio.run(run())
    assert fake_telegram.pending_updates() == 0


def test_faults_and_blocks(fake_telegram: FakeBotApi) -> None:
    """Injected 429 (with retry_after), 500, slow answers and a blocked user surface as PTB errors."""
    fake_telegram.fail("sendMessage", status=429, retry_after=3, times=1)
    fake_telegram.fail("sendMessage", status=500, times=1)
    fake_telegram.fail("sendMessage", status=200, delay_s=4.0, times=1)
    fake_telegram.block(99)

    async def run() -> None:
        async with _bot(fake_telegram, read_timeout_s=2.0) as bot:  # the slow answer takes 4 s
            with pytest.raises(RetryAfter) as retry:
                await bot.send_message(1, "a")
            assert retry.value.retry_after == timedelta(seconds=3)
            with pytest.raises(Exception, match="Internal Server Error"):
                await bot.send_message(1, "b")
            with pytest.raises(TimedOut):
                await bot.send_message(1, "c")
            with pytest.raises(Forbidden, match="blocked"):
                await bot.send_message(99, "d")
            await bot.send_message(1, "e")

    asyncio.run(run())
    # the slow one was performed after the client gave up, as Telegram would
    fake_telegram.wait_for_text(1, "c")
    assert fake_telegram.texts(1) == ["e", "c"] or fake_telegram.texts(1) == ["c", "e"]
    assert [a["status"] for a in fake_telegram.attempts("sendMessage")][:2] == [429, 500]


def test_flood_limit_answers_429() -> None:
    """Beyond the overall limit the fake answers 429 with retry_after, like Telegram."""
    with FakeBotApi(flood_limit_per_s=1) as api, httpx.Client() as http:
        url = f"{api.base_url}{api.token}/sendMessage"
        statuses = [http.post(url, data={"chat_id": "1", "text": str(i)}).status_code for i in range(6)]
        assert 429 in statuses
        refused = [a for a in api.attempts("sendMessage") if a["status"] == 429]
        assert refused and statuses.count(200) == len(api.sent(1))
        body = http.post(url, json={"chat_id": 1, "text": "x"}).json()
        if not body["ok"]:
            assert body["error_code"] == 429 and body["parameters"]["retry_after"] >= 1


def test_multipart_document_and_bad_token(fake_telegram: FakeBotApi) -> None:
    """sendDocument's multipart upload is recorded with its bytes; a wrong token gets 401."""

    async def run() -> None:
        async with _bot(fake_telegram) as bot:
            message = await bot.send_document(5, b'{"a": 1}', filename="export.json", caption="Your data")
            assert message.document is not None and message.document.file_name == "export.json"

    asyncio.run(run())
    document = fake_telegram.sent(5, "sendDocument")[0]["params"]["document"]
    assert document["content"] == b'{"a": 1}' and document["file_name"] == "export.json"
    answer = httpx.get(f"{fake_telegram.base_url}0:WRONG/getMe")
    assert answer.status_code == 401 and answer.json() == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
