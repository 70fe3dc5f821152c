"""Politeness: requests a minute the replica received from MTA, for 10, 100 and 1,000 subscribers.

One farm (the real ``mta scheduler`` and a ``mta worker`` with Chromium, production politeness
settings, budget 30 requests/minute) watches the replica while subscribers are added: 10, then 100,
then 1,000, spread over the same 12 targets, and the replica's request log is read over one budget
cycle per step: from the end of one of the budget's 61 s pauses to the end of the next, so every
window holds the same share of pause (quick mode: fixed 30 s windows). Subscribers of one target
share its checks, and the budget is per site, so the figures must stay flat as subscribers grow.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench._harness import Table
from bench.b10_detection import (
    BUDGET_PER_MINUTE,
    MTA_ENV_NOTE,
    TARGETS,
    bench_replica,
    checked_targets,
    mta_farm,
    subscribe_spread,
)
from replica.config import API_PREFIX, PAGE_PATH
from shared.db.models import Subscription
from shared.domain import DEFAULT_SITE
from tests.support.farm import Farm, wait_until
from worker.budget import SiteBudget

STEPS = (10, 100, 1000)
PAUSE_AFTER = 50
"""MTA_SITE_REQUESTS_BEFORE_PAUSE as b10's MTA_ENV sets it (the default)."""
QUICK_WINDOW_S = 30.0


def _requests(base_url: str, since: datetime) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{base_url}/_replica/requests", params={"since": since.isoformat(), "limit": 200_000}, timeout=60
    )
    answer.raise_for_status()
    records: list[dict[str, Any]] = answer.json()["requests"]
    return records


def _max_in_60_s(times: list[float]) -> int:
    """The most requests in any sliding 60-second span."""
    ordered = sorted(times)
    best = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 60:
            start += 1
        best = max(best, end - start + 1)
    return best


def _pause_end(farm: Farm, timeout_s: float = 420.0) -> float:
    """Wait for the budget's next pause (50 requests without a 60 s gap) to start and end; returns
    when it ended (epoch s): from there on, one budget cycle runs until the next pause ends."""
    budget = SiteBudget(farm.redis, DEFAULT_SITE, BUDGET_PER_MINUTE, before_pause=PAUSE_AFTER)
    wait_until(lambda: budget.pause_remaining_s() > 0, timeout_s, "the budget's pause", interval_s=0.1)
    wait_until(lambda: budget.pause_remaining_s() == 0, 120, "the end of the pause", interval_s=0.1)
    return time.time()


def _measure(farm: Farm, base_url: str, subscribers: int, start_s: float, end_s: float) -> list[object]:
    since = datetime.fromtimestamp(start_s, UTC)
    records = [r for r in _requests(base_url, since) if datetime.fromisoformat(r["time"]).timestamp() < end_s]
    minutes = (end_s - start_s) / 60
    api = [r for r in records if r["path"].startswith(API_PREFIX)]
    times = [datetime.fromisoformat(r["time"]).timestamp() for r in api]
    pages = sum(1 for r in records if r["path"].startswith(PAGE_PATH))
    limited = sum(1 for r in api if r["status"] == 429)
    checks = sum(1 for c in farm.checks() if start_s <= c.started_at.timestamp() < end_s)
    return [
        subscribers,
        len(farm.targets()),
        BUDGET_PER_MINUTE,
        end_s - start_s,
        len(api),
        len(api) / minutes,
        _max_in_60_s(times),
        len(records) / minutes,
        pages,
        checks / minutes,
        limited,
    ]


def _wait_checked(farm: Farm, targets: int) -> None:
    since = time.time()
    wait_until(lambda: checked_targets(farm, since) >= targets, 300, f"a check of each of {targets} targets")


def _add(farm: Farm, subscribers: int) -> None:
    already = farm.count(Subscription)
    subscribe_spread(farm, subscribers - already, first=already)


def run(quick: bool) -> list[Table]:
    table = Table(
        "Politeness: requests/min the replica received, by subscribers "
        f"(one site, budget {BUDGET_PER_MINUTE}/min)",
        [
            "subscribers",
            "targets",
            "budget (/min)",
            "window (s)",
            "API requests",
            "API requests/min",
            "most API requests in any 60 s",
            "all requests/min (incl. page, assets)",
            "page loads",
            "target checks/min",
            "429s",
        ],
    )
    with bench_replica() as (base_url, _state), mta_farm(base_url + PAGE_PATH) as farm:
        _add(farm, STEPS[0])
        farm.start(threads=2)
        if quick:  # smoke: fixed short windows once every target was checked
            for subscribers in STEPS:
                _add(farm, subscribers)
                _wait_checked(farm, min(subscribers, len(TARGETS)))
                start_s = time.time()
                time.sleep(QUICK_WINDOW_S)
                table.add(*_measure(farm, base_url, subscribers, start_s, time.time()))
        else:  # one budget cycle per step: from the end of a pause to the end of the next
            start_s = _pause_end(farm)
            for subscribers in STEPS:
                _add(farm, subscribers)
                end_s = _pause_end(farm)
                table.add(*_measure(farm, base_url, subscribers, start_s, end_s))
                start_s = end_s
    table.notes += [
        f"One farm, subscribers added in steps ({', '.join(f'{n:,}' for n in STEPS)}), spread "
        f"round-robin over {len(TARGETS)} targets (2 services x 6 Bürgerbüros); the replica's request log "
        "(GET /_replica/requests), all from the farm's one address; one site (München).",
        "Window: one budget cycle per step, from the end of one of the budget's pauses (61 s after 50 "
        "requests without a 60 s gap, which keeps the city's 429 counter from filling) to the end of the "
        "next, so every window holds the same share of pause; the first starts after the warm-up walks, "
        "the next ones start when the subscribers are added (new targets are walked inside them).",
        MTA_ENV_NOTE,
        "API requests: the citizen API (/buergeransicht/api/citizen/...); all requests also count the "
        "booking page and its static files, which the site's one warm session loads when it walks "
        "(every few minutes, when the captcha token nears expiry). Target checks: one calendar request "
        "for the union of a service's offices serves every target of that service, so the 12 targets "
        "are 2 request streams; at this budget the 10 s minimum interval, not the budget, sets the pace.",
    ]
    if quick:
        table.notes.append(
            f"Quick mode: {QUICK_WINDOW_S:.0f} s windows, not aligned to the budget's pauses (a smoke run)."
        )
    return [table]
