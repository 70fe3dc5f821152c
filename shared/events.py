"""The farm's events: what happened to the farm itself, when, and for how long.

A role restarted by ``mta up``, Redis or the database unreachable from the status service: each
leaves one dated entry, so an operator who looks later still sees it (the dashboard's "Events",
``/api/v1/status``). Entries live in the Redis list ``EVENTS_KEY``, newest first, capped at
``MAX_EVENTS``; the writers are ``mta up`` (restarts) and ``mta api`` (outages it saw). Redis
itself may be the thing that was down: a writer keeps what it could not write and writes it once
Redis answers again (``EventLog``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from shared.logging import get_logger

log = get_logger("mta.events")

EVENTS_KEY = "mta:events"
MAX_EVENTS = 200
PENDING_MAX = 100


@dataclass(frozen=True)
class FarmEvent:
    """One thing that happened to the farm."""

    at: datetime
    """When it began."""
    kind: str
    """``role_restarted``, ``role_given_up``, ``redis_down``, ``database_down``, …"""
    text: str
    """What happened, for people (no personal data)."""
    role: str | None = None
    duration_s: float | None = None
    """How long it lasted (an outage, a role's downtime); None while unknown."""

    def encode(self) -> str:
        body = asdict(self)
        body["at"] = self.at.astimezone(UTC).isoformat()
        return json.dumps(body, sort_keys=True)

    @staticmethod
    def decode(raw: bytes | str) -> FarmEvent | None:
        """The event in ``raw``; None for anything unreadable (never raises)."""
        try:
            body = json.loads(raw)
            at = datetime.fromisoformat(str(body["at"]))
            duration = body.get("duration_s")
            return FarmEvent(
                at=at if at.tzinfo else at.replace(tzinfo=UTC),
                kind=str(body["kind"]),
                text=str(body["text"]),
                role=None if body.get("role") is None else str(body["role"]),
                duration_s=None if duration is None else float(duration),
            )
        except (ValueError, KeyError, TypeError):
            return None


def write(client: redis.Redis, event: FarmEvent) -> None:
    """Push ``event`` (raises ``redis.RedisError``/``OSError`` when Redis does not answer)."""
    with client.pipeline() as pipe:
        pipe.lpush(EVENTS_KEY, event.encode())
        pipe.ltrim(EVENTS_KEY, 0, MAX_EVENTS - 1)
        pipe.execute()


def read(client: redis.Redis, limit: int = 50) -> list[FarmEvent]:
    """The newest ``limit`` events, newest first."""
    rows = client.lrange(EVENTS_KEY, 0, max(0, limit - 1))
    return [e for e in (FarmEvent.decode(r) for r in rows) if e is not None]


def decode_all(rows: list[Any]) -> list[FarmEvent]:
    """Events from raw list entries (the api reads them with its async client)."""
    return [e for e in (FarmEvent.decode(r) for r in rows) if e is not None]


class EventLog:
    """A writer that never loses an event to a Redis outage: what cannot be written now is kept
    (up to ``PENDING_MAX``) and written, oldest first, by the next ``record`` or ``flush``."""

    def __init__(self, client_factory: Any) -> None:
        self._client_factory = client_factory
        self._pending: deque[FarmEvent] = deque(maxlen=PENDING_MAX)
        self._lock = threading.Lock()

    def record(self, event: FarmEvent) -> None:
        with self._lock:
            self._pending.append(event)
        self.flush()

    def flush(self) -> bool:
        """Write what is pending; True when nothing is left."""
        with self._lock:
            if not self._pending:
                return True
            try:
                client = self._client_factory()
                try:
                    while self._pending:
                        write(client, self._pending[0])
                        self._pending.popleft()
                finally:
                    client.close()
            except (redis.RedisError, OSError) as exc:
                log.info("events_pending", count=len(self._pending), error=type(exc).__name__)
                return False
            return True

    @property
    def pending(self) -> int:
        return len(self._pending)


__all__ = ["EVENTS_KEY", "MAX_EVENTS", "EventLog", "FarmEvent", "decode_all", "read", "write"]
