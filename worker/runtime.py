"""This worker process's long-lived resources: the browser pool, the site adapters and booker, the
database and the Redis connection.

Created by ``BrowserMiddleware`` at worker boot, held by it (no module keeps a runtime), closed at
shutdown; actors reach it through ``worker.broker.current_runtime()``, which fails loudly when the
browser never came up (Dramatiq swallows hook errors). No actor module keeps a connection of its
own. The runtime also keeps the few numbers this process's heartbeat reports.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis import Redis

from shared.db.database import Database, open_database
from shared.domain import DEFAULT_SITE
from shared.logging import get_logger
from shared.settings import Settings

if TYPE_CHECKING:
    from worker.browser import BrowserPool
    from worker.sites.base import SiteAdapter, SiteBooker

log = get_logger("mta.worker")


@dataclass
class Runtime:
    settings: Settings
    pool: BrowserPool
    adapters: dict[str, SiteAdapter]
    booker: SiteBooker
    db: Database
    redis: Redis | None
    """None only without ``MTA_REDIS_URL`` (a runtime outside ``mta worker``, e.g. a test's)."""
    stack: AsyncExitStack
    started_at: float = field(default_factory=time.time)
    stopping: bool = False
    """Set when the worker begins to shut down: a check broken by the closing browser is dropped,
    not recorded as a site failure (the scheduler sends the target again)."""
    checks_done: int = 0
    last_check_at: float | None = None
    last_outcome: str | None = None

    def client(self) -> Redis:
        """The Redis connection; actors need one (``mta worker`` refuses to start without it)."""
        if self.redis is None:
            raise RuntimeError("MTA_REDIS_URL is empty: this worker runtime has no Redis")
        return self.redis

    def note_check(self, outcome: str) -> None:
        self.checks_done += 1
        self.last_check_at = time.time()
        self.last_outcome = outcome

    def status(self) -> dict[str, Any]:
        """What the heartbeat says about this process's browser and work."""
        stats = getattr(self.pool, "stats", None)
        return {
            "browser": "stopping" if self.stopping else "ready",
            "started_at": self.started_at,
            "checks_done": self.checks_done,
            "last_check_at": self.last_check_at,
            "last_outcome": self.last_outcome,
            "contexts_open": getattr(stats, "contexts_open", None),
            "browsers_launched": getattr(stats, "browsers_launched", None),
            "browser_restarts": getattr(stats, "restarts", None),
            "browser_crashes": getattr(stats, "crashes", None),
        }


async def start(settings: Settings) -> Runtime:
    """Open this process's resources; the caller (``BrowserMiddleware``) keeps the runtime and
    closes it with ``stop``."""
    from worker.browser import BrowserPool
    from worker.pacer import pacer_from_settings
    from worker.sites.registry import sites

    stack = AsyncExitStack()
    try:
        db = open_database(settings)
        stack.callback(db.close)
        client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
        if client is not None:
            stack.callback(client.close)
        pool = await stack.enter_async_context(BrowserPool(settings))
        await pool.launch()
        pacer = pacer_from_settings(settings)
        known = sites()
        adapters: dict[str, SiteAdapter] = {
            name: site.make_adapter(settings=settings, pacer=pacer) for name, site in known.items()
        }
        booker = known[DEFAULT_SITE].make_booker(pacer)
    except BaseException:
        await stack.aclose()
        raise
    runtime = Runtime(
        settings=settings, pool=pool, adapters=adapters, booker=booker, db=db, redis=client, stack=stack
    )
    log.info("worker_runtime_started", sites=sorted(adapters))
    return runtime


async def stop(runtime: Runtime) -> None:
    """Close what ``start`` opened."""
    runtime.stopping = True
    await runtime.stack.aclose()
    log.info("worker_runtime_stopped", checks_done=runtime.checks_done)
