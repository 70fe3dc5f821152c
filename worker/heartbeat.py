"""Heartbeats of the farm's processes in Redis, for the status service and ``mta health``.

Every worker process and every scheduler writes, every ``INTERVAL_S``:

- ``mta:heartbeat:<role>:<id>``: a JSON object (``at`` = unix seconds of the beat, ``pid``, ``host``
  and role details), expiring after ``TTL_S``, so a dead process disappears by itself;
- a member ``<id>`` with score ``at`` in the sorted set ``mta:heartbeat:<role>s`` (an index, so a
  reader finds the live ones with one ZRANGEBYSCORE instead of a KEYS scan).

``role`` is ``worker`` or ``scheduler``. The scheduler leader's identity is the value of
``LEADER_KEY`` (``worker.leader``). ``live(client, role)`` is the reader.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from shared.contracts import LEADER_KEY, heartbeat_index_key, heartbeat_key
from shared.logging import get_logger
from shared.process_stats import process_stats

log = get_logger("mta.heartbeat")

INTERVAL_S = 2.0
TTL_S = 10
"""A process that missed about five beats is gone."""


def key(role: str, identity: str) -> str:
    return heartbeat_key(role, identity)


def index_key(role: str) -> str:
    return heartbeat_index_key(role)


def process_identity() -> str:
    """``host:pid``: the id workers record in ``checks.worker_id`` and beat under."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(
    client: redis.Redis, role: str, identity: str, payload: dict[str, Any], *, ttl_s: int = TTL_S
) -> None:
    now = time.time()
    body = {
        "id": identity,
        "role": role,
        "at": now,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process": process_stats(),
        **payload,
    }
    with client.pipeline() as pipe:
        pipe.set(key(role, identity), json.dumps(body), ex=ttl_s)
        pipe.zadd(index_key(role), {identity: now})
        pipe.zremrangebyscore(index_key(role), 0, now - 3600)
        pipe.execute()


def clear(client: redis.Redis, role: str, identity: str) -> None:
    """A clean exit: the process says goodbye instead of waiting for its beat to expire."""
    with client.pipeline() as pipe:
        pipe.delete(key(role, identity))
        pipe.zrem(index_key(role), identity)
        pipe.execute()


def live(client: redis.Redis, role: str, *, max_age_s: float = TTL_S) -> list[dict[str, Any]]:
    """The heartbeats of ``role`` processes that beat within ``max_age_s``, newest first."""
    ids = [
        i.decode() if isinstance(i, bytes) else str(i)
        for i in client.zrevrangebyscore(index_key(role), "+inf", time.time() - max_age_s)
    ]
    if not ids:
        return []
    bodies = client.mget([key(role, i) for i in ids])
    return [json.loads(b) for b in bodies if b]


class Heartbeat:
    """A daemon thread beating ``payload()`` every ``interval_s`` until ``stop()``."""

    def __init__(
        self,
        client: redis.Redis,
        role: str,
        identity: str,
        payload: Callable[[], dict[str, Any]],
        *,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.client = client
        self.role = role
        self.identity = identity
        self.payload = payload
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mta-heartbeat-{role}", daemon=True)

    def start(self) -> None:
        self.beat_now()
        self._thread.start()

    def beat_now(self) -> None:
        try:
            beat(
                self.client,
                self.role,
                self.identity,
                self.payload(),
                ttl_s=max(TTL_S, int(self.interval_s * 5)),
            )
        except (redis.RedisError, OSError) as exc:
            log.warning("heartbeat_failed", role=self.role, error=str(exc))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat_now()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 1)
        try:
            clear(self.client, self.role, self.identity)
        except (redis.RedisError, OSError) as exc:
            log.warning("heartbeat_clear_failed", role=self.role, error=str(exc))


__all__ = ["INTERVAL_S", "LEADER_KEY", "TTL_S", "Heartbeat", "beat", "clear", "index_key", "key", "live"]
