"""The farm end to end: ``mta scheduler`` -> Redis -> ``mta worker`` -> Chromium -> replica -> DB.

Every test runs the production commands as OS processes (``tests.support.farm``) against a private
Redis, a SQLite file in the test's folder and the replica (real HTTP, real Chromium, the page's own
captcha). Settings are test-sized: no pacing, a one-second minimum interval, short leases.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select

from replica.clock import BERLIN
from shared.db.models import NotificationKind, Slot, TargetState
from tests.support.farm import (
    Farm,
    alive,
    command_name,
    descendants,
    parent_of,
    wait_until,
)
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    LEONRODSTRASSE,
    ORLEANSPLATZ,
    WOHNSITZANMELDUNG,
    Replica,
    api_requests,
    berlin_slot,
    endpoint,
    units,
)
from worker.broker import WAKE_CHANNEL
from worker.budget import SiteBudget
from worker.heartbeat import LEADER_KEY
from worker.scheduler import INFLIGHT_PREFIX, site_paused_s

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FS_OFFICE = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE


def outcomes(farm: Farm) -> list[str]:
    return [c.outcome.value for c in farm.checks()]


def test_released_slot_alerts_matching_subscribers_once(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: a Führerschein slot released on the replica, watched by three subscribers of whom
    one matches (wrong hours, wrong weekday do not); later the slot vanishes and returns.
    Asserted: one ``slots`` row and one outbox row for the matching subscriber only, unchanged by
    many repeated checks; the wake-up reaches Redis pub/sub; the returning slot is episode 2 with a
    new alert. Then the worker's Chromium is SIGKILLed: it is relaunched and the next checks succeed
    with no alert repeated. Then SIGTERM stops worker and scheduler cleanly: exit code 0, Chromium
    gone, heartbeats and the leader lease removed."""
    farm = make_farm()
    start = berlin_slot(days_ahead=3, hour=10)
    weekday = datetime.fromtimestamp(start, BERLIN).weekday()
    match = farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    farm.subscribe(2, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE], time_from=clock_time(7), time_to=clock_time(9))
    farm.subscribe(3, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE], weekdays=[(weekday + 1) % 7])
    wake = farm.redis.pubsub(ignore_subscribe_messages=True)
    wake.subscribe(WAKE_CHANNEL)

    worker, scheduler = farm.start(threads=2)
    replica.add_slots(FS_OFFICE, units(start))

    alerts = wait_until(farm.alerts, 90, "the first alert")
    assert len(farm.targets()) == 1, "three subscribers of one service and office share a target"
    ((office, stamp, episode),) = farm.slots()
    assert (office, stamp, episode) == (FS_OFFICE, start, 1)
    assert [(sub, ep) for sub, _slot, ep in alerts] == [(match, 1)]
    message = wait_until(lambda: wake.get_message(timeout=1.0), 10, "the wake-up on Redis")
    assert message["channel"].decode() == WAKE_CHANNEL

    fs_target = next(t.id for t in farm.targets() if t.service_id == FUEHRERSCHEIN_UMSCHREIBUNG)
    seen_at = len([c for c in farm.checks() if c.target_id == fs_target])
    wait_until(
        lambda: len([c for c in farm.checks() if c.target_id == fs_target]) >= seen_at + 3,
        60,
        "three more checks of the same target",
    )
    assert farm.slots() == [(FS_OFFICE, start, 1)]
    assert farm.alerts() == alerts, "a repeated check must not alert again"

    replica.remove_slots(FS_OFFICE, units(start))
    wait_until(lambda: farm.count(Slot, Slot.gone_at.is_not(None)) == 1, 60, "the slot to be gone")
    assert [sub for sub, _slot, _ep in farm.alerts(NotificationKind.GONE)] == [match]
    replica.add_slots(FS_OFFICE, units(start))
    wait_until(lambda: len(farm.slots()) == 2, 60, "the slot's second episode")
    assert farm.slots() == [(FS_OFFICE, start, 1), (FS_OFFICE, start, 2)]
    assert sorted((sub, ep) for sub, _slot, ep in farm.alerts()) == [(match, 1), (match, 2)]
    assert set(outcomes(farm)) <= {"ok", "no_slots"}, outcomes(farm)

    # Chromium killed under the worker: relaunched, and the next checks succeed
    (browser_pid,) = [
        pid
        for pid in descendants(worker.pid)
        if command_name(pid) == "chromium" and command_name(parent_of(pid)) != "chromium"
    ]
    checks_before = len(farm.checks())
    os.kill(browser_pid, signal.SIGKILL)
    wait_until(lambda: len(farm.checks()) >= checks_before + 3, 60, "three checks after the kill")
    assert set(outcomes(farm)) <= {"ok", "no_slots"}, outcomes(farm)

    def relaunch_reported() -> bool:  # the heartbeat is written every 2 s: wait for the next one
        (beat,) = farm.workers()
        return bool(beat["browsers_launched"] >= 2 and beat["browser_crashes"] >= 1)

    wait_until(relaunch_reported, 10, f"the heartbeat to report the relaunch: {farm.workers()}")
    assert farm.alerts() == sorted(farm.alerts()) and len(farm.alerts()) == 2

    # clean shutdown
    browsers = {pid for pid in descendants(worker.pid) if alive(pid)}
    assert browsers, "the worker process has a Playwright driver and Chromium below it"
    assert farm.leader() is not None
    for process in (scheduler, worker):
        process.terminate()
        assert process.popen.wait(30) == 0, process.log()[-3000:]
    wait_until(lambda: not any(alive(pid) for pid in browsers), 10, "Chromium to exit")
    assert worker.events("worker_runtime_stopped"), worker.log()[-2000:]
    assert farm.redis.get(LEADER_KEY) is None, "a stopping leader releases its lease"
    assert farm.workers() == [] and farm.schedulers() == []


def _calendar_streams(requests: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Calendar requests per (service ids, office ids) in a slice of the replica's request log."""
    streams: Counter[tuple[str, str]] = Counter()
    for record in requests:
        if endpoint(record) == "available-calendar":
            query = parse_qs(record["query"])
            streams[(query["serviceIds"][0], query["officeIds"][0])] += 1
    return streams


def test_hundred_subscribers_three_targets_one_request_stream_per_service(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: 100 subscribers watching 3 distinct (service, office) combinations, two of them
    for the same service, a 20-per-minute budget, slots free at every office. Asserted: 3 targets;
    the replica's request log shows calendar requests for 2 streams only: the shared service at the
    union of its two offices, and the other service at its office; all API requests in the window
    stay within the budget; every subscriber is alerted, once per free slot of the office it
    watches (never for the other office of the union). (Each walk's page first asks for the deep
    link's single office, its own request, and the walk then asks for the union: so every such
    request is followed by a union request, read from the log a few seconds later, when a walk
    cut by the first reading has ended.)"""
    budget = 20
    farm = make_farm(MTA_SITE_BUDGET_PER_MINUTE=str(budget))
    plans = [
        (WOHNSITZANMELDUNG, ORLEANSPLATZ),
        (WOHNSITZANMELDUNG, LEONRODSTRASSE),
        (FUEHRERSCHEIN_UMSCHREIBUNG, FS_OFFICE),
    ]
    chosen = [(5000 + i, *plans[i % 3]) for i in range(100)]
    office_of: dict[int | None, int] = {
        sub: office
        for sub, (_user, _service, office) in zip(farm.subscribe_many(chosen), chosen, strict=True)
    }
    start = berlin_slot(days_ahead=2, hour=11)
    for _service, office in plans:
        replica.add_slots(office, units(start))
    began = datetime.now(UTC)
    farm.start(threads=2)

    def alerted() -> set[int | None]:
        return {sub for sub, _slot, _ep in farm.alerts()}

    wait_until(lambda: len(alerted()) == 100, 120, "an alert for every subscriber")
    time.sleep(3)  # let the farm keep checking for a while: still three streams
    requests = api_requests(replica, since=began - timedelta(seconds=1))
    assert len(farm.targets()) == 3
    asked = _calendar_streams(requests)
    union = (str(WOHNSITZANMELDUNG), ",".join(sorted(str(o) for o in (ORLEANSPLATZ, LEONRODSTRASSE))))
    deep_link = (str(WOHNSITZANMELDUNG), str(ORLEANSPLATZ))
    assert set(asked) - {deep_link} == {union, (str(FUEHRERSCHEIN_UMSCHREIBUNG), str(FS_OFFICE))}
    time.sleep(5)
    later = _calendar_streams(api_requests(replica, since=began - timedelta(seconds=1)))
    assert asked[deep_link] <= later[union], (asked, later)
    elapsed_s = (datetime.now(UTC) - began).total_seconds()
    windows = max(1, int(elapsed_s // 60) + 1)
    assert len(requests) <= budget * windows, f"{len(requests)} requests in {elapsed_s:.0f} s"
    slots_at = Counter(office for office, _start, _episode in farm.slots())
    alerts_of = Counter(sub for sub, _slot, _episode in farm.alerts())
    assert {sub: alerts_of[sub] for sub in office_of} == {sub: slots_at[o] for sub, o in office_of.items()}


def test_site_failures_back_off_and_never_alert_subscribers(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """One farm through three site failures in a row, while a slot is free all along:

    1. Injected: the page renames its time-slot buttons (a layout change), alert threshold 2.
       Asserted: the checks are ``layout_changed``; exactly one operator alert (also after the
       failures that follow); no slot row, no subscriber alert.
    2. Injected: maintenance (every API call 503). Asserted: ``site_error`` (``SiteUnavailable``),
       the target backs off, still no slot and no new outbox row.
    3. Injected: a 429 storm, met by a second target's first walk. Asserted: ``rate_limited``; that
       target backs off until the site's reset time (at most about 60 s) and the whole site is
       paused in Redis; the scheduler sends no request to the site meanwhile.
    """
    farm = make_farm(MTA_LAYOUT_CHANGED_ALERT_AFTER="2")
    farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    replica.add_slots(FS_OFFICE, units(berlin_slot(days_ahead=2, hour=9)))
    replica.add_slots(LEONRODSTRASSE, [berlin_slot(days_ahead=2, hour=10)])
    replica.faults(layout_variant="renamed-timeslot-ids")
    farm.start()

    # 1. layout change
    wait_until(lambda: outcomes(farm).count("layout_changed") >= 2, 120, "two layout_changed checks")
    assert set(outcomes(farm)) == {"layout_changed"}
    assert len(farm.alerts(NotificationKind.OPERATOR)) == 1, farm.alerts(NotificationKind.OPERATOR)
    assert farm.slots() == [] and farm.alerts() == []
    (fs_target,) = farm.targets()
    assert fs_target.state == TargetState.CHANGED

    # 2. maintenance
    replica.faults(layout_variant="default", maintenance=True)
    wait_until(lambda: "site_error" in outcomes(farm), 60, "a site_error check")
    fs_target = farm.target(fs_target.id)
    assert fs_target.state == TargetState.BACKING_OFF
    assert fs_target.backoff_until is not None and fs_target.backoff_until > datetime.now(UTC)
    assert farm.slots() == [] and farm.alerts() == []
    assert len(farm.alerts(NotificationKind.OPERATOR)) == 1

    # 3. rate-limit storm, met by a new target's walk
    replica.faults(clear=["maintenance"], storm_s=0)
    stormed = datetime.now(UTC)
    farm.subscribe(2, WOHNSITZANMELDUNG, [LEONRODSTRASSE])
    wait_until(lambda: "rate_limited" in outcomes(farm), 60, "the 429 to be recorded")
    leonrod = next(t for t in farm.targets() if t.id != fs_target.id)
    assert leonrod.state == TargetState.BACKING_OFF
    assert leonrod.backoff_until is not None
    assert stormed < leonrod.backoff_until <= datetime.now(UTC) + timedelta(seconds=62)
    # the worker sets the site pause in Redis just after the check row commits
    wait_until(lambda: site_paused_s(farm.redis, "munich") > 5, 10, "the site pause to be set")
    settled = datetime.now(UTC) + timedelta(seconds=0.5)
    time.sleep(3)
    assert api_requests(replica, since=settled) == [], "the scheduler must skip a paused site"
    assert outcomes(farm).count("rate_limited") == 1
    assert farm.slots() == [] and farm.alerts() == []
    assert len(farm.alerts(NotificationKind.OPERATOR)) == 1


def test_farm_follows_a_lower_limit_the_site_announces(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: the site allows only 12 requests without a 60 s pause (X-RateLimit-Limit: 12),
    while the settings assume the documented 60 and pause after 50. Asserted: after its first
    answers the farm pauses 12 - 2 = 10 requests into the streak: the replica answers no 429, no
    check is ``rate_limited``, and Redis holds the announced limit and the pause."""
    replica.faults(rate_limit=12)
    farm = make_farm(MTA_SITE_REQUESTS_BEFORE_PAUSE="50")
    farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    farm.start()
    budget = SiteBudget(farm.redis, "munich", 120, before_pause=50)
    wait_until(lambda: budget.pause_remaining_s() > 0, 90, "the farm to pause its streak")
    assert budget.announced_limit() == 12 and budget.pause_after() == 10
    # the pause shows when the 10th request is taken from the budget, before that check has run
    wait_until(lambda: not farm.redis.keys(f"{INFLIGHT_PREFIX}*"), 60, "the checks under way to end")
    time.sleep(1)
    requests = api_requests(replica)
    assert 10 <= len(requests) <= 12, [endpoint(r) for r in requests]
    assert all(r["status"] != 429 for r in requests), [(endpoint(r), r["status"]) for r in requests]
    assert "rate_limited" not in outcomes(farm) and farm.checks(), outcomes(farm)
    assert budget.pause_remaining_s() > 40


def test_a_slot_in_the_month_after_next_is_alerted_as_fast_as_one_tomorrow(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Tried: the farm (scheduler, worker, Chromium) watches a Führerschein office for a subscriber
    with no date filter; once its session is warm, one slot is released tomorrow and one in the
    month after next, at the same moment. Asserted: both are alerted once, and both were first
    seen by the same check (the round reads every month of the horizon), so the later month is
    not one second later than tomorrow."""
    farm = make_farm()
    subscription = farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    farm.start()
    wait_until(lambda: len(farm.checks()) >= 2, 90, "the walk and a warm check")
    today = datetime.now(BERLIN).date()
    later = (today.replace(day=1) + timedelta(days=62)).replace(day=3)
    while later.weekday() >= 5:
        later += timedelta(days=1)
    near = berlin_slot(days_ahead=1, hour=10)
    far = berlin_slot(days_ahead=(later - today).days, hour=11)
    replica.add_slots(FS_OFFICE, units(near) + units(far))

    wait_until(lambda: len(farm.alerts()) >= 2, 60, "both alerts")
    alerts = farm.alerts()
    assert sorted(stamp for _office, stamp, _episode in farm.slots()) == [near, far]
    assert [sub for sub, _slot, _episode in alerts] == [subscription, subscription]
    with farm.db.transaction() as session:
        first_seen = {int(s.start_at.timestamp()): s.first_seen_at for s in session.scalars(select(Slot))}
    assert first_seen[far] == first_seen[near]
