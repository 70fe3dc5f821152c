"""The site budget and the scheduler's leader lock, on a real (private) Redis."""

from __future__ import annotations

import redis

from worker.budget import SiteBudget
from worker.leader import LeaderLock


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


def test_one_leader_and_takeover(redis_url: str) -> None:
    first = LeaderLock(redis.Redis.from_url(redis_url), ttl_ms=300)
    second = LeaderLock(redis.Redis.from_url(redis_url), ttl_ms=300)
    assert first.acquire_or_renew()
    assert not second.acquire_or_renew()
    assert first.acquire_or_renew(), "renewal keeps the lease"
    assert second.current_leader() == first.identity
    # the leader dies without releasing: the lease runs out and the standby takes over
    import time

    time.sleep(0.4)
    assert second.acquire_or_renew()
    assert not first.acquire_or_renew(), "a stale leader cannot renew its successor's lease"
    second.release()
    assert first.acquire_or_renew()
