"""Dramatiq actors: ``check_target`` on the ``checks`` queue (``book_slot`` comes with booking).

A check runs in this process's browser pool through the site's adapter; its result is recorded in
one transaction (``shared.recording``), then the bot is woken through Redis pub/sub. A worker
killed mid-check never acknowledged the message, so Redis delivers it again to another worker;
recording is idempotent, so nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import dramatiq
import redis

from shared.domain import CheckFailure, CheckTimeout, Observation, TargetKey
from shared.logging import get_logger
from shared.settings import get_settings
from worker.broker import CHECKS_QUEUE, WAKE_CHANNEL, setup_broker

log = get_logger("mta.worker")
broker = setup_broker()
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
CHECK_TIME_LIMIT_MS = 120_000

_db: Any = None
_redis: redis.Redis | None = None


def _database() -> Any:
    global _db
    if _db is None:
        from shared.db.database import open_database

        _db = open_database(get_settings())
    return _db


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(get_settings().redis_url)
    return _redis


def _load_target(target_id: int) -> TargetKey | None:
    from shared.db.models import Target

    with _database().transaction() as session:
        row = session.get(Target, target_id)
        if row is None or not row.active:
            return None
        return TargetKey(row.site, row.service_id, row.service_count, row.office_ids)


def _record(target_id: int, result: Observation | CheckFailure, duration_ms: int) -> int:
    """Write the check; returns how many notifications it queued."""
    from shared.recording import record_failure, record_observation

    settings = get_settings()
    with _database().transaction() as session:
        if isinstance(result, Observation):
            recorded = record_observation(
                session, target_id, result, worker_id=WORKER_ID, duration_ms=duration_ms
            )
            return recorded.notifications_inserted
        failed = record_failure(
            session,
            target_id,
            result,
            worker_id=WORKER_ID,
            duration_ms=duration_ms,
            layout_alert_after=settings.layout_changed_alert_after,
            operator_chat_ids=settings.operator_chat_ids,
        )
        return failed.operator_alerts_inserted


@dramatiq.actor(queue_name=CHECKS_QUEUE, max_retries=0, time_limit=CHECK_TIME_LIMIT_MS)
async def check_target(target_id: int) -> None:
    """Check one target now and record what was seen."""
    from worker import metrics, runtime
    from worker.budget import SiteBudget
    from worker.checks import run_check
    from worker.scheduler import mark_done

    rt = runtime.current()
    started = time.monotonic()
    client = _client()
    try:
        key = await asyncio.to_thread(_load_target, target_id)
        if key is None:
            log.info("target_gone", target_id=target_id)
            return
        adapter = rt.adapters[key.site]
        requests_made = 0
        try:
            outcome = await asyncio.wait_for(
                run_check(rt.pool, adapter, key, site_url=rt.settings.site_url),
                timeout=CHECK_TIME_LIMIT_MS / 1000 - 5,
            )
            result: Observation | CheckFailure = outcome.observation
            requests_made = outcome.requests_made
        except CheckFailure as failure:
            result = failure
            requests_made = getattr(failure, "requests_made", 1)
        except TimeoutError:
            result = CheckTimeout("check took too long")
        duration_ms = int((time.monotonic() - started) * 1000)
        queued = await asyncio.to_thread(_record, target_id, result, duration_ms)
        # the scheduler paid one token for the dispatch; a walk costs more
        SiteBudget(client, key.site, rt.settings.site_budget_per_minute).charge(requests_made - 1)
        if queued:
            client.publish(WAKE_CHANNEL, str(target_id))
        metrics.record_check(key.site, result, duration_ms / 1000)
        log.info(
            "check_done",
            target_id=target_id,
            outcome=type(result).__name__,
            slots=len(result.slots) if isinstance(result, Observation) else 0,
            queued=queued,
            duration_ms=duration_ms,
            requests=requests_made,
        )
    finally:
        mark_done(client, target_id)
