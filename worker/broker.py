"""The Dramatiq broker every MTA process shares: Redis, async actors, a browser per worker process.

Nothing here is built at import: each entry point builds the broker (``setup_broker``) before it
imports the actor modules, as Dramatiq binds an actor to the global broker when the actor is
declared. ``mta scheduler`` calls it; ``mta worker`` runs ``dramatiq worker.broker:setup_broker
worker.actors worker.bookings`` (Dramatiq calls the function, then imports the modules). The actor
modules declare their actors against ``current_broker()``, which refuses to invent a default.
Worker processes (``MTA_WORKER_PROCESS=1``, set by ``mta worker``) also get the
``BrowserMiddleware``:

- ``before_worker_boot``: the runtime (``worker.runtime``: one Chromium pool per process, the
  database and the Redis connection), started on the event loop the AsyncIO middleware (listed
  before it) has just started; then the process starts beating (``worker.heartbeat``);
- ``before_worker_shutdown``: the runtime is marked stopping (the worker threads still finish their
  current message, for up to ``--worker-shutdown-timeout``);
- ``after_worker_shutdown``: the runtime is closed (browser, database, Redis). Dramatiq runs
  "after" hooks in reverse order, so this runs before AsyncIO stops the loop.

A worker process killed with SIGKILL never acknowledged its message: another worker's broker puts
it back on the queue once the dead one's Redis heartbeat is ``worker_heartbeat_timeout_ms`` old.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dramatiq
import redis
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
from dramatiq.middleware.prometheus import Prometheus

from shared.contracts import BOOKINGS_QUEUE as BOOKINGS_QUEUE
from shared.contracts import CHECKS_QUEUE as CHECKS_QUEUE
from shared.contracts import NAMESPACE as NAMESPACE
from shared.contracts import WAKE_CHANNEL as WAKE_CHANNEL
from shared.logging import configure_logging, get_logger
from shared.settings import Settings, get_settings
from worker import heartbeat

if TYPE_CHECKING:
    from worker.runtime import Runtime

MAINTENANCE_CHANCE = 100_000
"""Per million broker commands: how often a command also requeues dead workers' messages. Idle
consumers poll every ``dramatiq_worker_timeout`` ms, so a dead worker's check comes back within
seconds of its heartbeat timing out, not hours."""

log = get_logger("mta.worker")


class BrowserMiddleware(dramatiq.Middleware):
    """Owns this worker process's ``Runtime`` (browser pool, adapters, booker, database, Redis) and its
    heartbeat."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.heartbeat: heartbeat.Heartbeat | None = None
        self.runtime: Runtime | None = None
        """Built at worker boot, closed at shutdown; actors reach it through ``current_runtime``."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        from dramatiq.asyncio import get_event_loop_thread

        from worker import runtime

        loop_thread = get_event_loop_thread()
        if loop_thread is None:  # pragma: no cover - AsyncIO middleware is always first
            raise RuntimeError("BrowserMiddleware needs the AsyncIO middleware before it")
        try:
            self.runtime = loop_thread.run_coroutine(runtime.start(self.settings))
        except Exception:
            # Dramatiq swallows hook errors; the actor asks current_runtime() and fails loudly.
            log.exception("browser launch failed")
        self._start_heartbeat(broker, worker)

    def _start_heartbeat(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues = sorted(getattr(worker, "consumer_whitelist", None) or broker.get_declared_queues())
        fixed = {
            "queues": [q for q in queues if not q.endswith(".DQ")],
            "threads": getattr(worker, "worker_threads", None),
            "broker_id": getattr(broker, "broker_id", None),
        }

        def payload() -> dict[str, Any]:
            rt = self.runtime
            return {**fixed, **(rt.status() if rt is not None else {"browser": "down"})}

        client = redis.Redis.from_url(self.settings.redis_url)
        self.heartbeat = heartbeat.Heartbeat(client, "worker", heartbeat.process_identity(), payload)
        self.heartbeat.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.runtime is not None:
            self.runtime.stopping = True
        if self.heartbeat is not None:
            self.heartbeat.beat_now()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        from dramatiq.asyncio import get_event_loop_thread

        from worker import runtime

        loop_thread = get_event_loop_thread()
        try:
            if loop_thread is not None and self.runtime is not None:
                rt, self.runtime = self.runtime, None
                loop_thread.run_coroutine(runtime.stop(rt))
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
                self.heartbeat = None


class _DramatiqMetrics(Prometheus):
    """Dramatiq's own metrics, written to the multiprocess folder that ``mta api`` serves.

    Without its exposition server: one ``/metrics`` (the status service) serves every process.
    """

    @property
    def forks(self) -> list[Any]:
        return []


def make_broker(settings: Settings, *, with_browser: bool) -> RedisBroker:
    """A Redis broker with the middleware MTA needs (and a browser hook in worker processes)."""
    if not settings.redis_url:
        raise RuntimeError("MTA_REDIS_URL is empty: start redis-server or use `mta up`")
    broker = RedisBroker(
        url=settings.redis_url,
        middleware=broker_middleware(settings, with_browser=with_browser),
        namespace=NAMESPACE,
        # A message whose worker died (SIGKILL) is requeued once its heartbeat is this old.
        heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    # declared here so that senders (the scheduler, the bot) and workers agree on them
    broker.declare_queue(CHECKS_QUEUE)
    broker.declare_queue(BOOKINGS_QUEUE)
    return broker


def broker_middleware(settings: Settings, *, with_browser: bool) -> list[dramatiq.Middleware]:
    """The middleware of MTA's brokers, in order (AsyncIO before the browser hook, which runs on its
    loop); tests put it on a ``StubBroker``."""
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
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            middleware.append(_DramatiqMetrics())
    return middleware


def setup_broker(settings: Settings | None = None) -> RedisBroker:
    """Build this process's broker from ``settings`` and make it Dramatiq's global one: what an entry
    point calls before it imports ``worker.actors`` or ``worker.bookings``."""
    settings = settings or get_settings()
    with_browser = os.environ.get("MTA_WORKER_PROCESS") == "1"
    if with_browser:
        # a Dramatiq worker process: `mta worker` configured logging in a process it then replaced
        configure_logging(settings, role="worker")
    broker = make_broker(settings, with_browser=with_browser)
    dramatiq.set_broker(broker)
    return broker


def current_broker() -> dramatiq.Broker:
    """The broker the entry point set, for declaring actors; an error if none was set.

    ``dramatiq.get_broker()`` would make a default one (RabbitMQ or a Redis on localhost without
    MTA's namespace and middleware), and the actors would send where no worker listens.
    """
    if dramatiq.broker.global_broker is None:
        raise RuntimeError(
            "no Dramatiq broker: the entry point builds it (worker.broker.setup_broker, or a "
            "StubBroker in tests) before importing worker.actors or worker.bookings"
        )
    return dramatiq.get_broker()


def current_runtime(broker: dramatiq.Broker | None = None) -> Runtime:
    """This worker process's runtime, held by the ``BrowserMiddleware`` of ``broker`` (the actor's
    own, ``actor.broker``; by default the entry point's); an error naming the cause when the worker
    never got one (Chromium failed to launch)."""
    for middleware in (broker or current_broker()).middleware:
        if isinstance(middleware, BrowserMiddleware) and middleware.runtime is not None:
            return middleware.runtime
    raise RuntimeError("no browser in this worker process: see the 'browser launch failed' log line")
