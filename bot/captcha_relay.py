"""The bot's half of the captcha relay (``shared.captcha_relay``): show the picture, pass the answer on.

A worker that meets a captcha the page cannot solve by itself queues a request; ``CaptchaRelay``
(started in ``post_init``) sends the picture to the subscriber with a "reply to this message"
prompt and notes it per chat. The person's reply to that very message is pushed back to the waiting
worker (``on_reply``, registered ahead of the conversations, stops other handlers from seeing it).
Requests that expired while queued are dropped; the worker's own timeout covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, ForceReply, Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes, MessageHandler, filters

from bot.i18n import translator
from shared.captcha_relay import ANSWER_TTL_S, REQUESTS_KEY, CaptchaRequest, answer_key, pending_key
from shared.db.database import Database
from shared.db.models import User
from shared.logging import get_logger

MAX_ANSWER_CHARS = 100
HANDLER_GROUP = -100
"""Ahead of the conversations (group 0 and up), so a captcha answer is not taken for bad input."""

log = get_logger("mta.bot.captcha")


def _language(db: Database | None, user_id: int) -> str | None:
    if db is None:
        return None
    with db.transaction() as session:
        user = session.get(User, user_id)
        return user.language if user else None


@dataclass
class CaptchaRelay:
    """Takes captcha requests from Redis and shows them to the people asked."""

    bot: Bot
    redis: Any
    db: Database | None = None
    poll_s: int = 1
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def __aenter__(self) -> CaptchaRelay:
        self._task = asyncio.create_task(self._loop(), name="captcha-relay")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        delay_s = 0.5
        while True:
            try:
                item = await self.redis.blpop([REQUESTS_KEY], timeout=self.poll_s)
                delay_s = 0.5
                if item is not None:
                    await self.show(CaptchaRequest.from_json(item[1]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("captcha_relay_error", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)

    async def show(self, request: CaptchaRequest) -> None:
        remaining_s = request.remaining_s()
        if remaining_s < 5:
            log.info("captcha_request_expired", request_id=request.id)
            return
        language = await asyncio.to_thread(_language, self.db, request.user_id)
        _ = translator(language)
        minutes = max(1, int(remaining_s // 60))
        caption = "\n".join(
            part
            for part in (
                _("The city's site shows a captcha that MTA cannot solve by itself."),
                request.prompt,
                _("Reply to this message with what the picture shows, within {minutes} min.").format(
                    minutes=minutes
                ),
            )
            if part
        )
        try:
            message = await self.bot.send_photo(
                request.user_id,
                request.image_png,
                caption=caption[:1024],
                reply_markup=ForceReply(
                    selective=True, input_field_placeholder=_("Characters in the picture")
                ),
            )
        except TelegramError as exc:
            log.warning("captcha_not_shown", request_id=request.id, error=f"{type(exc).__name__}: {exc}")
            return
        note = {"id": request.id, "message_id": message.message_id}
        await self.redis.set(pending_key(request.user_id), json.dumps(note), ex=max(1, int(remaining_s)))
        log.info("captcha_shown", request_id=request.id)


async def on_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A reply to the captcha picture: hand it to the waiting worker and stop other handlers."""
    message = update.effective_message
    client = context.application.bot_data.get("redis")
    if message is None or message.reply_to_message is None or client is None or not message.text:
        return
    raw = await client.get(pending_key(message.chat_id))
    if raw is None:
        return
    note = json.loads(raw)
    if message.reply_to_message.message_id != note.get("message_id"):
        return
    key = answer_key(str(note["id"]))
    await client.rpush(key, message.text.strip()[:MAX_ANSWER_CHARS])
    await client.expire(key, ANSWER_TTL_S)
    await client.delete(pending_key(message.chat_id))
    _ = translator(message.from_user.language_code if message.from_user else None)
    await message.reply_text(_("Thanks, passed on to the site."))
    raise ApplicationHandlerStop


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    application.add_handler(
        MessageHandler(filters.TEXT & filters.REPLY & ~filters.COMMAND, on_reply), group=HANDLER_GROUP
    )


__all__ = ["HANDLER_GROUP", "CaptchaRelay", "on_reply", "register"]
