"""Horizon: how many check rounds until a released slot is seen, by where in the horizon it lands,
for MTA's round (horizon request + day requests) against the first round's one-month plan.

Real Chromium and the real adapter against an in-process replica (Führerscheinstelle Umschreibung,
no captcha, rate limit lifted: the site's 429s are not what is measured). Eight days are open in
the background: up to three in this month, the rest in the next. Each trial releases one slot -- on a day that
was not bookable (this month, next month, 42 days ahead: the Bürgerbüro's overnight release), or at
a new time on a day that is already open -- and runs rounds until one reads it (at most
``MAX_ROUNDS``), then takes it back and lets one round settle.

Rounds are run back to back; seconds and requests per minute are computed from the rounds and
their measured cost with the scheduler's formula for one service at the default budget
(interval = max(10 s, 60 s x round cost / 30)), and say so in their column.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx

from bench._harness import Table, median, percentile, replica
from replica.clock import BERLIN
from replica.config import PAGE_PATH
from shared.domain import Observation, TargetKey
from shared.settings import Settings, load_settings
from tests.support.replica import Replica, berlin_slot
from worker.browser import BrowserPool, BrowserSession
from worker.captcha import InPageAltchaSolver
from worker.checks import run_check, session_key
from worker.pacer import NoPacer
from worker.sites.munich.adapter import DayReading, Exchange, MunichAdapter, day_memory

OFFICE = 10308174
SERVICE = 1071896
KEY = TargetKey("munich", SERVICE, 1, (OFFICE,))
MAX_ROUNDS = 40
BUDGET_PER_MINUTE = 30
MIN_INTERVAL_S = 10.0
BACKGROUND_DAYS = 8
EDGE_DAYS = 42


class OneMonthPlan(MunichAdapter):
    """The first round's plan, for comparison: one request per check, the page's own one-day window
    on the least recently read of today and the days known bookable (paints one month; the
    answer's ``nextBookableDate`` is ignored, as the first round's reader did). It keeps
    its own rotation: MTA's memory forgets a day read empty, which this plan must not for today."""

    @staticmethod
    def _read(exchange: Exchange, wanted: set[int]) -> DayReading:
        """The first round's reader never looked at ``prev``/``nextBookableDate``."""
        if isinstance(exchange.data, dict):
            hidden = ("prevBookableDate", "nextBookableDate")
            data = {k: v for k, v in exchange.data.items() if k not in hidden}
            exchange = dataclasses.replace(exchange, data=data)
        return MunichAdapter._read(exchange, wanted)

    async def check_round(
        self, session: BrowserSession, key: TargetKey, days: frozenset[date] | None = None
    ) -> DayReading:
        memory = day_memory(session, key)
        asked: dict[date, float] = session.site_data.setdefault("one_month_asked", {})
        today = self.today()
        candidates = [today, *sorted(d for d in memory.bookable if d > today)]
        focus = min(candidates, key=lambda d: (asked.get(d, float("-inf")), d))
        reading = await self._ask_day(session, key, focus)
        self._remember_days(session, key, reading, focus)
        asked[focus] = time.monotonic()
        asked.update(dict.fromkeys(reading.loaded, time.monotonic()))
        return reading


def _units(start: int) -> list[int]:
    return [start, start + 900]


def _working_days(first: date, last: date, today: date) -> list[date]:
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [d for d in days if d.weekday() < 5 and d > today]


def _categories(today: date, background: set[date]) -> dict[str, Callable[[random.Random], tuple[date, int]]]:
    month_end = (today.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    next_end = (month_end + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    this_month = [d for d in _working_days(today, month_end, today) if d not in background]
    next_month = [
        d for d in _working_days(month_end + timedelta(days=1), next_end, today) if d not in background
    ]
    edge = today + timedelta(days=EDGE_DAYS)
    while edge.weekday() >= 5 or edge in background:
        edge += timedelta(days=1)

    def pick(days: list[date], hour: int) -> Callable[[random.Random], tuple[date, int]]:
        def choose(rng: random.Random) -> tuple[date, int]:
            day = rng.choice(days)
            return day, berlin_slot((day - today).days, hour=hour, minute=rng.choice((0, 30)))

        return choose

    chosen = {
        "new day, this month": pick(this_month, 10),
        "new day, next month": pick(next_month, 10),
        f"new day, {EDGE_DAYS} days ahead": pick([edge], 10),
        "new time on an open day": pick(sorted(background), 14),
    }
    return {name: choose for name, choose in chosen.items() if name != "new day, this month" or this_month}


async def _trials(
    adapter: MunichAdapter, pool: BrowserPool, handle: Replica, site_url: str, n: int, seed: int
) -> dict[str, tuple[list[int | None], list[int]]]:
    """Per category: rounds until seen (None: not within MAX_ROUNDS) and every round's cost."""
    today = datetime.now(BERLIN).date()
    rng = random.Random(seed)
    handle.reset()
    # open days in this month (up to three) and the next, so both months hold bookable days
    month_end = (today.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    next_end = (month_end + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    this_month = _working_days(today + timedelta(days=1), month_end, today)
    picked = rng.sample(this_month, min(3, len(this_month)))
    next_month = _working_days(month_end + timedelta(days=1), next_end, today)
    background = set(picked) | set(rng.sample(next_month, BACKGROUND_DAYS - len(picked)))
    for day in background:
        handle.add_slots(OFFICE, _units(berlin_slot((day - today).days, hour=8)))
    session = pool.warm_session(session_key(KEY))
    if session is not None:
        await pool.retire(session, "bench: a fresh walk per plan")
    for _ in range(3):  # the walk, then rounds until every open day has been read
        await run_check(pool, adapter, KEY, site_url=site_url)

    def seen(observation: Observation, start: int) -> bool:
        return any(int(s.start.timestamp()) == start for s in observation.slots)

    results: dict[str, tuple[list[int | None], list[int]]] = {}
    for name, choose in _categories(today, background).items():
        rounds_needed: list[int | None] = []
        costs: list[int] = []
        for _ in range(n):
            _day, start = choose(rng)
            handle.add_slots(OFFICE, _units(start))
            found: int | None = None
            for rounds in range(1, MAX_ROUNDS + 1):
                result = await run_check(pool, adapter, KEY, site_url=site_url)
                costs.append(result.requests_made)
                if seen(result.observation, start):
                    found = rounds
                    break
            rounds_needed.append(found)
            handle.remove_slots(OFFICE, _units(start))
            await run_check(pool, adapter, KEY, site_url=site_url)
        results[name] = (rounds_needed, costs)
    return results


def _interval_s(mean_cost: float) -> float:
    return max(MIN_INTERVAL_S, 60.0 * mean_cost / BUDGET_PER_MINUTE)


async def _measure(settings: Settings, site_url: str, base_url: str, n: int) -> Table:
    plans = {
        "MTA round (horizon + days)": MunichAdapter(
            solver=InPageAltchaSolver(), pacer=NoPacer(), settings=settings, quiet_s=0.1
        ),
        "one-month plan (first round)": OneMonthPlan(
            solver=InPageAltchaSolver(), pacer=NoPacer(), settings=settings, quiet_s=0.1
        ),
    }
    table = Table(
        "Horizon: check rounds until a released slot is read, by where it lands (Führerscheinstelle, "
        f"{BACKGROUND_DAYS} days open)",
        [
            "plan",
            "release",
            "n",
            "seen",
            "rounds p50",
            "rounds p95",
            "requests / round (mean)",
            "delay p50 (s, computed)",
            "delay p95 (s, computed)",
            "API requests / min (computed)",
        ],
    )
    async with BrowserPool(settings) as pool:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            handle = Replica(base_url=base_url, client=client)
            for plan, adapter in plans.items():
                results = await _trials(adapter, pool, handle, site_url, n, seed=80)
                for release, (rounds, costs) in results.items():
                    found = [r for r in rounds if r is not None]
                    mean_cost = sum(costs) / len(costs)
                    interval = _interval_s(mean_cost)
                    missing = len(rounds) - len(found)
                    p95 = float(MAX_ROUNDS) if missing > len(rounds) * 0.05 else percentile(found, 95)
                    p50 = median(found) if len(found) * 2 > len(rounds) else float("inf")
                    table.add(
                        plan,
                        release,
                        len(rounds),
                        len(found),
                        _rounds_cell(p50),
                        _rounds_cell(p95),
                        mean_cost,
                        _seconds_cell(p50, interval),
                        _seconds_cell(p95, interval),
                        mean_cost * 60.0 / interval,
                    )
    table.notes += [
        f"Rounds run back to back against an in-process replica (rate limit lifted); a trial gives up "
        f"after {MAX_ROUNDS} rounds ('not seen'). Rounds: 1 = the first round after the release.",
        f"Computed columns: the scheduler's interval for one service at the default budget, "
        f"max({MIN_INTERVAL_S:.0f} s, 60 s x mean round cost / {BUDGET_PER_MINUTE}); delay = rounds x "
        f"interval (an upper bound: a release waits on average half an interval less); requests/min = "
        f"mean round cost x 60 / interval. The city's 60 s pause every N requests is not counted.",
        "MTA round: one calendar request whose slot window spans the wanted days (every month it "
        "reaches is painted), then the times of each newly bookable day and of the least recently "
        "read half of the other open days. One-month plan: the page's own one-day request, rotating "
        "through today and the days known bookable.",
    ]
    return table


def _rounds_cell(value: float) -> str:
    return f">{MAX_ROUNDS} (not seen)" if math.isinf(value) or value >= MAX_ROUNDS else f"{value:g}"


def _seconds_cell(rounds: float, interval_s: float) -> str:
    if math.isinf(rounds) or rounds >= MAX_ROUNDS:
        return "not seen"
    return f"{rounds * interval_s:,.0f}"


def run(quick: bool) -> list[Table]:
    n = 3 if quick else 20
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            data_dir=Path(folder), pacer="none", env="test", trace_on_failure=False, browser_warm_sessions=2
        )
        with replica(rate_limit=100_000_000, captcha_cost=50) as base_url:
            site_url = base_url + PAGE_PATH
            return [asyncio.run(_measure(settings, site_url, base_url, n))]
