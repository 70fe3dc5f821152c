"""The scheduler leader killed with SIGKILL: the standby takes over and checks go on."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.support.farm import Farm, wait_until
from tests.support.replica import FUEHRERSCHEIN_UMSCHREIBUNG, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_standby_scheduler_takes_over_when_the_leader_is_killed(make_farm: Callable[..., Farm]) -> None:
    """Injected: two ``mta scheduler`` processes and one worker; SIGKILL of the leading scheduler
    (it cannot release its lease). Asserted: while the leader lives the standby dispatches
    nothing; after the kill the lease (``MTA_SCHEDULER_LEASE_MS``) runs out, the standby becomes
    the leader, and checks of the target go on being dispatched and recorded."""
    # a lease long enough that a leader slowed by a loaded machine never loses it while it lives
    farm = make_farm(MTA_SCHEDULER_LEASE_MS="5000")
    farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE])
    schedulers = [farm.start_scheduler(), farm.start_scheduler()]
    farm.start_worker()

    wait_until(lambda: len(farm.schedulers()) == 2 and farm.leader(), 90, "two schedulers and a leader")
    wait_until(lambda: len(farm.checks()) >= 2, 90, "two checks under the first leader")
    leader_id = farm.leader()
    assert leader_id is not None
    (standby,) = [s for s in farm.schedulers() if s["id"] != leader_id]
    assert standby["leader"] is False and standby["dispatched_total"] == 0
    (leader,) = [p for p in schedulers if p.pid == int(leader_id.split(":")[1])]

    os.kill(leader.pid, signal.SIGKILL)
    killed_at = datetime.now(UTC)
    assert leader.popen.wait(10) == -signal.SIGKILL
    wait_until(lambda: farm.leader() == standby["id"], 30, "the standby to take the lease")
    wait_until(
        lambda: len([c for c in farm.checks() if c.started_at > killed_at]) >= 2,
        60,
        "two checks dispatched by the new leader",
    )
    wait_until(
        lambda: (
            [s for s in farm.schedulers() if s["leader"] and s["dispatched_total"] > 0]
            == [s for s in farm.schedulers() if s["id"] == standby["id"]]
        ),
        10,
        "the new leader's heartbeat to report its dispatches",
    )
    assert {c.outcome.value for c in farm.checks()} <= {"ok", "no_slots"}
