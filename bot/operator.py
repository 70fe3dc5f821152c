"""Operator commands, only in the chats of ``MTA_OPERATOR_CHAT_IDS``: the kill switch.

``/stopsite [site] [reason…]`` stops every request to a site at once (``shared.killswitch``; the
default site is ``munich``), ``/resumesite [site]`` lifts it, ``/sites`` says which are stopped.
Anyone else's ``/stopsite`` falls through to the unknown-command answer: the commands are not
advertised and do nothing for people.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes, filters

from shared import killswitch
from shared.domain import DEFAULT_SITE
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("mta.bot")


def _site(args: list[str] | None) -> str:
    site = (args or [DEFAULT_SITE])[0].lower()
    return site if site.replace("-", "").replace("_", "").isalnum() and len(site) <= 64 else DEFAULT_SITE


async def stop_site(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop every request to the site named (default: munich)."""
    message = update.effective_message
    if message is None:
        return
    client = context.application.bot_data.get("redis")
    if client is None:
        await message.reply_text("Redis is not configured: the kill switch lives there.")
        return
    site = _site(context.args)
    reason = " ".join((context.args or [])[1:])[:500]
    chat = update.effective_chat.id if update.effective_chat else 0
    await client.set(killswitch.key(site), killswitch.encode(reason, by=f"Telegram operator chat {chat}"))
    log.warning("site_kill_switch", site=site, stopped=True, by="telegram")
    await message.reply_text(f"Stopped: no request goes to {site} until /resumesite {site}.")


async def resume_site(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Lift the kill switch of the site named (default: munich)."""
    message = update.effective_message
    client = context.application.bot_data.get("redis")
    if message is None or client is None:
        return
    site = _site(context.args)
    was = bool(await client.delete(killswitch.key(site)))
    log.warning("site_kill_switch", site=site, stopped=False, by="telegram")
    await message.reply_text(f"Resumed: {site} is checked again." if was else f"{site} was not stopped.")


async def list_sites(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Which sites the kill switch stops."""
    message = update.effective_message
    client = context.application.bot_data.get("redis")
    if message is None or client is None:
        return
    keys = [k async for k in client.scan_iter(match=killswitch.KEY_PREFIX + "*")]
    if not keys:
        await message.reply_text("No site is stopped.")
        return
    lines = []
    for raw_key, raw in zip(keys, await client.mget(keys), strict=True):
        name = (raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key))[
            len(killswitch.KEY_PREFIX) :
        ]
        info = killswitch.decode(raw)
        lines.append(
            f"{name}: stopped at {info['at']} by {info['by']}"
            + (f" ({info['reason']})" if info["reason"] else "")
        )
    await message.reply_text("\n".join(lines))


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """The operator commands, for the operator chats only (nothing without any configured)."""
    settings: Settings = application.bot_data["settings"]
    if not settings.operator_chat_ids:
        return
    operators = filters.Chat(chat_id=settings.operator_chat_ids) & filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler("stopsite", stop_site, filters=operators))
    application.add_handler(CommandHandler("resumesite", resume_site, filters=operators))
    application.add_handler(CommandHandler("sites", list_sites, filters=operators))


__all__ = ["register"]
