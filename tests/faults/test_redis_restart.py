"""Redis restarted under a running farm: every process finds it again by itself.

The farm's ``mta scheduler`` and ``mta worker`` run as OS processes against the session's private
Redis; the test stops that server and starts it again on the same port. It keeps nothing on disk,
so it comes back empty: no leader lease, no queue, no heartbeats, no in-flight marks, no budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from tests.conftest import RedisServer
from tests.support.farm import Farm, wait_until
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    Replica,
    berlin_slot,
)
from worker.broker import CHECKS_QUEUE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FS_OFFICE = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE
OUTAGE_S = 4.0
"""Longer than the scheduler's lease and the worker's heartbeat timeout in the farm's settings."""
MARKER_KEY = "mta:test:before-outage"


@pytest.fixture
def restartable_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, running again after the test whatever happened (others share it)."""
    yield redis_server
    if redis_server.process.poll() is not None:
        redis_server.start()


def _held_dispatch_ids(farm: Farm) -> list[str]:
    """Dispatch ids of the checks a worker holds unacknowledged (it is walking the site)."""
    client = farm.redis
    held = [m for k in client.keys(f"mta:__acks__.*.{CHECKS_QUEUE}") for m in client.smembers(k)]
    bodies = client.hmget(f"mta:{CHECKS_QUEUE}.msgs", held) if held else []
    return [str(json.loads(body)["args"][1]) for body in bodies if body]


def test_farm_recovers_from_a_redis_restart_and_records_the_slot_once(
    make_farm: Callable[..., Farm], replica: Replica, restartable_redis: RedisServer
) -> None:
    """Injected: a slot released while the calendar answers slowly (4 s), and Redis stopped for
    4 s while the worker holds a check (that check usually ends with Redis gone: its budget
    charge, wake-up and done mark fail), then started again empty on the same port.
    Asserted: neither process exits; the check under way is recorded once; the scheduler leads
    again and the worker beats and consumes again; checks are dispatched and recorded after the
    restart; the slot has exactly one ``slots`` row and its subscriber exactly one alert, unchanged
    by the checks that follow; nothing went to the dead-letter queue."""
    farm = make_farm()
    sub = farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    worker, scheduler = farm.start()
    wait_until(lambda: len(farm.checks()) >= 2, 90, "two checks before the outage")
    assert farm.leader() is not None

    replica.faults(slow_ms=4000, endpoints=["available-calendar"])
    start = berlin_slot(days_ahead=2, hour=11)
    replica.add_slots(FS_OFFICE, [start, start + 900])
    before = len(farm.checks())
    wait_until(lambda: len(farm.checks()) > before and _held_dispatch_ids(farm), 60, "a slow check")
    time.sleep(1.0)
    (in_flight,) = wait_until(lambda: _held_dispatch_ids(farm), 30, "a check under way", interval_s=0.02)
    farm.redis.set(MARKER_KEY, "set before the outage")
    restartable_redis.stop()
    time.sleep(OUTAGE_S)
    restartable_redis.start()
    restarted_at = datetime.now(UTC)
    # (the farm's processes write their keys again within a second, so the key count proves nothing)
    assert not farm.redis.exists(MARKER_KEY), "the server came back empty"
    replica.faults(clear=["slow"])

    wait_until(lambda: farm.leader() is not None, 30, "a scheduler to lead again")
    wait_until(lambda: farm.workers() and farm.schedulers(), 30, "heartbeats again")
    wait_until(
        lambda: len([c for c in farm.checks() if c.started_at > restarted_at]) >= 2,
        60,
        "two checks after the restart",
    )
    wait_until(farm.alerts, 60, "the alert of the released slot")
    seen = len(farm.checks())
    wait_until(lambda: len(farm.checks()) >= seen + 2, 60, "two more checks seeing the slot")

    assert worker.popen.poll() is None and scheduler.popen.poll() is None, farm.report()
    assert farm.slots() == [(FS_OFFICE, start, 1)]
    assert [(s, ep) for s, _slot, ep in farm.alerts()] == [(sub, 1)]
    assert {c.outcome.value for c in farm.checks()} <= {"ok", "no_slots"}
    assert farm.redis.zcard(f"mta:{CHECKS_QUEUE}.XQ") == 0, "nothing went to the dead-letter queue"
    assert [c.check_key for c in farm.checks()].count(in_flight) == 1, "the check under way was recorded"
