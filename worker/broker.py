"""The Dramatiq broker every MTA process shares: Redis, async actors, a browser per worker process.

Importing this module configures the global broker from settings. Worker processes get the
``BrowserMiddleware``: one Chromium per process, launched in a hook after the AsyncIO middleware
has started the process's event loop, and closed before that loop stops.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from shared.logging import get_logger
from shared.settings import Settings, get_settings

CHECKS_QUEUE = "checks"
BOOKINGS_QUEUE = "bookings"
WAKE_CHANNEL = "mta:outbox:wake"

log = get_logger("mta.worker")


class BrowserMiddleware(dramatiq.Middleware):
    """Owns this worker process's ``BrowserPool``: opened at boot, closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        from dramatiq.asyncio import get_event_loop_thread

        from worker import runtime

        loop_thread = get_event_loop_thread()
        if loop_thread is None:  # pragma: no cover - AsyncIO middleware is always first
            raise RuntimeError("BrowserMiddleware needs the AsyncIO middleware before it")
        try:
            loop_thread.run_coroutine(runtime.start(self.settings))
        except Exception:
            # Dramatiq swallows hook errors; the actor checks runtime.current() and fails loudly.
            log.exception("browser launch failed")

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        from dramatiq.asyncio import get_event_loop_thread

        from worker import runtime

        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(runtime.stop())


def make_broker(settings: Settings, *, with_browser: bool) -> RedisBroker:
    """A Redis broker with the middleware MTA needs (and a browser hook in worker processes)."""
    if not settings.redis_url:
        raise RuntimeError("MTA_REDIS_URL is empty: start redis-server or use `mta up`")
    middleware: list[dramatiq.Middleware] = [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(min_backoff=1_000, max_backoff=60_000, max_retries=3),
        AsyncIO(),
    ]
    if with_browser:
        middleware.append(BrowserMiddleware(settings))
    return RedisBroker(
        url=settings.redis_url,
        middleware=middleware,
        namespace="mta",
        # A message whose worker died (SIGKILL) is requeued once its heartbeat is this old.
        heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
        # Requeueing dead workers' messages happens during maintenance: run it often enough
        # that a killed worker's check comes back within seconds, not hours.
        maintenance_chance=100_000,
    )


def setup_broker(settings: Settings | None = None) -> RedisBroker:
    settings = settings or get_settings()
    with_browser = os.environ.get("MTA_WORKER_PROCESS") == "1"
    broker = make_broker(settings, with_browser=with_browser)
    dramatiq.set_broker(broker)
    return broker
