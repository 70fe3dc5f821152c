"""The bot Application: lifecycle, heartbeat, webhook mode with its secret, the `mta bot` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import redis.asyncio as aioredis
from telegram import Update
from telegram.ext import ContextTypes, MessageHandler, filters

from bot.app import HEARTBEAT_KEY, build_application, running
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.settings import Settings
from tests.conftest import free_port


async def _pong(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None
    await context.bot.send_message(update.effective_chat.id, "pong")


async def _boom(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    raise RuntimeError("handler bug")


def test_polling_heartbeat_and_a_failing_handler(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Running with polling: the heartbeat appears in Redis; a handler that raises is logged and the
    bot keeps answering."""

    async def main() -> dict[str, Any]:
        client = aioredis.Redis.from_url(bot_settings.redis_url)
        application = build_application(bot_settings, db=bot_db, redis=client)
        application.add_handler(MessageHandler(filters.Regex("^boom$"), _boom), group=-2)
        application.add_handler(MessageHandler(filters.Regex("^ping$"), _pong), group=-1)
        try:
            async with running(application):
                fake_telegram.push_message(11, "boom")
                fake_telegram.push_message(11, "ping")
                await asyncio.to_thread(fake_telegram.wait_for_text, 11, "pong", 15)
                for _ in range(100):
                    raw = await client.get(HEARTBEAT_KEY)
                    if raw:
                        break
                    await asyncio.sleep(0.1)
                ttl = await client.ttl(HEARTBEAT_KEY)
                assert raw is not None and 0 < ttl <= 30
                return dict(json.loads(raw))
        finally:
            await client.aclose()

    beat = asyncio.run(main())
    assert beat["mode"] == "polling" and beat["pid"] == os.getpid() and beat["at"]
    assert set(beat["sender"]) >= {"sent", "retried", "dead", "last_drain_at"}
    assert fake_telegram.pending_updates() == 0


def test_webhook_mode_checks_the_secret_token(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Webhook mode: the bot registers its URL and secret; updates with the secret are handled,
    a POST without it is refused with 403."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"

    async def main() -> None:
        application = build_application(bot_settings, db=bot_db)
        application.add_handler(MessageHandler(filters.Regex("^ping$"), _pong), group=-1)
        async with application:
            assert application.updater is not None
            await application.updater.start_webhook(
                listen="127.0.0.1", port=port, url_path="hook", webhook_url=url, secret_token="s3cret-token"
            )
            await application.start()
            try:
                assert fake_telegram.webhook == {"url": url, "secret_token": "s3cret-token"}
                await asyncio.to_thread(fake_telegram.push_message, 12, "ping")
                await asyncio.to_thread(fake_telegram.wait_for_text, 12, "pong", 15)
                async with httpx.AsyncClient() as http:
                    forged = await http.post(url, json={"update_id": 999, "message": {}})
                assert forged.status_code == 403
            finally:
                await application.updater.stop()
                await application.stop()

    asyncio.run(main())
    assert [status for _, status in fake_telegram.webhook_deliveries] == [200]


def test_mta_bot_without_token_says_so(tmp_path: Any, redis_url: str) -> None:
    env = {**os.environ, "MTA_DATA_DIR": str(tmp_path), "MTA_REDIS_URL": redis_url, "MTA_TELEGRAM_TOKEN": ""}
    result = subprocess.run(
        [sys.executable, "-m", "shared", "bot"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "MTA_TELEGRAM_TOKEN" in result.stderr
