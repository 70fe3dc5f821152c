"""Leader election through one Redis key, so that exactly one scheduler dispatches checks.

The leader holds ``key`` with a TTL and renews it; a standby polls and takes over once the key
expires (the leader died or lost Redis). Renewal and release only touch the key while it still
holds our id, so a paused leader that lost the lease can never release its successor's lock.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis

from worker.heartbeat import LEADER_KEY

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    """A lease on ``key``: ``acquire_or_renew()`` each tick; True while we lead."""

    def __init__(self, client: redis.Redis, key: str = LEADER_KEY, ttl_ms: int = 10_000) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire_or_renew(self) -> bool:
        if self.is_leader and self._renew(keys=[self.key], args=[self.identity, self.ttl_ms]):
            return True
        self.is_leader = bool(self.client.set(self.key, self.identity, nx=True, px=self.ttl_ms))
        return self.is_leader

    def release(self) -> None:
        if self.is_leader:
            self._release(keys=[self.key], args=[self.identity])
        self.is_leader = False

    def current_leader(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value
