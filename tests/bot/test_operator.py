"""The kill switch from Telegram: /stopsite and /resumesite work in an operator chat only."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from bot.app import build_application, running
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.killswitch import key, site_stopped
from shared.settings import Settings

OPERATOR = 900
PERSON = 901


def test_operator_chat_stops_and_resumes_a_site_and_nobody_else_can(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected: "/stopsite munich drill" from a person's chat, then from the operator chat, then
    "/sites" and "/resumesite munich" from the operator chat. Asserted: the person's command
    leaves the switch off; the operator's sets it (with the reason) and lifts it again, each
    answered. (Tried: without the chat filter the person's command stops the site.)"""
    settings = bot_settings.model_copy(update={"operator_chat_ids": [OPERATOR]})
    sync = redis.Redis.from_url(settings.redis_url)

    async def main() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        application = build_application(settings, db=bot_db, redis=client)
        try:
            async with running(application):
                fake_telegram.push_message(PERSON, "/stopsite munich drill")
                # the person gets the unknown-command answer, and nothing else happens
                await asyncio.to_thread(fake_telegram.wait_for, lambda r: r["chat_id"] == PERSON, 15)
                assert not site_stopped(sync, "munich")
                fake_telegram.push_message(OPERATOR, "/stopsite munich drill")
                stopped = "Stopped: no request goes to munich"
                await asyncio.to_thread(fake_telegram.wait_for_text, OPERATOR, stopped, 15)
                assert site_stopped(sync, "munich")
                assert b"drill" in (sync.get(key("munich")) or b"")
                fake_telegram.push_message(OPERATOR, "/sites")
                await asyncio.to_thread(fake_telegram.wait_for_text, OPERATOR, "munich: stopped at", 15)
                fake_telegram.push_message(OPERATOR, "/resumesite munich")
                await asyncio.to_thread(fake_telegram.wait_for_text, OPERATOR, "Resumed: munich", 15)
                assert not site_stopped(sync, "munich")
        finally:
            await client.aclose()

    asyncio.run(main())
