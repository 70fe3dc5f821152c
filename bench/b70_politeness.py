"""Politeness: requests a minute the replica received from MTA, for 10, 100 and 1,000 subscribers.

One farm (the real ``mta scheduler`` and a ``mta worker`` with Chromium, production politeness
settings, budget 30 requests/minute) watches the replica while subscribers are added: 10, then 100,
then 1,000, spread over the same 12 targets. After each step the farm settles (every target it now
has was checked), then the replica's request log is read over a window. Subscribers of one target
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
from tests.support.farm import Farm, wait_until

STEPS = (10, 100, 1000)


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


def _window(farm: Farm, base_url: str, subscribers: int, settle_s: float, window_s: float) -> list[object]:
    already = _subscribed(farm)
    subscribe_spread(farm, subscribers - already, first=already)
    targets = min(subscribers, len(TARGETS))
    changed = time.time()
    wait_until(
        lambda: checked_targets(farm, changed) >= targets, 300, f"a check of each of {targets} targets"
    )
    time.sleep(settle_s)
    start = datetime.now(UTC)
    time.sleep(window_s)
    records = _requests(base_url, start)
    minutes = window_s / 60
    api = [r for r in records if r["path"].startswith(API_PREFIX)]
    times = [datetime.fromisoformat(r["time"]).timestamp() for r in api]
    pages = sum(1 for r in records if r["path"].startswith(PAGE_PATH))
    limited = sum(1 for r in api if r["status"] == 429)
    checks = sum(1 for c in farm.checks() if c.started_at >= start)
    return [
        subscribers,
        len(farm.targets()),
        BUDGET_PER_MINUTE,
        len(api) / minutes,
        _max_in_60_s(times),
        len(records) / minutes,
        pages,
        checks / minutes,
        limited,
    ]


def _subscribed(farm: Farm) -> int:
    return farm.count(Subscription)


def run(quick: bool) -> list[Table]:
    settle_s, window_s = (5.0, 30.0) if quick else (20.0, 100.0)
    table = Table(
        "Politeness: requests/min the replica received, by subscribers (one site, budget 30/min)",
        [
            "subscribers",
            "targets",
            "budget (/min)",
            "API requests/min",
            "most API requests in any 60 s",
            "all requests/min (incl. page, assets)",
            "page loads",
            "checks/min",
            "429s",
        ],
    )
    with bench_replica() as (base_url, _state), mta_farm(base_url + PAGE_PATH) as farm:
        subscribe_spread(farm, STEPS[0])
        farm.start(threads=2)
        for subscribers in STEPS:
            table.add(*_window(farm, base_url, subscribers, settle_s, window_s))
    table.notes += [
        f"One farm, subscribers added in steps ({', '.join(f'{n:,}' for n in STEPS)}), spread "
        f"round-robin over {len(TARGETS)} targets (2 services x 6 Bürgerbüros); each step measured "
        f"over {window_s:.0f} s after every "
        f"target was checked once more and {settle_s:.0f} s of settling; the replica's request log "
        "(GET /_replica/requests), all from the farm's one address.",
        MTA_ENV_NOTE,
        "API requests: the citizen API (/buergeransicht/api/citizen/...); all requests also count the "
        "booking page and its static files, which session walks load (about every 5 minutes per target, when the "
        "captcha token nears expiry). The budget's 61 s pause after 50 requests makes any one window's rate "
        "depend on where the pause falls; the 60 s maximum shows the cap.",
    ]
    if quick:
        table.notes.append(f"Quick mode: {window_s:.0f} s windows (normal: 100 s).")
    return [table]
