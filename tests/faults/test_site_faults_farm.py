"""Site faults met by the whole farm: HTTP 500, malformed JSON and slow answers.

The adapter tests (``tests/worker/test_munich_adapter.py``) show how one check classifies each of
these faults; here the production processes (``mta scheduler`` + ``mta worker``, see
``tests.support.farm``) meet them against a private Redis, a SQLite file and the replica, with a
free slot waiting behind the fault. The house rule under test: a site that answers 500, garbage or
slowly loses nothing and doubles nothing -- no slot row and no alert while the fault lasts, the
target backs off (the scheduler sends the site nothing meanwhile), and once the fault clears the
slot is recorded and its subscriber alerted exactly once, unchanged by the checks that follow.

What the timings rest on: a failed check backs its target off for 30 s
(``shared.recording.ERROR_BASE_BACKOFF``), and the Munich adapter gives a warm check's calendar
request ``MTA_CHECK_REQUEST_TIMEOUT_S`` (30 s; the slow-site test sets it to 8 s) and each walk step
45 s. Once a back-off is shown to hold (the farm sends the
site nothing for a few seconds), the test lets it run out at once (``Farm.end_backoff``) rather than
wait out its 30 s; its length is ``tests/shared/test_recording.py``'s business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.db.models import Check, Notification, NotificationKind, Slot, TargetState
from tests.support.farm import Farm, alive, wait_until
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    Replica,
    api_requests,
    berlin_slot,
    endpoint,
    units,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FS_OFFICE = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE
CALENDAR = "available-calendar"
REQUEST_TIMEOUT_S = 8
"""``MTA_CHECK_REQUEST_TIMEOUT_S`` of the slow-site farm: well above the 1.5 s of a merely slow site."""


def outcomes(checks: list[Check]) -> list[str]:
    return [c.outcome.value for c in checks]


def more_checks(farm: Farm, count: int, what: str, timeout_s: float = 90) -> list[Check]:
    """Wait for ``count`` check rows after those already there; returns just the new ones."""
    seen = len(farm.checks())
    wait_until(lambda: len(farm.checks()) >= seen + count, timeout_s, what)
    return farm.checks()[seen:]


def checking_process(farm: Farm) -> tuple[str, int]:
    """The id and pid of the one Dramatiq process that runs checks (from its heartbeat)."""
    (beat,) = farm.workers()
    return str(beat["id"]), int(beat["pid"])


def assert_backs_off_quietly(farm: Farm, replica: Replica, target_id: int) -> None:
    """The target is backing off into the future, and meanwhile the farm sends the site nothing
    and records nothing (the scheduler skips a target in back-off)."""
    target = farm.target(target_id)
    assert target.state == TargetState.BACKING_OFF, target.state
    assert target.backoff_until is not None
    assert target.backoff_until > datetime.now(UTC) + timedelta(seconds=10), target.backoff_until
    checks_before = len(farm.checks())
    settled = datetime.now(UTC) + timedelta(seconds=0.5)
    time.sleep(4)
    assert api_requests(replica, since=settled) == [], "a target in back-off must not be checked"
    assert len(farm.checks()) == checks_before


def assert_alerted_once(farm: Farm, sub: int | None, start: int) -> None:
    """One slot row (episode 1) and one outbox row in all: the subscriber's alert for it."""
    assert farm.slots() == [(FS_OFFICE, start, 1)]
    assert [(s, episode) for s, _slot, episode in farm.alerts()] == [(sub, 1)]
    assert farm.count(Notification) == 1, "no gone notice, no operator alert, nothing doubled"
    assert farm.count(Slot, Slot.gone_at.is_not(None)) == 0


@dataclass
class Started:
    """A farm started with one subscriber watching a free Führerschein slot, a fault already on."""

    farm: Farm
    sub: int | None
    start: int
    began: datetime
    worker: Any
    process_id: str
    pid: int


def start_with_fault(
    make_farm: Callable[..., Farm],
    replica: Replica,
    hour: int,
    days_ahead: int = 2,
    farm_env: dict[str, str] | None = None,
    **fault: Any,
) -> Started:
    farm = make_farm(**(farm_env or {}))
    sub = farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    start = berlin_slot(days_ahead=days_ahead, hour=hour)
    replica.add_slots(FS_OFFICE, units(start))
    replica.faults(**fault)
    began = datetime.now(UTC) - timedelta(seconds=1)
    worker, _scheduler = farm.start()
    process_id, pid = checking_process(farm)
    return Started(farm, sub, start, began, worker, process_id, pid)


def test_500_storm_backs_off_then_the_slot_is_alerted_once(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: every citizen-API call answers HTTP 500 ``internalError`` (``error_500_s=0``: until
    cleared) from before the farm starts, while a Führerschein slot is free and one subscriber
    watches it; later the fault is cleared.

    Asserted while it lasts: the replica answered the walk with 500s; the check is recorded as
    ``site_error`` (``SiteUnavailable`` with the status); the target is ``backing_off`` into the
    future and the farm sends the site nothing during the back-off; no slot row, no outbox row.
    After the clear: the slot is recorded as episode 1 and the subscriber has exactly one alert
    (the only outbox row), unchanged by three further checks, which are all ``ok`` and leave the
    target ``ok``; every check ran in the same worker process.
    """
    run = start_with_fault(make_farm, replica, hour=9, days_ahead=2, error_500_s=0)
    farm, sub, start, began, worker = run.farm, run.sub, run.start, run.began, run.worker
    process_id = run.process_id

    # the storm
    (failed,) = wait_until(farm.checks, 90, "the first check under the 500 storm")
    assert failed.outcome.value == "site_error", (failed.outcome, failed.error)
    assert failed.error is not None and "HTTP 500" in failed.error, failed.error
    statuses = {r["status"] for r in api_requests(replica, since=began)}
    assert statuses == {500}, statuses
    assert farm.slots() == [] and farm.alerts() == []
    assert_backs_off_quietly(farm, replica, failed.target_id)
    assert outcomes(farm.checks()) == ["site_error"]
    assert farm.slots() == [] and farm.count(Notification) == 0

    # the site recovers, and the back-off runs out
    replica.faults(clear=["error_500"])
    farm.end_backoff(failed.target_id)
    wait_until(farm.alerts, 90, "the alert once the storm is over")
    assert_alerted_once(farm, sub, start)
    later = more_checks(farm, 3, "three checks after the alert")
    assert set(outcomes(later)) == {"ok"}, outcomes(later)
    assert_alerted_once(farm, sub, start)
    target = farm.target(failed.target_id)
    assert target.state == TargetState.OK and target.backoff_until is None
    assert {c.worker_id for c in farm.checks()} == {process_id}
    assert worker.popen.poll() is None, worker.log()[-3000:]


def test_garbage_calendar_is_no_false_slot_and_no_crash(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: the calendar endpoint answers 200 with a truncated JSON body (``garbage_s=0`` on
    ``available-calendar`` only: the rest of the walk works) from before the farm starts, while a
    Führerschein slot is free and one subscriber watches it; later the fault is cleared.

    Asserted while it lasts: the replica served the calendar with status 200 (the garbage); the
    check is ``site_error`` ("answered no JSON object"), not a slot and not a layout change; the
    target backs off and the farm sends the site nothing meanwhile; no slot row, no outbox row; the
    worker's check process is still the same, alive one, its Chromium not crashed.
    After the clear: the slot is recorded once and exactly one alert queued, unchanged by three
    further ``ok`` checks run by that same process.
    """
    run = start_with_fault(make_farm, replica, hour=11, days_ahead=3, garbage_s=0, endpoints=[CALENDAR])
    farm, sub, start, began, worker = run.farm, run.sub, run.start, run.began, run.worker
    process_id, pid = run.process_id, run.pid

    # the garbage
    (failed,) = wait_until(farm.checks, 90, "the first check against the garbage calendar")
    assert failed.outcome.value == "site_error", (failed.outcome, failed.error)
    assert failed.error is not None and "no JSON" in failed.error, failed.error
    calendar = [r for r in api_requests(replica, since=began) if endpoint(r) == CALENDAR]
    assert calendar and {r["status"] for r in calendar} == {200}, calendar
    assert farm.slots() == [] and farm.alerts() == []
    assert_backs_off_quietly(farm, replica, failed.target_id)
    assert outcomes(farm.checks()) == ["site_error"]
    assert farm.slots() == [] and farm.count(Notification) == 0
    assert worker.popen.poll() is None and alive(pid), worker.log()[-3000:]
    (beat,) = farm.workers()
    assert beat["id"] == process_id and beat["browser"] == "ready", beat
    assert beat["browser_crashes"] == 0, beat

    # the site recovers, and the back-off runs out
    replica.faults(clear=["garbage"])
    farm.end_backoff(failed.target_id)
    wait_until(farm.alerts, 90, "the alert once the calendar answers JSON again")
    assert_alerted_once(farm, sub, start)
    later = more_checks(farm, 3, "three checks after the alert")
    assert set(outcomes(later)) == {"ok"}, outcomes(later)
    assert_alerted_once(farm, sub, start)
    assert {c.worker_id for c in farm.checks()} == {process_id}
    assert alive(pid) and checking_process(farm) == (process_id, pid)
    assert worker.popen.poll() is None, worker.log()[-3000:]


def test_slow_site_alerts_once_and_a_timeout_loses_nothing(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Two kinds of slow, one farm, a Führerschein slot free all along and one subscriber:

    1. Injected: every citizen-API answer delayed 1.5 s (``slow_ms=1500``, well inside the
       adapter's limits). Asserted: the checks succeed (``ok``), each slowed (duration >= 1.5 s,
       the replica logged the delayed answers); the slot is recorded once and alerted once,
       unchanged by two more slowed checks.
    2. Injected: the calendar endpoint delayed 20 s, past the warm check's request timeout
       (``MTA_CHECK_REQUEST_TIMEOUT_S``, 8 s here). Asserted: the check is recorded as ``timeout``
       after about that long, the target backs off and the farm sends the site nothing meanwhile;
       the slot stays open (a timeout is no "gone"), no new outbox row.
    3. The fault cleared. Asserted: the checks are ``ok`` again and leave the target ``ok``; still one
       slot row (the same episode 1) and one alert in all; the same worker process ran everything.
    """
    farm_env = {"MTA_CHECK_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S)}
    run = start_with_fault(make_farm, replica, hour=14, days_ahead=2, farm_env=farm_env, slow_ms=1500)
    farm, sub, start, began, worker = run.farm, run.sub, run.start, run.began, run.worker
    process_id = run.process_id

    # 1. merely slow
    wait_until(farm.alerts, 120, "the alert from a slow walk")
    assert_alerted_once(farm, sub, start)
    more_checks(farm, 2, "two more slow checks")
    checks = farm.checks()
    assert set(outcomes(checks)) == {"ok"}, [(c.outcome, c.error) for c in checks]
    assert all(c.duration_ms >= 1500 for c in checks), [c.duration_ms for c in checks]
    answered = api_requests(replica, since=began)
    assert answered and all(r["durationMs"] >= 1500 and r["status"] == 200 for r in answered), answered
    assert_alerted_once(farm, sub, start)

    # 2. slower than the request timeout
    replica.faults(slow_ms=20_000, endpoints=[CALENDAR])
    timed_out = wait_until(
        lambda: [c for c in farm.checks() if c.outcome.value != "ok"], 120, "a check to time out"
    )
    (slow_check,) = timed_out
    assert slow_check.outcome.value == "timeout", (slow_check.outcome, slow_check.error)
    assert slow_check.duration_ms >= REQUEST_TIMEOUT_S * 1000 * 0.95, slow_check.duration_ms
    assert_alerted_once(farm, sub, start)
    assert_backs_off_quietly(farm, replica, slow_check.target_id)
    assert_alerted_once(farm, sub, start)

    # 3. the site is fast again, and the back-off runs out
    replica.faults(clear=["slow"])
    farm.end_backoff(slow_check.target_id)
    after = more_checks(farm, 2, "two checks after the slow fault cleared")
    assert set(outcomes(after)) == {"ok"}, [(c.outcome, c.error) for c in after]
    assert_alerted_once(farm, sub, start)
    target = farm.target(slow_check.target_id)
    assert target.state == TargetState.OK and target.backoff_until is None
    assert farm.alerts(NotificationKind.GONE) == []
    assert {c.worker_id for c in farm.checks()} == {process_id}
    assert worker.popen.poll() is None, worker.log()[-3000:]
