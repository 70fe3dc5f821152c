"""Bot fixtures: the fake Telegram Bot API, settings pointing at it, a migrated SQLite database.

Helper B2 adds fixtures for the conversations below; the ones here are shared by every bot test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.settings import Settings, load_settings
from tests.support.databases import MigratedTemplates, open_migrated


@pytest.fixture
def fake_telegram() -> Iterator[FakeBotApi]:
    """A fresh fake Bot API server on a free port (flood limit on, like Telegram's)."""
    with FakeBotApi() as api:
        yield api


@pytest.fixture
def bot_settings(tmp_path: Path, redis_url: str, fake_telegram: FakeBotApi) -> Settings:
    """Settings for a bot talking to ``fake_telegram``, with SQLite in a temp folder."""
    return load_settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        pacer="none",
        env="test",
        telegram_token=fake_telegram.token,
        telegram_api_base_url=fake_telegram.base_url,
    )


@pytest.fixture
def bot_db(bot_settings: Settings, migrated_templates: MigratedTemplates) -> Iterator[Database]:
    """The migrated database of ``bot_settings``."""
    database = open_migrated(bot_settings, migrated_templates)
    yield database
    database.close()


# --- conversations (helper B2) ----------------------------------------------------------------------


class RunningBot:
    """The real ``Application`` polling ``fake_telegram`` from its own event loop in a thread.

    Tests stay synchronous and act as users through the fake server (``push_message``, ``press``);
    the bot answers over HTTP as it would against Telegram. The lifecycle hooks (``post_init``: the
    outbox sender, Redis, the captcha relay) are not run: the conversations need only the database,
    and a sender draining rows a test seeds would send messages the test does not expect.
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bot-under-test", daemon=True)

    def _call(self, coro: Any, timeout_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start(self) -> RunningBot:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        await self.application.initialize()
        await self.application.start()
        assert self.application.updater is not None
        await self.application.updater.start_polling(poll_interval=0.0, timeout=1)

    async def _stop(self) -> None:
        if self.application.updater is not None and self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    def stop(self) -> None:
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def build_conversation_application(settings: Settings, db: Database) -> Any:
    """The bot's own ``build_application``, as ``mta bot`` builds it."""
    from bot.app import build_application

    return build_application(settings, db=db)


@pytest.fixture
def conversation_bot(
    fake_telegram: FakeBotApi, bot_settings: Settings, bot_db: Database
) -> Iterator[RunningBot]:
    """The bot's real Application, polling ``fake_telegram``, on ``bot_db``."""
    bot = RunningBot(build_conversation_application(bot_settings, bot_db)).start()
    try:
        yield bot
    finally:
        bot.stop()


class UserChat:
    """One person in a private chat with the bot, as seen through the fake server."""

    def __init__(self, api: FakeBotApi, chat_id: int, language_code: str = "en") -> None:
        self.api = api
        self.chat_id = chat_id
        self.language_code = language_code

    def send(self, text: str, expect: str | None = None, timeout_s: float = 20.0) -> dict[str, Any] | None:
        """Type ``text``; with ``expect``, wait for the bot's message (or edit) containing it."""
        mark = self.api.mark()
        self.api.push_message(self.chat_id, text, language_code=self.language_code)
        return self.api.wait_for_text(self.chat_id, expect, timeout_s, since=mark) if expect else None

    def press(
        self,
        label: str,
        expect: str | None = None,
        *,
        expect_button: str | None = None,
        timeout_s: float = 20.0,
    ) -> dict[str, Any] | None:
        """Press the button labelled ``label`` on the latest message showing it; optionally wait for a
        text containing ``expect`` or a keyboard with a button containing ``expect_button``."""
        mark = self.api.mark()
        self.api.press(self.chat_id, label, language_code=self.language_code)
        if expect_button is not None:
            wanted = expect_button

            def has_button(record: dict[str, Any]) -> bool:
                markup = record["params"].get("reply_markup") or {}
                rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
                return record["chat_id"] == self.chat_id and any(
                    wanted in button.get("text", "") for row in rows for button in row
                )

            return self.api.wait_for(has_button, timeout_s, since=mark)
        return self.api.wait_for_text(self.chat_id, expect, timeout_s, since=mark) if expect else None

    def press_data(self, data: str, message_id: int, expect: str | None = None) -> dict[str, Any] | None:
        mark = self.api.mark()
        self.api.push_callback(self.chat_id, data, message_id=message_id, language_code=self.language_code)
        return self.api.wait_for_text(self.chat_id, expect, 20.0, since=mark) if expect else None

    def share_location(self, lat: float, lon: float, expect: str | None = None) -> dict[str, Any] | None:
        mark = self.api.mark()
        self.api.push_location(self.chat_id, lat, lon, language_code=self.language_code)
        return self.api.wait_for_text(self.chat_id, expect, 20.0, since=mark) if expect else None

    def popup(self, contains: str, *, since: int, timeout_s: float = 20.0) -> dict[str, Any]:
        """The answerCallbackQuery notice containing ``contains``."""
        return self.api.wait_for(
            lambda r: r["method"] == "answerCallbackQuery" and contains in str(r["params"].get("text", "")),
            timeout_s,
            since=since,
        )

    def buttons(self, message_id: int) -> list[dict[str, Any]]:
        markup = self.api.message(self.chat_id, message_id).get("reply_markup") or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]


def run_bot(settings: Settings, db: Database, body: Callable[[Any], Awaitable[Any]]) -> None:
    """Run the real bot Application (sender included) against the fake Bot API while ``body(app)``
    runs, then stop it."""
    import redis.asyncio

    from bot.app import build_application, running

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(settings.redis_url)
        application = build_application(settings, db=db, redis=client)
        try:
            async with running(application):
                await body(application)
        finally:
            await client.aclose()

    asyncio.run(main())


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait (polling in a thread: conditions read the database) until ``condition()`` holds; fail
    after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await asyncio.to_thread(condition):
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
