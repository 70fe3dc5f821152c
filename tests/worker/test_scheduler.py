"""The scheduler: coalesced targets, the site budget, back-off, in-flight checks, minute alignment.

Real Redis (private server) and a real migrated SQLite file; ``send`` collects target ids instead
of enqueueing so each tick's decisions can be read directly.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis

from shared.db.database import Database
from shared.db.models import Subscription, Target, User
from shared.domain import SITE_TIMEZONE
from shared.horizon import decode_days
from shared.settings import Settings
from worker.scheduler import Scheduler, mark_done, note_round_cost

WOHNSITZ = 1063475  # offered at 7 Bürgerbüros
EINBUERGERUNG = 1071907  # office 10471 only
FS_UMSCHREIBUNG = 1071896  # office 10308174


def _subscribe(db: Database, count: int) -> None:
    """``count`` users spread over three distinct (service, office set) targets."""
    plans = [(WOHNSITZ, [102522]), (EINBUERGERUNG, []), (FS_UMSCHREIBUNG, [10308174])]
    with db.transaction() as session:
        for i in range(count):
            service_id, offices = plans[i % 3]
            session.add(User(id=1000 + i, language="de"))
            session.add(Subscription(user_id=1000 + i, service_id=service_id, office_ids=offices))


def _scheduler(settings: Settings, db: Database, sent: list[int], **kw: Any) -> Scheduler:
    client = redis.Redis.from_url(settings.redis_url)
    return Scheduler(
        settings,
        db,
        client,
        lambda target_id, _dispatch, riders, _days: sent.extend([target_id, *riders]),
        rng=random.Random(1),
        **{"spread_checks": False, **kw},
    )


def test_hundred_subscribers_three_targets(worker_settings: Settings, db: Database) -> None:
    _subscribe(db, 100)
    sent: list[int] = []
    scheduler = _scheduler(worker_settings, db, sent)
    assert len(scheduler.sync()) == 3
    first = scheduler.tick(now_s=1_000_000.0)
    assert sorted(first) == sorted(t.id for t in scheduler._targets)
    # in flight: nothing is sent again until the worker says it is done
    assert scheduler.tick(now_s=1_000_100.0) == []
    for target_id in first:
        mark_done(scheduler.client, target_id)
    assert sorted(scheduler.tick(now_s=1_000_100.0)) == sorted(first)


def test_budget_caps_dispatches(worker_settings: Settings, db: Database) -> None:
    _subscribe(db, 3)
    sent: list[int] = []
    settings = worker_settings.model_copy(update={"site_budget_per_minute": 2})
    scheduler = _scheduler(settings, db, sent)
    assert len(scheduler.tick(now_s=2_000_000.0)) == 2, "only two tokens in the window"
    for target_id in list(sent):
        mark_done(scheduler.client, target_id)
    assert scheduler.tick(now_s=2_000_001.0) == []


def test_interval_is_equal_share_of_budget(worker_settings: Settings, db: Database) -> None:
    _subscribe(db, 3)
    settings = worker_settings.model_copy(update={"site_budget_per_minute": 6})
    scheduler = _scheduler(settings, db, [])
    scheduler.sync()
    assert scheduler.interval_s("munich") == 30.0  # 3 targets share 6/min


def test_backoff_skips_target(worker_settings: Settings, db: Database) -> None:
    _subscribe(db, 3)
    sent: list[int] = []
    scheduler = _scheduler(worker_settings, db, sent)
    scheduler.sync()
    blocked = scheduler._targets[0].id
    with db.transaction() as session:
        target = session.get(Target, blocked)
        assert target is not None
        target.backoff_until = datetime.now(UTC) + timedelta(minutes=5)
    scheduler.sync()
    dispatched = scheduler.tick()
    assert blocked not in dispatched and len(dispatched) == 2


def test_checks_are_spread_over_the_minute(worker_settings: Settings, db: Database) -> None:
    """Tried: three groups all due at once on a 6-per-minute budget. Asserted: one tick sends one
    check, not three; the next goes out once the budget's even spacing (0.8 x 60 s / 6, plus up to
    the jitter) has passed, and not before."""
    _subscribe(db, 3)
    settings = worker_settings.model_copy(update={"site_budget_per_minute": 6, "check_jitter_s": 1.0})
    sent: list[int] = []
    scheduler = _scheduler(settings, db, sent, spread_checks=True)
    scheduler.sync()
    t0 = 3_000_000.0
    assert len(scheduler.tick(now_s=t0)) == 1
    assert scheduler.tick(now_s=t0 + 7.9) == []
    assert len(scheduler.tick(now_s=t0 + 8.0 + 1.0)) == 1
    assert len(sent) == 2


def test_paused_subscriptions_stop_their_target(worker_settings: Settings, db: Database) -> None:
    _subscribe(db, 3)
    scheduler = _scheduler(worker_settings, db, [])
    assert len(scheduler.sync()) == 3
    with db.transaction() as session:
        for sub in session.query(Subscription).filter(Subscription.service_id == WOHNSITZ):
            sub.state = "paused"  # type: ignore[assignment]
    assert len(scheduler.sync()) == 2


def test_backoff_written_by_a_worker_is_read_between_syncs(worker_settings: Settings, db: Database) -> None:
    """A worker records a back-off; the scheduler picks it up at its next back-off refresh, without
    waiting for the next full sync."""
    _subscribe(db, 1)
    scheduler = _scheduler(worker_settings, db, [], sync_interval_s=3600.0, backoff_refresh_s=0.0)
    (target,) = scheduler.sync()
    with db.transaction() as session:
        row = session.get(Target, target.id)
        assert row is not None
        row.backoff_until = datetime.now(UTC) + timedelta(minutes=5)
    assert scheduler.tick() == []


def test_site_pause_and_worker_backoff_hold_dispatches(worker_settings: Settings, db: Database) -> None:
    from worker.scheduler import pause_site, site_paused_s

    _subscribe(db, 3)
    sent: list[int] = []
    scheduler = _scheduler(worker_settings, db, sent)
    scheduler.sync()
    pause_site(scheduler.client, "munich", datetime.now(UTC) + timedelta(seconds=30))
    assert 25 < site_paused_s(scheduler.client, "munich") <= 30
    pause_site(scheduler.client, "munich", datetime.now(UTC) + timedelta(seconds=5))
    assert site_paused_s(scheduler.client, "munich") > 25, "a shorter pause never shortens a longer one"
    assert scheduler.tick() == []
    scheduler.client.delete("mta:site_pause:munich")

    first = scheduler.tick(now_s=4_000_000.0)
    assert len(first) == 3
    # the worker finished one with a back-off, the others plainly
    mark_done(scheduler.client, first[0], not_before=datetime.now(UTC) + timedelta(seconds=60))
    for target_id in first[1:]:
        mark_done(scheduler.client, target_id)
    assert sorted(scheduler.tick(now_s=4_000_100.0)) == sorted(first[1:])


def test_dispatch_ids_are_unique_and_a_failed_send_frees_the_target(
    worker_settings: Settings, db: Database
) -> None:
    _subscribe(db, 2)
    ids: list[str] = []
    fail = [True]

    def send(target_id: int, dispatch_id: str, _riders: list[int], _days: str) -> None:
        if fail[0]:
            raise ConnectionError("redis went away")
        ids.append(dispatch_id)

    client = redis.Redis.from_url(worker_settings.redis_url)
    scheduler = Scheduler(worker_settings, db, client, send, rng=random.Random(1), spread_checks=False)
    with pytest.raises(ConnectionError):
        scheduler.tick(now_s=5_000_000.0)
    assert not client.keys("mta:inflight:*"), "a message that was never sent holds nothing in flight"
    fail[0] = False
    assert len(scheduler.tick(now_s=5_000_000.5)) == 2
    assert len(set(ids)) == 2
    inflight = cast(list[bytes], client.mget(client.keys("mta:inflight:*")))
    assert {v.decode() for v in inflight} == set(ids)


def test_periodic_jobs_run_when_due_and_survive_failures() -> None:
    """Injected: a job that raises. Asserted: it is logged and retried next period; others still run."""
    from worker.scheduler import PeriodicJob, Scheduler

    calls: list[str] = []

    def boom() -> None:
        calls.append("boom")
        raise RuntimeError("database locked")

    scheduler = Scheduler.__new__(Scheduler)  # only the job runner is exercised
    scheduler.jobs = [PeriodicJob("boom", 10, boom), PeriodicJob("ok", 30, lambda: calls.append("ok"))]
    assert scheduler.run_due_jobs(now_s=100) == ["ok"]
    assert scheduler.run_due_jobs(now_s=105) == []
    assert scheduler.run_due_jobs(now_s=111) == []
    assert calls == ["boom", "ok", "boom"]
    assert scheduler.run_due_jobs(now_s=131) == ["ok"]


def test_targets_of_one_service_are_checked_together(worker_settings: Settings, db: Database) -> None:
    """Injected: three targets of one service at different office sets, and one of another service;
    a 2-per-minute budget. Asserted: one tick sends two checks (one token each): the first target
    of the service carries the other two as riders, all three are in flight and dispatched; the
    interval is the share of 2 groups, not 4 targets; a rider backing off stays behind."""
    with db.transaction() as session:
        for user_id, service_id, offices in [
            (1, WOHNSITZ, [102522]),
            (2, WOHNSITZ, [102523]),
            (3, WOHNSITZ, [102522, 102523]),
            (4, FS_UMSCHREIBUNG, [10308174]),
        ]:
            session.add(User(id=user_id, language="en"))
            session.add(Subscription(user_id=user_id, service_id=service_id, office_ids=offices))
    messages: list[tuple[int, list[int]]] = []
    settings = worker_settings.model_copy(update={"site_budget_per_minute": 2})
    client = redis.Redis.from_url(settings.redis_url)
    scheduler = Scheduler(
        settings,
        db,
        client,
        lambda target_id, _d, riders, _days: messages.append((target_id, riders)),
        spread_checks=False,
    )
    targets = scheduler.sync()
    wohnsitz = [t.id for t in targets if t.service_id == WOHNSITZ]
    assert len(targets) == 4 and len(wohnsitz) == 3
    assert scheduler.interval_s("munich") == max(settings.check_min_interval_s, 60.0 * 2 / 2)
    sent = scheduler.tick(now_s=3_000_000.0)
    assert sorted(sent) == sorted(t.id for t in targets)
    assert len(messages) == 2 and scheduler.budget("munich").used() == 2
    grouped = next(m for m in messages if m[0] in wohnsitz)
    assert sorted([grouped[0], *grouped[1]]) == sorted(wohnsitz)

    for target_id in sent:
        mark_done(client, target_id)
    with db.transaction() as session:
        rider = session.get(Target, wohnsitz[1])
        assert rider is not None
        rider.backoff_until = datetime.now(UTC) + timedelta(minutes=5)
    scheduler.sync()
    messages.clear()
    scheduler.budget("munich").client.flushdb()
    sent = scheduler.tick(now_s=3_000_100.0)
    grouped = next(m for m in messages if m[0] in wohnsitz)
    assert wohnsitz[1] not in [grouped[0], *grouped[1]] and wohnsitz[1] not in sent


def test_a_check_carries_the_days_its_group_wants(worker_settings: Settings, db: Database) -> None:
    """Injected: two subscriptions to one service with different date windows and weekdays, and one
    to another service without any filter. Asserted: each check message carries exactly the days
    of the horizon that some subscriber of its group wants (the union of their windows and
    weekdays), the unfiltered group the whole horizon from today."""
    today = datetime.now(SITE_TIMEZONE).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    with db.transaction() as session:
        for user_id in (1, 2, 3):
            session.add(User(id=user_id, language="en"))
        session.add(
            Subscription(
                user_id=1,
                service_id=WOHNSITZ,
                office_ids=[102522],
                date_from=monday,
                date_to=monday + timedelta(days=13),
                weekdays=[0],
            )
        )
        session.add(
            Subscription(
                user_id=2,
                service_id=WOHNSITZ,
                office_ids=[102523],
                date_from=monday + timedelta(days=30),
                date_to=monday + timedelta(days=31),
            )
        )
        session.add(Subscription(user_id=3, service_id=FS_UMSCHREIBUNG, office_ids=[10308174]))
    messages: dict[int, str] = {}

    def send(target_id: int, _dispatch: str, riders: list[int], days: str) -> None:
        messages.update(dict.fromkeys([target_id, *riders], days))

    client = redis.Redis.from_url(worker_settings.redis_url)
    scheduler = Scheduler(worker_settings, db, client, send, spread_checks=False)
    targets = {t.service_id: t.id for t in scheduler.sync()}
    scheduler.tick(now_s=3_000_000.0)
    wohnsitz_days = decode_days(messages[targets[WOHNSITZ]])
    assert wohnsitz_days == {
        monday,
        monday + timedelta(days=7),
        monday + timedelta(days=30),
        monday + timedelta(days=31),
    }
    fs_days = decode_days(messages[targets[FS_UMSCHREIBUNG]])
    assert min(fs_days) == today and len(fs_days) == worker_settings.check_horizon_days + 1


def test_costly_rounds_space_the_groups_out(worker_settings: Settings, db: Database) -> None:
    """Injected: two groups on a 30-per-minute budget; a worker reports that one group's last warm
    round cost 9 requests (a horizon request and 8 days). Asserted: the interval between rounds
    grows from the two groups' one-request share to the share of 10 requests a cycle."""
    _subscribe(db, 2)
    settings = worker_settings.model_copy(update={"site_budget_per_minute": 30, "check_min_interval_s": 1.0})
    client = redis.Redis.from_url(settings.redis_url)
    scheduler = Scheduler(settings, db, client, lambda *_args: None, spread_checks=False)
    scheduler.sync()
    scheduler.tick(now_s=3_000_000.0)
    assert scheduler.interval_s("munich") == pytest.approx(60.0 * 2 / 30)
    note_round_cost(client, "munich", WOHNSITZ, 1, 9)
    scheduler.tick(now_s=3_000_001.0)
    assert scheduler.interval_s("munich") == pytest.approx(60.0 * 10 / 30)
