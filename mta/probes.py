"""Is a role healthy, and is a worker wedged? Asked by ``mta up`` of one role's current process.

A heartbeat counts only when its ``pid`` is the role's process or one below it: after a restart,
the beat a killed process left in Redis (it expires after seconds) must not pass for the new one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from mta import procs
from mta.supervisor import Child

HEARTBEAT_FRESH_S = 10.0
CHECKS_QUEUE = "checks"
"""``worker.broker.CHECKS_QUEUE``: a message held in ``mta:__acks__.<broker>.checks`` is under way."""


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _beats(client: redis.Redis, role: str) -> list[dict[str, Any]]:
    keys = [f"mta:heartbeat:{role}"]
    keys += [k.decode() for k in client.scan_iter(match=f"mta:heartbeat:{role}:*", count=200)]
    found = []
    for key, raw in zip(keys, client.mget(keys), strict=True):
        if raw is None:
            continue
        try:
            body = json.loads(raw)
        except ValueError:
            continue
        if isinstance(body, dict):
            body["_key"] = key
            found.append(body)
    return found


def _beat_time(body: dict[str, Any]) -> float | None:
    from datetime import datetime

    value = body.get("at")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def own_beats(client: redis.Redis, role: str, child: Child) -> list[dict[str, Any]]:
    """Fresh heartbeats of ``role`` written by ``child``'s process or one of its descendants."""
    pids = {child.process.pid} | {pid for pid, _ in procs.descendants(child.process.pid)}
    now = time.time()
    return [
        b
        for b in _beats(client, role)
        if b.get("pid") in pids and (at := _beat_time(b)) is not None and now - at <= HEARTBEAT_FRESH_S
    ]


def role_heartbeat(url: str, role: str, child: Child) -> bool:
    """``child`` (a worker, scheduler or bot process) beats in Redis."""
    client = _client(url)
    try:
        return bool(own_beats(client, role, child))
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@dataclass
class WorkerStall:
    """Tells a wedged worker role (Chromium or its driver hung) from a busy or quiet one.

    Wedged: running for longer than ``stall_s`` without a fresh heartbeat of its own (the process
    hangs as a whole), or one of its processes holds a check while its count of finished checks
    has not moved for ``stall_s`` (the check's own time limit would have ended it long before).
    Redis unreachable says nothing about the worker: the clocks start again once it answers.
    """

    url: str
    stall_s: float
    _silent_since: dict[int, float] = field(default_factory=dict)
    _progress: dict[str, tuple[Any, float]] = field(default_factory=dict)

    def __call__(self, child: Child) -> str | None:
        now = time.monotonic()
        client = _client(self.url)
        try:
            beats = own_beats(client, "worker", child)
            held = {
                str(b["_key"]): int(client.scard(f"mta:__acks__.{b.get('broker_id')}.{CHECKS_QUEUE}"))
                for b in beats
                if b.get("broker_id")
            }
        except (redis.RedisError, OSError):
            self._silent_since.clear()
            self._progress.clear()
            return None
        finally:
            client.close()
        pid = child.process.pid
        if not beats:
            since = self._silent_since.setdefault(pid, now)
            if now - since > self.stall_s:
                self._silent_since.pop(pid, None)
                return f"no heartbeat for {now - since:.0f} s"
            return None
        self._silent_since.pop(pid, None)
        for beat in beats:
            key = str(beat["_key"])
            done = beat.get("checks_done")
            seen = self._progress.get(key)
            if seen is None or seen[0] != done or not held.get(key):
                self._progress[key] = (done, now)
                continue
            if now - seen[1] > self.stall_s:
                self._progress.pop(key, None)
                return f"holding a check, none finished for {now - seen[1]:.0f} s"
        return None


__all__ = ["WorkerStall", "own_beats", "role_heartbeat"]
