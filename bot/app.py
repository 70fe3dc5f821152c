"""The bot process: one python-telegram-bot ``Application`` with the conversations and the sender.

``build_application`` wires everything in one place: the Bot API base URL (the fake server in
tests), ``AIORateLimiter`` for Telegram's flood limits, the job queue, the conversation handlers
(``bot.handlers.register``) and an error handler. The lifecycle hooks own the long-lived parts:
``post_init`` opens the database and Redis (unless the caller lent them) and starts the outbox
sender with its wake-up listener and the captcha relay (``bot.captcha_relay``), ``post_stop``
stops them while the bot can still talk, ``post_shutdown`` closes what ``post_init`` opened.

Shared state for handlers lives in ``application.bot_data``: ``"settings"``, ``"db"``,
``"redis"`` (``redis.asyncio.Redis`` or None) and ``"sender"``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes
from telegram.request import HTTPXRequest

from bot import captcha_relay, handlers, operator
from bot.email_notifier import email_notifiers
from bot.outbox_store import SenderConfig
from bot.persistence import DatabasePersistence
from bot.sender import OutboxRequest, Sender
from bot.watchdog import queue_site_blocked_alerts
from shared.contracts import BOT_HEARTBEAT_KEY
from shared.db.database import Database, open_database
from shared.domain import utcnow
from shared.logging import get_logger
from shared.process_stats import process_stats
from shared.settings import Settings

HEARTBEAT_KEY = BOT_HEARTBEAT_KEY
"""Redis key the bot refreshes: JSON ``{"at", "pid", "mode", "sender"}``; expires after ``HEARTBEAT_TTL_S``
unless refreshed."""
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 30
WATCHDOG_INTERVAL_S = 60.0
RATE_LIMIT_RETRIES = 2
"""429s the rate limiter itself waits out and retries (pausing every request meanwhile)."""

log = get_logger("mta.bot")


def _file_url(base_url: str) -> str:
    return base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url


def build_application(
    settings: Settings, db: Database | None = None, redis: Any = None
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The bot: handlers registered, lifecycle hooks set. ``db``/``redis`` given here are borrowed
    (the caller closes them); missing ones are opened in ``post_init`` and closed at shutdown."""
    if settings.telegram_token is None or not settings.telegram_token.get_secret_value():
        raise ValueError("MTA_TELEGRAM_TOKEN is not set: the bot needs a token from @BotFather")
    timeout_s = settings.telegram_timeout_s
    application = (
        ApplicationBuilder()
        .token(settings.telegram_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .base_file_url(_file_url(settings.telegram_api_base_url))
        .request(
            OutboxRequest(
                connection_pool_size=32,
                read_timeout=timeout_s,
                write_timeout=timeout_s,
                connect_timeout=min(timeout_s, 10.0),
                pool_timeout=timeout_s,
            )
        )
        .get_updates_request(HTTPXRequest(connection_pool_size=2, read_timeout=timeout_s + 30))
        .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        .persistence(DatabasePersistence(lambda: _database_of(application)))
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
        .build()
    )
    application.bot_data["settings"] = settings
    application.bot_data["db"] = db
    application.bot_data["redis"] = redis
    application.bot_data["_owned"] = {"db": db is None, "redis": redis is None}
    register_handlers(application)
    return application


def _database_of(application: Application[Any, Any, Any, Any, Any, Any]) -> Database:
    """The bot's database, opened here when PTB's persistence needs it before ``post_init``."""
    data = application.bot_data
    if data.get("db") is None:
        data["db"] = open_database(data["settings"])
    database: Database = data["db"]
    return database


def register_handlers(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """The captcha relay's reply handler, the conversations (``bot.handlers.register``, which also
    adds the error handler) and their command menu (``bot.handlers.set_commands``, in post_init)."""
    captcha_relay.register(application)
    operator.register(application)  # before the catch-all for unknown commands
    handlers.register(application)


async def _post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    settings: Settings = application.bot_data["settings"]
    if application.bot_data.get("db") is None:
        application.bot_data["db"] = open_database(settings)
    if application.bot_data.get("redis") is None and settings.redis_url:
        import redis.asyncio as aioredis

        application.bot_data["redis"] = aioredis.Redis.from_url(settings.redis_url)
    sender = Sender(
        application.bot,
        application.bot_data["db"],
        SenderConfig.from_settings(settings),
        redis=application.bot_data.get("redis"),
        notifiers=email_notifiers(settings),
    )
    await sender.__aenter__()
    application.bot_data["sender"] = sender
    if application.bot_data.get("redis") is not None:
        relay = captcha_relay.CaptchaRelay(
            application.bot, application.bot_data["redis"], application.bot_data["db"]
        )
        application.bot_data["captcha_relay"] = await relay.__aenter__()
    if application.job_queue is not None:
        application.job_queue.run_repeating(
            _heartbeat, interval=HEARTBEAT_INTERVAL_S, first=0.0, name="bot-heartbeat"
        )
        application.job_queue.run_repeating(
            _watch_sites, interval=WATCHDOG_INTERVAL_S, first=WATCHDOG_INTERVAL_S, name="bot-site-watchdog"
        )
    try:
        await handlers.set_commands(application.bot)
    except Exception as exc:  # a menu is not worth failing the start over
        log.warning("set_commands_failed", error=f"{type(exc).__name__}: {exc}")
    log.info("bot_started", mode="webhook" if settings.webhook_url else "polling")


async def _post_stop(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    relay: captcha_relay.CaptchaRelay | None = application.bot_data.pop("captcha_relay", None)
    if relay is not None:
        await relay.__aexit__(None, None, None)
    sender: Sender | None = application.bot_data.pop("sender", None)
    if sender is not None:
        await sender.__aexit__(None, None, None)


async def _post_shutdown(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    await _post_stop(application)
    owned = application.bot_data.get("_owned", {})
    client = application.bot_data.get("redis")
    if owned.get("redis") and client is not None:
        await client.aclose()
        application.bot_data["redis"] = None
    database = application.bot_data.get("db")
    if owned.get("db") and database is not None:
        database.close()
        application.bot_data["db"] = None
    log.info("bot_stopped")


def heartbeat_value(application: Application[Any, Any, Any, Any, Any, Any]) -> dict[str, Any]:
    settings: Settings = application.bot_data["settings"]
    sender: Sender | None = application.bot_data.get("sender")
    return {
        "at": utcnow().isoformat(),
        "pid": os.getpid(),
        "process": process_stats(),
        "mode": "webhook" if settings.webhook_url else "polling",
        "sender": sender.stats.as_dict() if sender else None,
    }


async def _heartbeat(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Tell /readyz the bot lives: ``mta:heartbeat:bot`` with a short expiry."""
    client = context.application.bot_data.get("redis")
    if client is None:
        return
    try:
        await client.set(HEARTBEAT_KEY, json.dumps(heartbeat_value(context.application)), ex=HEARTBEAT_TTL_S)
    except Exception as exc:  # Redis away: the sweep still sends; the heartbeat resumes later
        log.warning("heartbeat_failed", error=f"{type(exc).__name__}: {exc}")


def _queue_site_alerts(settings: Settings, db: Database) -> int:
    with db.transaction() as session:
        return queue_site_blocked_alerts(
            session,
            settings.operator_chat_ids,
            blocked_after=timedelta(seconds=settings.site_blocked_alert_after_s),
            now=utcnow(),
        )


async def _watch_sites(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Operator alert when a site has been blocked for long (``bot.watchdog``)."""
    data = context.application.bot_data
    try:
        queued = await asyncio.to_thread(_queue_site_alerts, data["settings"], data["db"])
    except Exception:
        log.exception("site_watchdog_failed")
        return
    sender: Sender | None = data.get("sender")
    if queued and sender is not None:
        sender.wake()


@asynccontextmanager
async def running(
    application: Application[Any, Any, Any, Any, Any, Any],
    *,
    poll_interval_s: float = 0.0,
    poll_timeout_s: int = 1,
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Run ``application`` with polling inside a test's event loop, with the same lifecycle hooks
    as ``run_polling`` (which owns its own loop and signals)."""
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=poll_interval_s, timeout=poll_timeout_s)
    await application.start()
    try:
        yield application
    finally:
        if application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        if application.post_stop is not None:
            await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


def run_bot(settings: Settings) -> None:
    """``mta bot``: polling by default, webhook (``secret_token`` checked by PTB) with MTA_WEBHOOK_URL."""
    for noisy in ("httpx", "apscheduler"):  # a line per request / per heartbeat otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    application = build_application(settings)
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        application.run_webhook(
            listen="0.0.0.0",
            port=settings.webhook_port,
            url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
            webhook_url=settings.webhook_url,
            secret_token=secret,
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        application.run_polling(allowed_updates=Update.ALL_TYPES, timeout=10)


__all__ = ["HEARTBEAT_KEY", "build_application", "heartbeat_value", "register_handlers", "run_bot", "running"]
