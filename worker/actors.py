"""Dramatiq actors: ``check_target`` on the ``checks`` queue (``book_slot`` comes with booking).

A check runs in this process's browser pool through the site's adapter; its result is recorded in
one transaction (``shared.recording``), the requests it made are charged to the site's budget, and
the bot is woken through Redis pub/sub when the outbox got rows. A worker killed mid-check never
acknowledged the message, so Redis delivers it again to another worker; the check row is keyed by
the scheduler's dispatch id and slots and alerts by their unique keys, so nothing is lost or
doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import dramatiq
import redis

from shared.db.database import Database
from shared.domain import CheckFailure, CheckTimeout, Observation, RateLimited, TargetKey
from shared.horizon import decode_days
from shared.killswitch import site_stopped
from shared.logging import get_logger
from shared.settings import get_settings
from worker.broker import CHECKS_QUEUE, WAKE_CHANNEL, current_broker, current_runtime
from worker.heartbeat import process_identity
from worker.sites.base import SiteQuota

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = get_logger("mta.worker")
WORKER_ID = process_identity()
CHECK_TIME_LIMIT_MS = 120_000
CHECK_TIMEOUT_S = CHECK_TIME_LIMIT_MS / 1000 - 5
"""Our own limit, inside Dramatiq's, so a hung check is recorded as a timeout and cleaned up."""
CHECK_MAX_AGE_MS = 180_000
"""A check that waited longer than this (no worker was up) is dropped unrun: by then the scheduler
has sent a fresh one (its in-flight mark expires after as long), and old news is worth nothing."""


def _database() -> Database:
    """This process's database, opened and closed with its runtime (``worker.runtime``)."""
    return current_runtime().db


def _client() -> redis.Redis:
    """This process's Redis connection, opened and closed with its runtime."""
    return current_runtime().client()


def _load_targets(target_ids: list[int]) -> dict[int, TargetKey]:
    """The active ones of ``target_ids`` (a target can end between dispatch and check)."""
    from shared.db.models import Target

    keys: dict[int, TargetKey] = {}
    with _database().read() as session:
        for target_id in target_ids:
            row = session.get(Target, target_id)
            if row is not None and row.active:
                keys[target_id] = TargetKey(row.site, row.service_id, row.service_count, row.office_ids)
    return keys


def group_key(keys: list[TargetKey]) -> TargetKey:
    """One request for targets of one (site, service, count): the union of their offices."""
    first = keys[0]
    offices = tuple(sorted({office for key in keys for office in key.office_ids}))
    return TargetKey(first.site, first.service_id, first.service_count, offices)


def for_target(result: Observation | CheckFailure, key: TargetKey) -> Observation | CheckFailure:
    """The part of a group's result that concerns ``key``: its offices' slots (a failure is the
    whole group's)."""
    if isinstance(result, CheckFailure):
        return result
    wanted = set(key.office_ids)
    return dataclasses.replace(
        result, office_ids=key.office_ids, slots=[s for s in result.slots if s.office_id in wanted]
    )


@dataclasses.dataclass(frozen=True)
class _Recorded:
    queued: int
    """Outbox rows inserted (alerts, gone notices, operator alerts)."""
    backoff_until: datetime | None
    duplicate: bool
    budget_left: int | None = None
    new_slot_ids: tuple[int, ...] = ()
    """Slots this check saw first (their alerts are committed): autobook candidates."""


def _record(
    target_id: int, result: Observation | CheckFailure, duration_ms: int, check_key: str
) -> _Recorded:
    """Write the check in one transaction; a check key seen before writes nothing."""
    from shared.recording import record_failure, record_observation

    settings = get_settings()
    with _database().transaction() as session:
        if isinstance(result, Observation):
            recorded = record_observation(
                session,
                target_id,
                dataclasses.replace(result, observation_id=check_key),
                worker_id=WORKER_ID,
                duration_ms=duration_ms,
            )
            return _Recorded(
                recorded.notifications_inserted,
                None,
                recorded.duplicate,
                new_slot_ids=tuple(recorded.new_slot_ids),
            )
        failed = record_failure(
            session,
            target_id,
            result,
            worker_id=WORKER_ID,
            duration_ms=duration_ms,
            layout_alert_after=settings.layout_changed_alert_after,
            operator_chat_ids=settings.operator_chat_ids,
            check_key=check_key,
        )
        return _Recorded(failed.operator_alerts_inserted, failed.backoff_until, failed.duplicate)


def _after_check(
    target_id: int,
    key: TargetKey,
    result: Observation | CheckFailure,
    duration_ms: int,
    requests_made: int,
    check_key: str,
    quota: SiteQuota | None = None,
    *,
    charge: bool = True,
) -> _Recorded:
    """Record, charge the budget, pause the site on a 429, wake the bot (blocking I/O: a thread).

    The check is saved first; each Redis step after it may fail on its own (Redis restarting)
    with one warning and without undoing the check: the bot's sweep finds the queued alerts, the
    booking sweep the autobook candidates, and the budget and the pause are best effort.
    """
    from worker.budget import BUDGET_TOKENS, site_budget
    from worker.scheduler import pause_site

    recorded = _record(target_id, result, duration_ms, check_key)
    client = _client()
    budget = site_budget(client, get_settings(), key.site)
    budget_left: int | None = None
    with _redis_step("budget_charge", target_id):
        # the scheduler paid one token for the dispatch; a walk costs more (charged once per group)
        if charge:
            budget.charge(requests_made - 1)
            if quota is not None:
                budget.observe(quota.limit, quota.counted)
        budget_left = budget.remaining()
        BUDGET_TOKENS.labels(site=key.site).set(budget_left)
    if isinstance(result, RateLimited) and recorded.backoff_until is not None:
        # the city counts requests per client address: every target of the site waits
        with _redis_step("site_pause", target_id):
            pause_site(client, key.site, recorded.backoff_until)
    if recorded.queued:
        with _redis_step("wake_publish", target_id):
            client.publish(WAKE_CHANNEL, str(target_id))
    if recorded.new_slot_ids:
        from worker.metrics import SLOTS_NEW

        SLOTS_NEW.labels(site=key.site).inc(len(recorded.new_slot_ids))
        # after the alerts' commit, so a failed booking never costs anyone the alert
        from worker.bookings import dispatch_autobook

        with _redis_step("autobook_dispatch", target_id):
            dispatch_autobook(_database(), list(recorded.new_slot_ids), client=client)
    return dataclasses.replace(recorded, budget_left=budget_left)


@contextlib.contextmanager
def _redis_step(step: str, target_id: int) -> Iterator[None]:
    """A Redis step after the check was saved: Redis unreachable is one warning, not a failed check."""
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("check_redis_step_failed", step=step, target_id=target_id, error=error)


def _outcome(result: Observation | CheckFailure) -> str:
    if isinstance(result, Observation):
        return "ok" if result.slots else "no_slots"
    return result.outcome.value


@dramatiq.actor(
    queue_name=CHECKS_QUEUE,
    broker=current_broker(),  # the entry point's (worker.broker.setup_broker), set before this import
    max_retries=0,
    time_limit=CHECK_TIME_LIMIT_MS,
    max_age=CHECK_MAX_AGE_MS,
)
async def check_target(
    target_id: int,
    dispatch_id: str | None = None,
    riders: list[int] | None = None,
    days: str | None = None,
) -> None:
    """Check one target now, with the ``riders`` of its group (same site, service and count), by
    one round of requests for the union of their offices; record what each of them was shown.

    ``dispatch_id`` (set by the scheduler) keys the check rows: a message delivered twice is
    recorded once. ``days`` (``shared.horizon.encode_days``) are the days anyone in the group wants;
    None asks the whole horizon.
    """
    from worker import metrics
    from worker.checks import run_check
    from worker.scheduler import mark_done, note_round_cost

    check_key = dispatch_id or uuid.uuid4().hex
    target_ids = [target_id, *(riders or [])]
    not_before: dict[int, datetime | None] = {}
    held: Runtime | None = None
    try:
        rt = held = current_runtime()
        started = time.monotonic()
        keys = await asyncio.to_thread(_load_targets, target_ids)
        if not keys:
            log.info("target_gone", target_id=target_id)
            return
        key = group_key(list(keys.values()))
        if await asyncio.to_thread(site_stopped, _client(), key.site):  # queued before the kill switch
            log.info("check_dropped_site_stopped", target_id=target_id, site=key.site)
            return
        adapter = rt.adapters.get(key.site)
        if adapter is None:
            raise LookupError(f"no site adapter for {key.site!r} (target {target_id})")
        requests_made = 0
        wanted_days = decode_days(days) if days is not None else None
        try:
            outcome = await asyncio.wait_for(
                run_check(rt.pool, adapter, key, site_url=rt.settings.site_url, days=wanted_days),
                timeout=CHECK_TIMEOUT_S,
            )
            result: Observation | CheckFailure = outcome.observation
            requests_made = outcome.requests_made
            if not outcome.walked:
                with _redis_step("round_cost", target_id):
                    note_round_cost(_client(), key.site, key.service_id, key.service_count, requests_made)
        except CheckFailure as failure:
            result = failure
            requests_made = int(getattr(failure, "requests_made", 1))
        except TimeoutError:
            result = CheckTimeout(f"check took longer than {CHECK_TIMEOUT_S:.0f} s")
            requests_made = 1
        duration_ms = int((time.monotonic() - started) * 1000)
        if rt.stopping and not isinstance(result, Observation):
            # most likely the browser closing under us: not the site's fault, and not a check
            log.info("check_dropped_on_shutdown", target_id=target_id, failure=type(result).__name__)
            return
        quota = getattr(adapter, "quota", None)
        metrics.record_check(key.site, result, duration_ms / 1000)
        rt.note_check(_outcome(result))
        for index, (each_id, each_key) in enumerate(keys.items()):
            own = for_target(result, each_key)
            recorded = await asyncio.to_thread(
                _after_check,
                each_id,
                each_key,
                own,
                duration_ms,
                requests_made,
                check_key if each_id == target_id else f"{check_key}:{each_id}",
                quota,
                charge=index == 0,
            )
            not_before[each_id] = recorded.backoff_until
            log.info(
                "check_done",
                target_id=each_id,
                group_of=len(keys) if len(keys) > 1 else None,
                outcome=_outcome(own),
                slots=len(own.slots) if isinstance(own, Observation) else 0,
                queued=recorded.queued,
                duplicate=recorded.duplicate,
                duration_ms=duration_ms,
                requests=requests_made if index == 0 else 0,
                budget_left=recorded.budget_left,
                contexts=getattr(getattr(rt.pool, "stats", None), "contexts_open", None),
                backoff_until=recorded.backoff_until.isoformat() if recorded.backoff_until else None,
            )
    finally:
        # held is None when the browser never came up, and with it no Redis connection
        if held is not None:  # else the in-flight marks expire by themselves
            for each_id in target_ids:
                with _redis_step("mark_done", each_id):
                    mark_done(held.client(), each_id, not_before=not_before.get(each_id))


from worker import bookings  # noqa: E402,F401  (registers book_slot)
