"""What every handler needs for one update: the user, their language, the database, replies.

A ``Turn`` is built once per update. It makes sure the user has a row (language taken from their
Telegram ``language_code`` at first contact), gives the translator, and knows whether to edit the
message a button sits on or send a new one. Database work is synchronous SQLAlchemy, so it runs in
a worker thread (``Turn.run``) and never blocks the event loop behind SQLite's busy timeout.

A ``Flow`` is one multi-step conversation (subscribe, profile, erase) kept in ``user_data``: its
nonce is part of every button it shows, so a button from an earlier or cancelled conversation is
recognised and refused instead of acting on the wrong state.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from telegram import InlineKeyboardMarkup, Message, ReplyKeyboardMarkup, ReplyKeyboardRemove, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.callbacks import CallbackSigner
from bot.i18n import Gettext, normalize_language, translator
from bot.keyboards import KeyboardMaker
from bot.validation import InputError
from shared.db.database import Database
from shared.logging import get_logger
from shared.settings import Settings

from . import store

log = get_logger("bot.handlers")

FLOW_KEY = "mta_flow"
LANGUAGE_KEY = "mta_language"
SIGNER_KEY = "callback_signer"
FLOW_IDLE_TIMEOUT_S = 3600.0
"""A conversation left alone this long is forgotten; its buttons then say so."""

P = ParamSpec("P")
R = TypeVar("R")
Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None


@dataclass
class Flow:
    kind: str
    step: str
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(4))
    data: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    touched_at: float = field(default_factory=time.time)
    """Wall-clock seconds: a kept conversation's age counts across bot restarts."""

    def touch(self) -> None:
        self.touched_at = time.time()

    def go(self, step: str) -> None:
        """Move forward; Back returns here."""
        if step != self.step:
            self.history.append(self.step)
        self.step = step

    def back(self) -> bool:
        if not self.history:
            return False
        self.step = self.history.pop()
        return True


def signer_for(bot_data: dict[Any, Any]) -> CallbackSigner:
    """The application's signer, made at first use (keyed on the bot token from the settings)."""
    signer = bot_data.get(SIGNER_KEY)
    if signer is None:
        settings = bot_data.get("settings")
        token = None
        if isinstance(settings, Settings) and settings.telegram_token is not None:
            token = settings.telegram_token.get_secret_value()
        signer = bot_data[SIGNER_KEY] = CallbackSigner.from_token(token)
    assert isinstance(signer, CallbackSigner)
    return signer


def signer_of(context: ContextTypes.DEFAULT_TYPE) -> CallbackSigner:
    return signer_for(context.bot_data)


def current_flow(context: ContextTypes.DEFAULT_TYPE) -> Flow | None:
    if context.user_data is None:
        return None
    flow = context.user_data.get(FLOW_KEY)
    if not isinstance(flow, Flow):
        return None
    if time.time() - flow.touched_at > FLOW_IDLE_TIMEOUT_S:
        context.user_data.pop(FLOW_KEY, None)
        return None
    return flow


def start_flow(context: ContextTypes.DEFAULT_TYPE, kind: str, step: str, **data: Any) -> Flow:
    flow = Flow(kind=kind, step=step, data=dict(data))
    if context.user_data is not None:
        context.user_data[FLOW_KEY] = flow
    return flow


def end_flow(context: ContextTypes.DEFAULT_TYPE) -> None:
    if context.user_data is not None:
        context.user_data.pop(FLOW_KEY, None)


class Turn:
    """One update's view: who, in which language, and how to answer."""

    def __init__(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, user_id: int, chat_id: int
    ) -> None:
        self.update = update
        self.context = context
        self.user_id = user_id
        self.chat_id = chat_id
        self.language = "en"
        self._: Gettext = translator("en")
        self._answered = False

    @classmethod
    async def load(cls, update: Update, context: ContextTypes.DEFAULT_TYPE) -> Turn | None:
        user = update.effective_user
        chat = update.effective_chat
        if user is None or chat is None:
            return None
        turn = cls(update, context, user.id, chat.id)
        cached = context.user_data.get(LANGUAGE_KEY) if context.user_data is not None else None
        if isinstance(cached, str):
            language = cached
        else:
            language = await turn.run(store.ensure_user, user.id, normalize_language(user.language_code))
        turn.set_language(language)
        return turn

    def set_language(self, language: str) -> None:
        self.language = normalize_language(language)
        self._ = translator(self.language)
        if self.context.user_data is not None:
            self.context.user_data[LANGUAGE_KEY] = self.language

    def forget_user(self) -> None:
        """After erasure: no cached language or conversation (the next update starts afresh)."""
        if self.context.user_data is not None:
            self.context.user_data.clear()

    # --- resources -------------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        database = self.context.bot_data["db"]
        assert isinstance(database, Database)
        return database

    @property
    def settings(self) -> Settings | None:
        settings = self.context.bot_data.get("settings")
        return settings if isinstance(settings, Settings) else None

    @property
    def signer(self) -> CallbackSigner:
        return signer_of(self.context)

    def keys(self, flow: Flow | None = None) -> KeyboardMaker:
        return KeyboardMaker(self.signer, self.user_id, flow.nonce if flow else "")

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """A synchronous database function ``fn(db, *args)``, in a worker thread."""
        return await asyncio.to_thread(fn, self.db, *args)

    # --- answering -------------------------------------------------------------------------------

    @property
    def from_button(self) -> bool:
        return self.update.callback_query is not None

    async def answer(self, text: str | None = None, *, alert: bool = False) -> None:
        """Acknowledge a button press (once); a short notice pops up when ``text`` is given."""
        query = self.update.callback_query
        if query is None or self._answered:
            if text and query is None:
                await self.say(text)
            return
        self._answered = True
        try:
            await query.answer(text=text[:200] if text else None, show_alert=alert)
        except BadRequest:  # a query older than Telegram keeps: nothing to acknowledge
            log.info("callback_answer_failed")

    async def say(self, text: str, markup: Markup = None) -> Message:
        return await self.context.bot.send_message(self.chat_id, text, reply_markup=markup)

    async def show(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """Replace the message the pressed button sits on, or send a new one after typed input."""
        query = self.update.callback_query
        if query is not None and query.message is not None:
            try:
                await query.edit_message_text(text, reply_markup=markup)
                return
            except BadRequest as exc:
                if "not modified" in str(exc).lower():
                    return
                log.info("edit_failed_sending_new", error=type(exc).__name__)
        await self.say(text, markup)

    async def refuse(self, error: InputError) -> None:
        """Tell the user why their input cannot be used; the conversation stays where it is."""
        await self.say("⚠ " + self._(error.message).format(**error.params))


__all__ = [
    "FLOW_KEY",
    "Flow",
    "Turn",
    "current_flow",
    "end_flow",
    "signer_for",
    "signer_of",
    "start_flow",
]
