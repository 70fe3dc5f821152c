"""A worker process killed with SIGKILL in the middle of a check.

Two ``mta worker`` commands run (one process, one thread each); one check message is sent straight to
the ``checks`` queue, as the scheduler would send it. The replica answers the calendar slowly, so the
check is still walking the site when the worker holding it is killed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any, cast

import dramatiq
import pytest

from shared.recording import sync_targets
from tests.support.farm import Farm, wait_until
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    Replica,
    berlin_slot,
)
from worker.broker import CHECKS_QUEUE, make_broker

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FS_OFFICE = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE


def _holder(farm: Farm) -> dict[str, Any] | None:
    """The heartbeat of the worker process whose broker holds an unacknowledged check."""
    for beat in farm.workers():
        if farm.redis.scard(f"mta:__acks__.{beat['broker_id']}.{CHECKS_QUEUE}"):
            return beat
    return None


def test_check_of_a_killed_worker_is_delivered_again_and_recorded_once(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: a slow calendar answer (8 s) and SIGKILL of the worker process holding the check,
    mid-walk. Asserted: the other worker gets the same message again once the dead one's heartbeat
    is stale (``MTA_WORKER_HEARTBEAT_TIMEOUT_MS``) and completes it: exactly one check row (keyed by
    the dispatch id, written by the survivor), one slot row, one alert for the one subscriber;
    the queue, its acknowledgement sets and the dead-letter queue end empty."""
    farm = make_farm()
    sub = farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    with farm.db.transaction() as session:
        (target,) = sync_targets(session)
        target_id = target.id
    start = berlin_slot(days_ahead=2, hour=10)
    replica.add_slots(FS_OFFICE, [start, start + 900])
    replica.faults(slow_ms=8000, endpoints=["available-calendar"])

    farm.start_worker(wait=False)
    farm.start_worker(wait=False)
    wait_until(
        lambda: len([w for w in farm.workers() if w.get("browser") == "ready"]) == 2, 90, "two workers"
    )

    broker = make_broker(farm.settings, with_browser=False)
    broker.enqueue(
        dramatiq.Message(
            queue_name=CHECKS_QUEUE,
            actor_name="check_target",
            args=(target_id, "dispatch-under-test"),
            kwargs={},
            options={},
        )
    )
    holder = cast(dict[str, Any], wait_until(lambda: _holder(farm), 60, "a worker to take the check"))
    wait_until(lambda: replica.control("GET", "/requests/stats")["total"] > 0, 60, "the walk to start")
    os.kill(int(holder["pid"]), signal.SIGKILL)
    replica.faults(clear=["slow"])
    assert farm.checks() == [], "the killed worker recorded nothing"

    wait_until(farm.checks, 90, "the check to be delivered again and recorded")
    wait_until(lambda: farm.redis.hlen(f"mta:{CHECKS_QUEUE}.msgs") == 0, 30, "the message to be acknowledged")
    (check,) = farm.checks()
    survivor = next(w for w in farm.workers() if w["id"] != holder["id"])
    assert check.worker_id == survivor["id"] and check.check_key == "dispatch-under-test"
    assert check.outcome.value == "ok"
    assert farm.slots() == [(FS_OFFICE, start, 1)]
    assert [(s, ep) for s, _slot, ep in farm.alerts()] == [(sub, 1)]
    assert farm.redis.llen(f"mta:{CHECKS_QUEUE}") == 0
    assert farm.redis.zcard(f"mta:{CHECKS_QUEUE}.XQ") == 0, "nothing went to the dead-letter queue"
    assert not any(farm.redis.scard(k) for k in farm.redis.keys(f"mta:__acks__.*.{CHECKS_QUEUE}"))
