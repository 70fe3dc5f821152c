"""Outages of Redis and the database as the status service sees them, kept as farm events.

An outage that is over leaves one dated event (``shared.events``: what, from when, how long), so an
operator who looks later still sees that it happened. Events are written to Redis; one about a
Redis outage can only be written once Redis answers again, so events wait here until then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import redis
import redis.asyncio as aioredis

from shared.domain import utcnow
from shared.events import EVENTS_KEY, MAX_EVENTS, PENDING_MAX, FarmEvent
from shared.logging import get_logger

log = get_logger("mta.api")

POLL_S = 2.0
LABELS = {"redis": "Redis", "database": "The database"}


class OutageWatch:
    """Polls Redis and the database every ``interval_s`` from the api's lifespan."""

    def __init__(
        self,
        client: aioredis.Redis | None,
        database_ok: Callable[[], Awaitable[bool]],
        *,
        interval_s: float = POLL_S,
    ) -> None:
        self._client = client
        self._database_ok = database_ok
        self.interval_s = interval_s
        self.down_since: dict[str, datetime] = {}
        """Parts down right now, and since when."""
        self._pending: list[FarmEvent] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OutageWatch:
        self._task = asyncio.create_task(self._run(), name="outage-watch")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _redis_ok(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.ping())
        except (redis.RedisError, OSError):
            return False

    async def poll(self, now: datetime | None = None) -> None:
        """One look at both parts; an outage that ended becomes an event."""
        now = now or utcnow()
        states = {"redis": await self._redis_ok(), "database": await self._database_ok()}
        if self._client is None:
            states.pop("redis")  # not configured is not an outage
        for part, ok in states.items():
            if not ok and part not in self.down_since:
                self.down_since[part] = now
                log.warning("outage_began", part=part)
            elif ok and part in self.down_since:
                began = self.down_since.pop(part)
                duration_s = (now - began).total_seconds()
                log.warning("outage_ended", part=part, duration_s=round(duration_s, 1))
                self._pending.append(
                    FarmEvent(
                        at=began,
                        kind=f"{part}_down",
                        text=f"{LABELS[part]} did not answer the status service",
                        role=part,
                        duration_s=round(duration_s, 1),
                    )
                )
                del self._pending[:-PENDING_MAX]
        if self._pending and states.get("redis"):
            await self._flush()

    async def _flush(self) -> None:
        assert self._client is not None
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for event in self._pending:
                    pipe.lpush(EVENTS_KEY, event.encode())
                pipe.ltrim(EVENTS_KEY, 0, MAX_EVENTS - 1)
                await pipe.execute()
        except (redis.RedisError, OSError):
            return  # the next poll writes them
        self._pending.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # the watch must outlive a bad poll
                log.exception("outage_watch_failed")
            await asyncio.sleep(self.interval_s)


__all__ = ["OutageWatch"]
