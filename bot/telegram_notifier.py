"""Telegram behind the ``Notifier`` seam (``shared.notify``): sends or edits one alert through the
application's bot (its ``AIORateLimiter`` paces the requests) and maps Telegram's answers to the
seam's failure types.

The wire mark: ``OutboxRequest`` (the bot's request class) calls the current row's ``WireHook``
right before the HTTP request leaves, below the rate limiter, so rows waiting for their turn are
still only claimed; an error answer from Telegram calls ``on_refused`` (it did not perform the call).
"""

from __future__ import annotations

import contextvars
from datetime import timedelta
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest, RequestData

from shared.db.models import NotificationChannel
from shared.logging import get_logger
from shared.notify import Delivered, Outgoing, RecipientGone, Rejected, RetryLater, WireHook

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

log = get_logger("mta.bot.telegram")

CURRENT_SEND: contextvars.ContextVar[WireHook | None] = contextvars.ContextVar(
    "mta_current_send", default=None
)


class OutboxRequest(HTTPXRequest):
    """``HTTPXRequest`` that marks the current outbox row ``sending`` just before the bytes leave."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        hook = CURRENT_SEND.get()
        if hook is not None:
            await hook.on_wire()
        code, payload = await super().do_request(
            url,
            method,
            request_data=request_data,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
        )
        if hook is not None and code != 200:
            await hook.on_refused()  # an error answer: Telegram did not perform the call
        return code, payload


class TelegramNotifier:
    """Sends (or edits) alerts in Telegram chats; the recipient is the chat id."""

    channel = NotificationChannel.TELEGRAM.value

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, message: Outgoing, wire: WireHook) -> Delivered:
        token = CURRENT_SEND.set(wire)
        try:
            delivered = await self._call(message)
        except RetryAfter as exc:
            raise RetryLater(
                f"429 retry after {_retry_after_s(exc) + 0.1:.1f}s", _retry_after_s(exc) + 0.1
            ) from exc
        except Forbidden as exc:
            raise RecipientGone(str(exc)) from exc
        except BadRequest as exc:
            text = str(exc).lower()
            if message.edit_of is not None and (
                "not modified" in text or "message to edit not found" in text
            ):
                return Delivered(message.edit_of, f"edit: {exc}")
            raise Rejected(f"BadRequest: {exc}") from exc
        except (TimedOut, NetworkError) as exc:  # 5xx, timeouts, connection trouble
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc
        except TelegramError as exc:  # 401/404/409: nothing a retry fixes soon
            raise RetryLater(f"{type(exc).__name__}: {exc}", backoff_steps=2) from exc
        finally:
            CURRENT_SEND.reset(token)
        await self._attachment(message)
        return delivered

    async def _call(self, message: Outgoing) -> Delivered:
        chat_id = int(message.recipient)
        parse_mode = "HTML" if message.html else None
        markup = message.markup if isinstance(message.markup, InlineKeyboardMarkup) else None
        if message.edit_of is not None:
            edited = await self.bot.edit_message_text(
                message.text,
                chat_id=chat_id,
                message_id=message.edit_of,
                parse_mode=parse_mode,
                reply_markup=markup,
                link_preview_options=NO_PREVIEW,
            )
            return Delivered(edited.message_id if isinstance(edited, Message) else message.edit_of)
        sent = await self.bot.send_message(
            chat_id, message.text, parse_mode=parse_mode, reply_markup=markup, link_preview_options=NO_PREVIEW
        )
        return Delivered(sent.message_id)

    async def _attachment(self, message: Outgoing) -> None:
        """A confirmed appointment's calendar file: an extra, so a failure is logged (``/bookings``
        offers it again); sent without the wire mark, so its answer cannot touch the row."""
        if message.attachment is None:
            return
        name, content = message.attachment
        try:
            await self.bot.send_document(int(message.recipient), document=content, filename=name)
        except Exception as exc:
            log.warning(
                "booking_extras_failed", notification_id=message.notification_id, error=type(exc).__name__
            )


def _retry_after_s(exc: RetryAfter) -> float:
    value = exc.retry_after  # a timedelta: ``bot/__init__`` opts into PTB_TIMEDELTA
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


__all__ = ["CURRENT_SEND", "NO_PREVIEW", "OutboxRequest", "TelegramNotifier"]
