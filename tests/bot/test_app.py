"""The bot Application: lifecycle, heartbeat, webhook mode with its secret, the `mta bot` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from telegram import Update
from telegram.ext import ContextTypes, MessageHandler, filters

from api.app import render_metrics
from bot.app import HEARTBEAT_KEY, build_application, running
from bot.testing import FakeBotApi
from bot.testing.outbox import seed_slot_alerts, statuses
from shared.captcha_relay import ask_via_bot
from shared.db.database import Database
from shared.settings import Settings
from tests.conftest import free_port
from tests.support.farm import wait_until


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
        [sys.executable, "-m", "mta", "bot"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "MTA_TELEGRAM_TOKEN" in result.stderr


def test_mta_bot_writes_its_metrics_where_the_api_serves_them(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """The `mta bot` command, started as the farm starts it (no Prometheus folder in its
    environment), sends three alerts; the status service's /metrics rendering of the data folder
    then shows them as sent, with their detection latencies."""
    seed_slot_alerts(bot_db, 3)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "MTA_ENV": "test",
        "MTA_DATA_DIR": str(bot_settings.data_dir),
        "MTA_REDIS_URL": bot_settings.redis_url,
        "MTA_TELEGRAM_TOKEN": fake_telegram.token,
        "MTA_TELEGRAM_API_BASE_URL": bot_settings.telegram_api_base_url,
        "MTA_OUTBOX_SWEEP_S": "0.5",
    }
    process = subprocess.Popen([sys.executable, "-m", "mta", "bot"], env=env)
    try:
        wait_until(lambda: statuses(bot_db).get("sent") == 3, 60, "three alerts sent")
        process.terminate()
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = render_metrics(bot_settings.metrics_dir).decode()
    assert 'mta_alerts_total{status="sent"} 3.0' in text
    assert "mta_detection_latency_seconds_count 3.0" in text


def test_captcha_relay_shows_the_picture_and_passes_the_reply_back(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """A worker's relay request reaches the person as a photo; their reply to it comes back to the
    waiting worker; an unanswered one times out on the worker's side."""
    picture = b"\x89PNG\r\n\x1a\nfake-captcha"

    async def main() -> None:
        client = aioredis.Redis.from_url(bot_settings.redis_url)
        worker_client = aioredis.Redis.from_url(bot_settings.redis_url)
        application = build_application(bot_settings, db=bot_db, redis=client)
        try:
            async with running(application):
                asking = asyncio.create_task(
                    ask_via_bot(worker_client, 31, picture, "Bitte Zeichen eingeben.", timeout_s=20)
                )
                shown = await asyncio.to_thread(
                    fake_telegram.wait_for, lambda r: r["method"] == "sendPhoto" and r["chat_id"] == 31, 15
                )
                assert shown["params"]["photo"]["content"] == picture
                assert "Bitte Zeichen eingeben." in shown["params"]["caption"]
                fake_telegram.push_message(31, "x7Kp2", reply_to=shown["message_id"])
                assert await asyncio.wait_for(asking, 15) == "x7Kp2"
                await asyncio.to_thread(fake_telegram.wait_for_text, 31, "passed on", 15)
                with pytest.raises(TimeoutError):
                    await ask_via_bot(worker_client, 32, picture, "", timeout_s=1)
        finally:
            await client.aclose()
            await worker_client.aclose()

    asyncio.run(main())
