"""Captcha relay over Redis: a worker asks a subscriber (through the bot) to read a captcha.

The worker's side (``ask_via_bot``, the ``ask_user`` of ``worker.captcha.RelaySolver``) queues a
request with the challenge image on ``mta:captcha:requests`` and waits on its own answer list; the
bot (``bot.captcha_relay``) sends the image to the person and pushes their reply to that list. Both
sides only need Redis, so the worker never imports the bot. A request carries its expiry: the bot
drops one that is already stale instead of bothering the person.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

REQUESTS_KEY = "mta:captcha:requests"
ANSWER_TTL_S = 60


def answer_key(request_id: str) -> str:
    return f"mta:captcha:answer:{request_id}"


def pending_key(chat_id: int) -> str:
    """The bot's note of the captcha a chat is asked to read (one at a time per chat)."""
    return f"mta:captcha:pending:{chat_id}"


@dataclass(frozen=True)
class CaptchaRequest:
    id: str
    user_id: int
    prompt: str
    image_png: bytes
    expires_at: float
    """Unix seconds."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "user_id": self.user_id,
                "prompt": self.prompt,
                "image_b64": base64.b64encode(self.image_png).decode(),
                "expires_at": self.expires_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> CaptchaRequest:
        data = json.loads(raw)
        return cls(
            id=str(data["id"]),
            user_id=int(data["user_id"]),
            prompt=str(data.get("prompt", "")),
            image_png=base64.b64decode(data["image_b64"]),
            expires_at=float(data["expires_at"]),
        )

    def remaining_s(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)


async def ask_via_bot(redis: Any, user_id: int, image_png: bytes, prompt: str, *, timeout_s: float) -> str:
    """Queue the captcha for ``user_id`` and wait for their answer; TimeoutError when none comes.

    ``redis`` is a ``redis.asyncio.Redis``.
    """
    request = CaptchaRequest(uuid.uuid4().hex, user_id, prompt, image_png, time.time() + timeout_s)
    key = answer_key(request.id)
    await redis.rpush(REQUESTS_KEY, request.to_json())
    try:
        got = await redis.blpop([key], timeout=max(1, int(timeout_s + 0.999)))
    finally:
        await redis.delete(key)
    if got is None:
        raise TimeoutError("nobody answered the relayed captcha in time")
    value = got[1]
    return value.decode() if isinstance(value, bytes) else str(value)


def relay_asker(redis: Any, user_id: int, *, timeout_s: float) -> Callable[[bytes, str], Awaitable[str]]:
    """An ``ask_user`` for ``worker.captcha.RelaySolver`` that asks ``user_id`` through the bot."""

    async def ask(image_png: bytes, prompt: str) -> str:
        return await ask_via_bot(redis, user_id, image_png, prompt, timeout_s=timeout_s)

    return ask


__all__ = [
    "ANSWER_TTL_S",
    "REQUESTS_KEY",
    "CaptchaRequest",
    "answer_key",
    "ask_via_bot",
    "pending_key",
    "relay_asker",
]
