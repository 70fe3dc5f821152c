"""The one outbox sender: drains ``notifications``, once each, in a fair order, each row through
its channel's ``Notifier`` (``shared.notify``: Telegram in ``bot.telegram_notifier``, e-mail in
``bot.email_notifier``, the console of ``mta up`` in ``mta.notify``). Everything below is
channel-independent; where a sentence names Telegram, e-mail works the same way (its own limits are
in ``bot.email_notifier``).

Woken by Redis pub/sub (``mta:outbox:wake``, published by the workers after they queue alerts) and
by a periodic sweep that catches a lost wake-up and rows whose retry time came.

Crash safety, row by row (``claim_token`` and the ``sending`` status, migration 0002):

1. A drain *claims* due rows (``claim_token`` = this run's token). Claimed rows are not yet on the wire.
2. Right before the request leaves (the notifier calls ``WireHook.on_wire``; for Telegram
   ``OutboxRequest``, after the ``AIORateLimiter`` let it through) the row turns ``sending``; any
   error answer turns it back (not delivered).
3. The answer is recorded: ``sent`` with the Telegram message id, or a retry time, or ``dead``.

A clean stop (SIGTERM) claims nothing new, lets requests in flight finish and releases the rest.
After a crash, the next start releases the dead run's claims, and rows left ``sending`` — the bot
died while Telegram was answering — count as delivered: Telegram has no idempotency key, so
resending could double the alert. The price: a crash in the instant between marking a row
``sending`` and its request reaching Telegram loses that one alert (at most once, never twice).
A read timeout is the one ambiguous answer that is retried (Telegram answers well within the
timeout, so it most likely did not process the request; if it did, the user sees it twice).

429 (``retry_after``) is honoured (the rate limiter also pauses every other request), 5xx and
timeouts are retried with exponential backoff, 403 (the user blocked the bot) pauses the user's
subscriptions, and a "gone" row edits the original alert. Many subscribers of one slot are served
in an order that rotates from slot to slot, so the same people are not always last.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telegram import Bot

from bot.outbox_store import Job, OutboxStore, SenderConfig
from bot.telegram_notifier import CURRENT_SEND, OutboxRequest, TelegramNotifier
from shared.contracts import WAKE_CHANNEL
from shared.db.database import Database
from shared.db.models import NotificationKind
from shared.domain import utcnow
from shared.logging import get_logger
from shared.notify import Notifier, RecipientGone, Rejected, RetryLater, WireHook

GOLDEN_RATIO = 0.6180339887498949

log = get_logger("mta.bot.sender")


@dataclass
class DrainStats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    blocked: int = 0
    deferred: int = 0
    last_drain_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "dead": self.dead,
            "skipped": self.skipped,
            "blocked": self.blocked,
            "deferred": self.deferred,
            "last_drain_at": self.last_drain_at.isoformat() if self.last_drain_at else None,
        }


def rotated(jobs: Sequence[Job]) -> list[Job]:
    """Send order: operator and booking news first, then slot alerts slot by slot, each slot's
    subscribers in a cyclic order whose start moves from slot to slot (by the golden ratio, so
    every subscriber is early about as often), then "gone" edits."""
    first = [j for j in jobs if j.kind not in (NotificationKind.SLOT, NotificationKind.GONE)]
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        if job.kind == NotificationKind.SLOT:
            groups.setdefault(job.slot_id or 0, []).append(job)
    slot_jobs: list[Job] = []
    for slot_id, group in groups.items():
        group.sort(key=lambda j: (j.subscription_id or 0, j.id))
        offset = int(((slot_id * GOLDEN_RATIO) % 1.0) * len(group))
        slot_jobs.extend(group[offset:] + group[:offset])
    gone = [j for j in jobs if j.kind == NotificationKind.GONE]
    return first + slot_jobs + gone


# --- the sender --------------------------------------------------------------------------------


@dataclass
class Sender:
    """Drains the outbox, each row through its channel's ``Notifier`` (``shared.notify``).

    ``bot`` (the application's bot, with its rate limiter) becomes the Telegram channel unless
    ``notifiers`` already has one (the console of ``mta up`` without a token). An async context
    manager: entering reconciles a previous run and starts the drain loop and the Redis wake-up
    listener (when a client is given); leaving stops both.
    """

    bot: Bot | None
    db: Database
    config: SenderConfig = field(default_factory=SenderConfig)
    redis: Any = None
    """A ``redis.asyncio.Redis`` for wake-ups; None: sweeps only."""
    stats: DrainStats = field(default_factory=DrainStats)
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    """Channel (``NotificationChannel`` value) to its notifier; rows of a channel without one are
    settled as skipped."""

    def __post_init__(self) -> None:
        if self.bot is not None:
            self.notifiers.setdefault(TelegramNotifier.channel, TelegramNotifier(self.bot))
        self.store = OutboxStore(self.db, self.config)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def __aenter__(self) -> Sender:
        await asyncio.to_thread(self.store.reconcile)
        self._stopping = False
        self._tasks = [asyncio.create_task(self._loop(), name="outbox-sender")]
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="outbox-wake-listener"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop claiming, let requests in flight finish (up to ``stop_timeout_s``), release the rest.

        Cancelling a request that already went out would leave its row ``sending`` — counted as
        delivered at the next start although it may never have reached Telegram.
        """
        self._stopping = True
        self._wake.set()
        loop_task = self._tasks[0] if self._tasks else None
        for task in self._tasks[1:]:
            task.cancel()
        if loop_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(loop_task), timeout=self.config.stop_timeout_s)
            except (TimeoutError, Exception):
                loop_task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            released = await asyncio.to_thread(self.store.release)
            if released:
                log.info("outbox_claims_released", rows=released)

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        """Redis pub/sub: any message on the wake channel starts a drain; reconnects on errors."""
        delay_s = 0.5
        while not self._stopping:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(WAKE_CHANNEL)
                    delay_s = 0.5
                    self._wake.set()  # rows queued while we were not listening
                    while not self._stopping:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._wake.set()
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("wake_listener_error", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.drain()
                wait_s = self.config.sweep_s
                next_due = await asyncio.to_thread(self.store.next_due)
                if next_due is not None:
                    wait_s = max(0.05, min(wait_s, (next_due - utcnow()).total_seconds()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_drain_failed")
                wait_s = self.config.sweep_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)

    async def drain(self) -> int:
        """Send everything due now; returns how many rows were handled.

        When a step fails (the database locked past its busy timeout), every worker is let finish
        first, then this run's claims are settled before the error goes up: otherwise the rows
        would stay claimed by a run that is still alive, and wait for the next start of the bot.
        """
        handled = 0
        try:
            while not self._stopping:
                ids = await asyncio.to_thread(self.store.claim, self.config.batch_size)
                if not ids:
                    break
                jobs = rotated(await asyncio.to_thread(self.store.load, ids))
                queue: asyncio.Queue[Job] = asyncio.Queue()
                for job in jobs:
                    queue.put_nowait(job)

                workers = max(1, min(self.config.concurrency, len(jobs)))
                results = await asyncio.gather(
                    *(self._work(queue) for _ in range(workers)), return_exceptions=True
                )
                handled += len(jobs)
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        except Exception:
            await self._settle_own_claims()
            raise
        self.stats.last_drain_at = utcnow()
        return handled

    async def _settle_own_claims(self) -> None:
        """``OutboxStore.settle_own_claims``, retried until the database answers (or we stop:
        then ``__aexit__`` releases and the next start reconciles)."""
        delay_s = 0.25
        while True:
            try:
                released, assumed = await asyncio.to_thread(self.store.settle_own_claims)
            except Exception as exc:
                if self._stopping:
                    return
                log.warning(
                    "outbox_claims_settle_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay_s
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
                continue
            if released or assumed:
                log.warning("outbox_claims_settled", released=released, assumed_delivered=assumed)
            return

    async def _work(self, queue: asyncio.Queue[Job]) -> None:
        while not queue.empty() and not self._stopping:
            job = queue.get_nowait()
            try:
                await self._deliver(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or an unreadable answer: settle the row, keep going
                log.exception("outbox_deliver_failed", notification_id=job.id)
                await asyncio.to_thread(self.store.settle_after_error, job.id, f"{type(exc).__name__}: {exc}")

    async def _deliver(self, job: Job) -> None:
        store = self.store
        if job.defer:
            self.stats.deferred += 1
            await asyncio.to_thread(store.defer, job.id)
            return
        if job.hold_until is not None:
            log.info("alert_held_for_quiet_hours", notification_id=job.id)
            await asyncio.to_thread(store.hold, job.id, job.hold_until)
            return
        if job.rendered is None or job.skip_reason is not None:
            self.stats.skipped += 1
            await asyncio.to_thread(store.mark_sent, job.id, None, job.skip_reason)
            return
        notifier = self.notifiers.get(job.channel)
        if notifier is None:
            self.stats.skipped += 1
            await asyncio.to_thread(store.mark_sent, job.id, None, f"no {job.channel} channel configured")
            return
        message = job.outgoing()
        attempts = job.attempts
        error = ""
        hook = WireHook(
            on_wire=lambda: asyncio.to_thread(store.mark_wire, job.id),
            on_refused=lambda: asyncio.to_thread(store.mark_refused, job.id),
        )
        for inline in range(self.config.inline_attempts):
            try:
                delivered = await notifier.send(message, hook)
            except RetryLater as exc:
                wait_s = (
                    exc.wait_s
                    if exc.wait_s is not None
                    else self.config.backoff_s(inline + exc.backoff_steps)
                )
                error = str(exc)
            except RecipientGone as exc:
                self.stats.blocked += 1
                paused = await asyncio.to_thread(store.blocked, job, str(exc))
                log.info("user_blocked_bot", user_id=job.user_id, subscriptions_paused=paused)
                return
            except Rejected as exc:
                self.stats.dead += 1
                log.warning(
                    "notification_rejected", notification_id=job.id, channel=job.channel, error=str(exc)
                )
                await asyncio.to_thread(store.mark_dead, job.id, str(exc))
                return
            else:
                self.stats.sent += 1
                await asyncio.to_thread(store.mark_sent, job.id, delivered.ref, delivered.note)
                await self._after_sent(job)
                return
            attempts += 1
            await asyncio.to_thread(store.mark_refused, job.id, error)
            log.info(
                "alert_send_retry",
                notification_id=job.id,
                channel=job.channel,
                error=error,
                wait_s=round(wait_s, 2),
            )
            if (
                self._stopping
                or attempts >= self.config.max_attempts
                or inline == self.config.inline_attempts - 1
            ):
                break
            await asyncio.sleep(wait_s)
        self.stats.retried += 1
        if await asyncio.to_thread(store.mark_retry, job.id, error, attempts):
            self.stats.dead += 1
            log.warning("notification_dead", notification_id=job.id, channel=job.channel, error=error)

    async def _after_sent(self, job: Job) -> None:
        """The day-before reminder of a confirmed appointment: an extra, so a failure is logged."""
        try:
            if job.day_before is not None:
                await asyncio.to_thread(self.store.queue_day_before, job)
        except Exception as exc:
            log.warning("booking_extras_failed", notification_id=job.id, error=type(exc).__name__)


__all__ = [
    "CURRENT_SEND",
    "DrainStats",
    "OutboxRequest",
    "Sender",
    "WireHook",
    "rotated",
]
