"""Leader election through one Redis key, so that exactly one scheduler dispatches checks.

The leader holds ``key`` (``shared.contracts.LEADER_KEY``) through redis-py's ``Lock`` with a TTL,
its identity as the lock's token (the status service reads who leads from the key), and renews it
with ``reacquire``; a standby tries a non-blocking ``acquire`` each tick and takes over once the
key expires (the leader died or lost Redis). ``Lock`` renews and releases only while the key still
holds our token, so a paused leader that lost the lease can never touch its successor's.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from shared.contracts import LEADER_KEY


class LeaderLock:
    """A lease on ``key``: ``acquire_or_renew()`` each tick; True while we lead."""

    def __init__(self, client: redis.Redis, key: str = LEADER_KEY, ttl_ms: int = 10_000) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        # thread_local off: the token belongs to this scheduler, whichever thread renews it
        self._lock = Lock(client, key, timeout=ttl_ms / 1000, blocking=False, thread_local=False)

    def acquire_or_renew(self) -> bool:
        if self.is_leader:
            try:
                self._lock.reacquire()
                return True
            except LockError:  # the lease ran out (and maybe someone else holds it now)
                self._lock.local.token = None
        self.is_leader = bool(self._lock.acquire(blocking=False, token=self.identity))
        return self.is_leader

    def release(self) -> None:
        if self.is_leader:
            try:
                self._lock.release()
            except LockError:  # no longer ours: the successor's lease stays
                self._lock.local.token = None
        self.is_leader = False

    def current_leader(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value
