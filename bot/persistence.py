"""Conversations that outlive the bot process: PTB's persistence, backed by the ``conversations`` table.

Only ``user_data`` is kept, and of it only what the handlers put there (the ``Flow`` in progress and
the cached language); each person's state is one ``EncryptedJSON`` value, because a ``/profile``
conversation holds the name and e-mail being typed. PTB writes the people whose data changed every
``update_interval_s`` and at shutdown, so a clean stop (a deploy) loses nothing and a crash at
most that much; a state left alone longer than a conversation's idle timeout is dropped at the
next start (and by the retention purge after a day, whichever comes first).

Why a table rather than PTB's ``PicklePersistence``: one database for everything (PostgreSQL when
the bot runs in a container without a volume), encryption at rest, and ``/delete`` erases it in
the same transaction as the rest of a person's data (the row cascades with the user).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from telegram.ext import BasePersistence, PersistenceInput

from bot.handlers.common import FLOW_IDLE_TIMEOUT_S, FLOW_KEY, LANGUAGE_KEY, Flow
from shared.db.database import Database
from shared.db.models import Conversation, User
from shared.domain import utcnow
from shared.logging import get_logger

log = get_logger("bot.persistence")

UPDATE_INTERVAL_S = 5.0
"""How often PTB writes changed conversations; what a killed bot can lose of one."""

UserData = dict[Any, Any]


def encode_user_data(data: UserData) -> dict[str, Any] | None:
    """The JSON kept for one person, or None when there is nothing worth keeping."""
    state: dict[str, Any] = {}
    flow = data.get(FLOW_KEY)
    if isinstance(flow, Flow):
        state["flow"] = dataclasses.asdict(flow)
    language = data.get(LANGUAGE_KEY)
    if isinstance(language, str):
        state["language"] = language
    return state if "flow" in state else None


def decode_user_data(state: dict[str, Any]) -> UserData:
    """The handlers' ``user_data`` from a kept state; a flow that no longer parses is dropped."""
    data: UserData = {}
    if isinstance(state.get("language"), str):
        data[LANGUAGE_KEY] = state["language"]
    raw = state.get("flow")
    if isinstance(raw, dict):
        try:
            data[FLOW_KEY] = Flow(**raw)
        except TypeError:  # written by a version whose Flow had other fields
            log.warning("conversation_state_unreadable", fields=sorted(raw))
    return data


class DatabasePersistence(BasePersistence[UserData, dict[Any, Any], dict[Any, Any]]):
    """``user_data`` in the ``conversations`` table; chat, bot and callback data stay in memory.

    ``database`` is a getter because the bot opens its database in a lifecycle hook that PTB runs
    after it has loaded the persisted data; the getter opens it on first use instead."""

    def __init__(
        self, database: Callable[[], Database], *, update_interval_s: float = UPDATE_INTERVAL_S
    ) -> None:
        super().__init__(
            store_data=PersistenceInput(bot_data=False, chat_data=False, user_data=True, callback_data=False),
            update_interval=update_interval_s,
        )
        self._database = database
        self._kept: set[int] = set()
        """Who has a row: PTB writes everyone it saw an update from, mostly with nothing to keep."""

    # --- user data: the part that is kept --------------------------------------------------------
    async def get_user_data(self) -> dict[int, UserData]:
        return await asyncio.to_thread(self._load)

    async def update_user_data(self, user_id: int, data: UserData) -> None:
        state = encode_user_data(data)
        if state is None and user_id not in self._kept:
            return  # nothing kept, nothing to keep: no database round trip
        try:
            await asyncio.to_thread(self._save, user_id, state)
        except Exception as exc:  # a database hiccup loses one save, not the bot; the next one retries
            log.warning("conversation_save_failed", user_id=user_id, error=type(exc).__name__)

    async def drop_user_data(self, user_id: int) -> None:
        await asyncio.to_thread(self._save, user_id, None)

    async def refresh_user_data(self, user_id: int, user_data: UserData) -> None:
        """Nothing to do: this process is the only writer, so memory is never behind the table."""

    def _load(self) -> dict[int, UserData]:
        stale_before = utcnow() - timedelta(seconds=FLOW_IDLE_TIMEOUT_S)
        with self._database().transaction() as session:
            session.execute(delete(Conversation).where(Conversation.updated_at < stale_before))
            rows = list(session.scalars(select(Conversation)))
            loaded = {row.user_id: decode_user_data(row.state) for row in rows}
        self._kept = set(loaded)
        log.info("conversations_loaded", conversations=len(loaded))
        return loaded

    def _save(self, user_id: int, state: dict[str, Any] | None) -> None:
        with self._database().transaction() as session:
            row = session.get(Conversation, user_id)
            if state is None:
                if row is not None:
                    session.delete(row)
                self._kept.discard(user_id)
                return
            if row is not None:
                row.state = state
                row.updated_at = utcnow()
            elif session.get(User, user_id) is not None:  # erased meanwhile: nothing to keep
                session.add(Conversation(user_id=user_id, state=state))
            else:
                return
        self._kept.add(user_id)

    async def flush(self) -> None:
        """Every write already went to the database."""

    # --- everything else stays in memory ---------------------------------------------------------
    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def get_bot_data(self) -> dict[Any, Any]:
        return {}

    async def get_callback_data(self) -> Any:
        return None

    async def get_conversations(self, name: str) -> dict[Any, Any]:
        return {}

    async def update_conversation(self, name: str, key: Any, new_state: object | None) -> None:
        return None

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        return None

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        return None

    async def update_callback_data(self, data: Any) -> None:
        return None

    async def drop_chat_data(self, chat_id: int) -> None:
        return None

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        return None

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        return None


__all__ = ["UPDATE_INTERVAL_S", "DatabasePersistence", "decode_user_data", "encode_user_data"]
