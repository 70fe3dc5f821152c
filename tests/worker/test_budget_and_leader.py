"""The site budget and the scheduler's leader lock, on a real (private) Redis."""

from __future__ import annotations

import time

import redis

from worker.budget import SiteBudget, pause_after
from worker.leader import LeaderLock


def wait_expired(client: redis.Redis, key: str, timeout_s: float = 2.0) -> None:
    """Poll until Redis has let ``key`` expire (a PEXPIRE of 1 ms), failing after ``timeout_s``:
    a fixed sleep would stand in for the wait and pass or fail by luck. Tried: without the wait
    both callers fail (the key is still there); with the streak kept in a key that never expires,
    the streak test fails; with a standby that never acquires, the takeover test fails."""
    deadline = time.monotonic() + timeout_s
    while client.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire within {timeout_s} s"
        time.sleep(0.001)


def test_budget_allows_exactly_per_minute(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = SiteBudget(client, "munich", per_minute=5)
    taken = [budget.try_take() for _ in range(8)]
    assert taken == [True] * 5 + [False] * 3
    assert budget.used() == 5 and budget.remaining() == 0


def test_budget_shared_between_clients_and_sites(redis_url: str) -> None:
    a = SiteBudget(redis.Redis.from_url(redis_url), "munich", per_minute=3)
    b = SiteBudget(redis.Redis.from_url(redis_url), "munich", per_minute=3)
    other = SiteBudget(redis.Redis.from_url(redis_url), "berlin", per_minute=3)
    assert [a.try_take(), b.try_take(), a.try_take(), b.try_take()] == [True, True, True, False]
    assert other.try_take()


def test_charge_overdraws_so_next_take_waits(redis_url: str) -> None:
    budget = SiteBudget(redis.Redis.from_url(redis_url), "munich", per_minute=10)
    assert budget.try_take()
    budget.charge(9)  # a full walk made nine more requests
    assert budget.used() == 10
    assert not budget.try_take()


def test_walk_overdraw_is_carried_into_the_coming_minutes(redis_url: str) -> None:
    """Tried: a walk of 25 more requests at a budget of 10/min. The window fills and the 16 it has no
    room for are carried, 10 a minute on and 6 two minutes on, so the checks after the walk pay it
    back instead of the overdraw being forgotten when it leaves the window."""
    client = redis.Redis.from_url(redis_url)
    budget = SiteBudget(client, "munich", per_minute=10)
    assert budget.try_take()
    budget.charge(25)
    assert budget.used() == 10 and budget.remaining() == 0 and not budget.try_take()
    now = int(time.time())
    future = sorted(
        (int(key.rpartition(b"@")[2]) - now, int(client.get(key) or 0), client.pttl(key))
        for key in client.scan_iter(match=f"{budget.key}@*")
        if int(key.rpartition(b"@")[2]) > now
    )
    assert [count for _, count, _ in future] == [10, 6]  # 16 carried
    (in_one, _, ttl_one), (in_two, _, ttl_two) = future
    assert 58 <= in_one <= 60 and 118 <= in_two <= 120
    assert ttl_one > in_one * 1000 and ttl_two > in_two * 1000  # each lives a full window once due


def test_one_leader_and_takeover(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    first = LeaderLock(client, ttl_ms=10_000)
    second = LeaderLock(redis.Redis.from_url(redis_url), ttl_ms=10_000)
    assert first.acquire_or_renew()
    assert not second.acquire_or_renew()
    assert first.acquire_or_renew(), "renewal keeps the lease"
    assert second.current_leader() == first.identity
    # the leader dies without releasing: the lease runs out (fast-forwarded) and the standby takes over
    client.pexpire(first.key, 1)
    wait_expired(client, first.key)
    assert second.acquire_or_renew()
    assert not first.acquire_or_renew(), "a stale leader cannot renew its successor's lease"
    second.release()
    assert first.acquire_or_renew()


def test_streak_pauses_until_sixty_quiet_seconds(redis_url: str) -> None:
    """The city counts requests without a 60 s pause: after ``before_pause`` we stop until the
    streak key expires (about 61 s after the last request), whatever the per-minute rate allows."""
    client = redis.Redis.from_url(redis_url)
    budget = SiteBudget(client, "munich", per_minute=100, before_pause=4)
    assert [budget.try_take() for _ in range(3)] == [True] * 3
    budget.charge(1)  # a walk's extra request counts too
    assert budget.streak() == 4
    assert not budget.try_take()
    assert 55 < budget.pause_remaining_s() <= 61
    assert budget.remaining() == 0
    client.pexpire(budget.streak_key, 1)  # sixty quiet seconds, fast-forwarded
    wait_expired(client, budget.streak_key)
    assert budget.pause_remaining_s() == 0 and budget.try_take()


def test_no_streak_pause_when_disabled(redis_url: str) -> None:
    budget = SiteBudget(redis.Redis.from_url(redis_url), "munich", per_minute=10, before_pause=0)
    assert all(budget.try_take() for _ in range(10))
    assert budget.pause_remaining_s() == 0 and budget.streak() == 0


def test_heartbeats_listed_until_cleared(redis_url: str) -> None:
    from worker import heartbeat

    client = redis.Redis.from_url(redis_url)
    heartbeat.beat(client, "worker", "host:1", {"browser": "ready"})
    heartbeat.beat(client, "worker", "host:2", {"browser": "down"})
    heartbeat.beat(client, "scheduler", "host:3:x", {"leader": True})
    assert {b["id"]: b["browser"] for b in heartbeat.live(client, "worker")} == {
        "host:1": "ready",
        "host:2": "down",
    }
    assert 0 < client.ttl(heartbeat.key("worker", "host:1")) <= heartbeat.TTL_S
    heartbeat.clear(client, "worker", "host:1")
    assert [b["id"] for b in heartbeat.live(client, "worker")] == ["host:2"]
    assert heartbeat.live(client, "worker", max_age_s=-1) == [], "an old beat is not live"
    (scheduler,) = heartbeat.live(client, "scheduler")
    assert scheduler["leader"] is True and scheduler["role"] == "scheduler"


def test_announced_limit_lowers_the_pause_never_raises_it(redis_url: str) -> None:
    """Injected: the site's headers announce a limit of 20, then one of 120 (settings: pause after
    50). Asserted: with 20 announced MTA pauses after 20 - 3 = 17 requests; 120 announced keeps the
    setting (50); the dashboard's reading agrees."""
    client = redis.Redis.from_url(redis_url)
    budget = SiteBudget(client, "strict-site", per_minute=1000, before_pause=50)
    assert budget.pause_after() == 50 and budget.announced_limit() is None
    budget.observe(limit=20, counted=1)
    assert budget.pause_after() == 17
    assert sum(budget.try_take() for _ in range(30)) == 16  # 1 counted by the site + 16 of ours
    assert budget.pause_remaining_s() > 59
    budget.observe(limit=120, counted=0)
    assert budget.announced_limit() == 120 and budget.pause_after() == 50
    assert pause_after(50, 120) == 50 and pause_after(50, 20) == 17 and pause_after(0, 20) == 0
    assert pause_after(50, 2) == 1, "a tiny announced limit still lets one request through"


def test_site_count_raises_our_streak(redis_url: str) -> None:
    """Injected: the site says it has counted 45 requests of the current streak while our counter
    says 3 (e.g. a Redis restart lost it, or another client shares our address). Asserted: the
    streak becomes 45, a lower count from the site never lowers it, and the pause comes when the
    site's count reaches the threshold rather than 47 requests later."""
    client = redis.Redis.from_url(redis_url)
    budget = SiteBudget(client, "shared-address", per_minute=1000, before_pause=50)
    for _ in range(3):
        assert budget.try_take()
    budget.observe(limit=60, counted=45)
    assert budget.streak() == 45
    budget.observe(limit=60, counted=10)
    assert budget.streak() == 45
    taken = sum(budget.try_take() for _ in range(10))
    assert taken == 5 and budget.pause_remaining_s() > 59
