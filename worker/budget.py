"""The per-site request budget, shared by every process through Redis.

The city allows N requests without a 60 s pause per client address; MTA stays well under it by
spending one budget per site (and egress address) across all schedulers and workers. Built on
Dramatiq's ``WindowRateLimiter`` (a sliding 60-second window of one-second buckets), wrapped once
because its window is in seconds while the rest of Dramatiq speaks milliseconds.
"""

from __future__ import annotations

import time

import redis
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

WINDOW_S = 60
KEY_PREFIX = "mta:budget:"


class SiteBudget:
    """Tokens for requests to one site: ``per_minute`` in any sliding 60-second window."""

    def __init__(self, client: redis.Redis, site: str, per_minute: int, *, egress: str = "default") -> None:
        self.client = client
        self.site = site
        self.per_minute = per_minute
        self.key = f"{KEY_PREFIX}{site}:{egress}"
        self._limiter = WindowRateLimiter(
            RedisBackend(client=client), self.key, limit=per_minute, window=WINDOW_S
        )

    def try_take(self) -> bool:
        """Take one token if the window has one left; never blocks."""
        with self._limiter.acquire(raise_on_failure=False) as acquired:
            return bool(acquired)

    def charge(self, requests: int) -> None:
        """Record requests already made (a full walk costs several); may overdraw the window.

        An overdraw is deliberate: it makes the scheduler wait until the window has room again,
        so the site's view of us stays within the budget on average.
        """
        if requests <= 0:
            return
        key = f"{self.key}@{int(time.time())}"
        with self.client.pipeline() as pipe:
            pipe.incrby(key, requests)
            pipe.pexpire(key, WINDOW_S * 1000)
            pipe.execute()

    def used(self) -> int:
        """Tokens spent in the current window."""
        now = int(time.time())
        values = self.client.mget([f"{self.key}@{now - i}" for i in range(WINDOW_S)])
        return sum(int(v) for v in values if v)

    def remaining(self) -> int:
        return max(0, self.per_minute - self.used())
