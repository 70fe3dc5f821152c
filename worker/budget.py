"""The per-site request budget, shared by every process through Redis.

Two limits, both spent by every scheduler and worker of the farm together:

- a rate: ``per_minute`` requests in any sliding 60-second window, through Dramatiq's
  ``WindowRateLimiter`` (one-second buckets), wrapped once because its window is in seconds while
  the rest of Dramatiq speaks milliseconds;
- a streak: the city counts requests "without a 60-second pause" and answers 429 after N of them
  (munich-site.md §2.11: each allowed request re-arms a 60 s TTL on the count). A client polling at
  any steady rate above one a minute therefore runs into the 429 sooner or later. MTA mirrors that
  counter and, after ``before_pause`` requests, stops until 60 s have passed without one, so the
  city's counter resets before it reaches its limit.

The site also states its limit and its count on every successful answer (X-RateLimit-Limit and
-Remaining). ``observe`` takes both in: the streak never counts less than the site has counted
(other clients behind our address, a Redis restart that lost our count), and the pause comes at
most ``limit - reserve`` requests into a streak when the site announces a lower limit than the
settings assume. A higher announced limit changes nothing: the settings stay the ceiling.
"""

from __future__ import annotations

import time

import redis
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend
from prometheus_client import Gauge

from shared.contracts import BUDGET_KEY_PREFIX as KEY_PREFIX  # noqa: F401  (re-exported)
from shared.contracts import BUDGET_WINDOW_S as WINDOW_S
from shared.contracts import budget_key
from shared.contracts import streak_pause_after as pause_after  # re-exported
from shared.settings import Settings

PAUSE_MS = 61_000
"""The city's counter lives 60 s after the last counted request; one second of margin."""
ANNOUNCED_LIMIT_TTL_S = 3_600
"""How long an announced limit is believed without being seen again."""


BUDGET_TOKENS = Gauge(
    "mta_budget_tokens",
    "Requests the site's budget has left in the current window (0 while paused)",
    ["site"],
    multiprocess_mode="mostrecent",
)


class SiteBudget:
    """Tokens for requests to one site: ``per_minute`` in any sliding 60-second window, and at most
    ``before_pause`` without a 60 s pause (0: no pause)."""

    def __init__(
        self,
        client: redis.Redis,
        site: str,
        per_minute: int,
        *,
        before_pause: int = 0,
        egress: str = "default",
    ) -> None:
        self.client = client
        self.site = site
        self.per_minute = per_minute
        self.before_pause = before_pause
        self.key = budget_key(site, egress)  # the layout the status service reads (shared.contracts)
        self.streak_key = f"{self.key}:streak"
        self.limit_key = f"{self.key}:announced_limit"
        self._limiter = WindowRateLimiter(
            RedisBackend(client=client), self.key, limit=per_minute, window=WINDOW_S
        )

    def try_take(self) -> bool:
        """Take one token if both limits allow it; never blocks."""
        if self.pause_remaining_s() > 0:
            return False
        with self._limiter.acquire(raise_on_failure=False) as acquired:
            if acquired:
                self._extend_streak(1)
            return bool(acquired)

    def charge(self, requests: int) -> None:
        """Record requests already made (a walk costs several) against the window.

        What the current window has no room for is carried into the coming minutes: one bucket a
        minute on, another two minutes on, each at most ``per_minute``. A walk that overdraws the
        window is so paid back by the checks after it, and the farm stays within the budget over
        any few minutes, however low the budget (a plain overdraw would be forgotten after 60 s).
        """
        if requests <= 0:
            return
        now = int(time.time())
        room = max(0, self.per_minute - self.used())
        parts = [(now, min(requests, room))] if room else []
        carried = requests - min(requests, room)
        minute = 1
        while carried > 0:
            part = min(carried, self.per_minute)
            parts.append((now + minute * WINDOW_S, part))
            carried -= part
            minute += 1
        with self.client.pipeline() as pipe:
            for second, count in parts:
                key = f"{self.key}@{second}"
                pipe.incrby(key, count)
                pipe.pexpire(key, (second - now + WINDOW_S) * 1000)
            pipe.execute()
        self._extend_streak(requests)

    def _extend_streak(self, requests: int) -> None:
        if self.before_pause <= 0:
            return
        with self.client.pipeline() as pipe:
            pipe.incrby(self.streak_key, requests)
            pipe.pexpire(self.streak_key, PAUSE_MS)
            pipe.execute()

    def observe(self, limit: int, counted: int) -> None:
        """Take in what the site's last answer said: its limit and how many requests of the current
        streak it has counted (our streak is raised to that, never lowered)."""
        if limit <= 0:
            return
        with self.client.pipeline() as pipe:
            pipe.set(self.limit_key, limit, ex=ANNOUNCED_LIMIT_TTL_S)
            pipe.get(self.streak_key)
            _, current = pipe.execute()
        if self.before_pause > 0 and counted > int(current or 0):
            self.client.set(self.streak_key, counted, px=PAUSE_MS)

    def announced_limit(self) -> int | None:
        value = self.client.get(self.limit_key)
        return int(value) if value else None

    def pause_after(self) -> int:
        """Requests in a streak before MTA pauses (see ``pause_after``; 0: no pause)."""
        if self.before_pause <= 0:
            return 0
        return pause_after(self.before_pause, self.announced_limit())

    def streak(self) -> int:
        """Requests since the last 60-second pause."""
        value = self.client.get(self.streak_key)
        return int(value) if value else 0

    def pause_remaining_s(self) -> float:
        """Seconds until the streak resets, when it has reached ``pause_after``; else 0."""
        threshold = self.pause_after()
        if threshold <= 0 or self.streak() < threshold:
            return 0.0
        ttl_ms = int(self.client.pttl(self.streak_key))
        return max(0.0, ttl_ms / 1000)

    def used(self) -> int:
        """Tokens spent in the current window."""
        now = int(time.time())
        values = self.client.mget([f"{self.key}@{now - i}" for i in range(WINDOW_S)])
        return sum(int(v) for v in values if v)

    def remaining(self) -> int:
        return 0 if self.pause_remaining_s() > 0 else max(0, self.per_minute - self.used())


def site_budget(client: redis.Redis, settings: Settings, site: str) -> SiteBudget:
    """The budget of ``site`` as the settings configure it (checks)."""
    return SiteBudget(
        client, site, settings.site_budget_per_minute, before_pause=settings.site_requests_before_pause
    )
