"""Check cost: a warm check versus a walk, a fresh browser per check, and the bare API request.

One run against one replica (Bürgerbüro Orleansplatz, Wohnsitzanmeldung: captcha required, a few
slots released), side by side:

- (a) MTA's steady-state check: ``run_check`` on a pool whose session has walked already (one
  in-page ``fetch`` of the page's own calendar request), with failure tracing on (the default) and
  off (a trace chunk per check costs some milliseconds);
- (b) a full walk in a fresh context of a running browser (what MTA does for a new session);
- (c) a fresh Chromium launched per check, walked and closed (what most browser bots do), with the
  Playwright driver kept running, and (c') with the driver started per check too;
- (d) the floor: the same ``available-calendar`` request with the session's captcha token, made
  with httpx over a kept-alive connection and parsed.

The replica runs as an ``mta replica`` subprocess so its work is not counted. CPU time is this
process plus every process below it (the Playwright driver, Chromium and its helpers; processes
that exit are counted from their last reading, every 20 ms). Memory is the PSS of the
Chromium process tree with one and with four warm sessions.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psutil
from playwright.async_api import async_playwright

from bench._harness import Table, percentile
from replica.clock import BERLIN
from replica.config import PAGE_PATH
from shared.domain import TargetKey
from shared.logging import configure_logging
from shared.settings import Settings, load_settings
from tests.conftest import free_port, wait_for_port
from tests.support.farm import MTA
from worker.browser import BrowserPool
from worker.browser._launcher import BrowserLauncher
from worker.browser._session import RequestTemplate
from worker.captcha import InPageAltchaSolver
from worker.checks import run_check, session_key
from worker.pacer import NoPacer
from worker.sites.munich.adapter import CALENDAR, MunichAdapter
from worker.sites.munich.selectors import Q_TOKEN

ORLEANSPLATZ = 102522
WOHNSITZANMELDUNG = 1063475
PERSONALAUSWEIS = 1063441
REISEPASS = 1063453
BUERGERBUERO = TargetKey("munich", WOHNSITZANMELDUNG, 1, (ORLEANSPLATZ,))
OTHER_TARGETS = [
    TargetKey("munich", PERSONALAUSWEIS, 1, (ORLEANSPLATZ,)),
    TargetKey("munich", REISEPASS, 1, (ORLEANSPLATZ,)),
    TargetKey("munich", WOHNSITZANMELDUNG, 1, (102523,)),
]
"""Three more Bürgerbüro targets for the four-session memory figure."""
CITY_CAPTCHA_COST = 1_000
"""The ALTCHA cost in the city's challenge (fact sheet §3)."""
QUICK_CAPTCHA_COST = 50
WALK_ROW_BUDGET_S = 45.0
"""A walk row stops after this long (with at least two walks), to bound the run on a busy machine."""
SITE_LATENCY_MS = 30
"""A plausible round trip to the city's server from a Munich host; the replica adds it as a delay."""
LATENCY_ROWS = 100
UNLIMITED_RATE = 100_000_000
"""The replica's requests per window for benchmarks: the site's 429s are not what is measured."""


# --- the replica as a process ---------------------------------------------------------------------
@contextmanager
def replica_process(folder: Path, **env: str) -> Iterator[str]:
    """``mta replica`` on a free port (control API on, no rate limit); yields its base URL."""
    port = free_port()
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("MTA_")}
    process_env.update(
        {
            "MTA_ENV": "test",
            "MTA_LOG_LEVEL": "WARNING",
            "MTA_DATA_DIR": str(folder),
            "MTA_REPLICA_RATE_LIMIT": str(UNLIMITED_RATE),
            **env,
        }
    )
    log_path = folder / f"replica-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [MTA, "replica", "--port", str(port), "--control"],
            env=process_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def release_slots(base_url: str, office: int, days_ahead: tuple[int, ...] = (2, 5, 9)) -> int:
    """Free slots on a few days (Berlin wall clock) through the control API; returns how many."""
    added = 0
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for days in days_ahead:
            day = (datetime.now(BERLIN) + timedelta(days=days)).date()
            response = client.post(
                "/_replica/slots",
                json={"office": office, "date": day.isoformat(), "times": ["09:00", "10:30", "14:15"]},
            )
            response.raise_for_status()
            added += len(response.json()["added"])
    return added


# --- what a check costs -----------------------------------------------------------------------------
class CpuMeter:
    """CPU seconds of this process and everything below it while open, exited processes included.

    A thread reads each known process's own CPU time every ``poll_s`` and looks for new descendants
    every ``rescan_s``; a process that exits keeps its last reading (its final few milliseconds are
    lost). The thread's own CPU time is taken off.
    """

    def __init__(self, poll_s: float = 0.02, rescan_s: float = 0.1) -> None:
        self.poll_s = poll_s
        self.rescan_s = rescan_s
        self._me = psutil.Process()
        self._known: dict[tuple[int, float], psutil.Process] = {}
        self._baseline: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._own_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)

    def __enter__(self) -> CpuMeter:
        self._rescan(baseline=True)
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._rescan()
        self._poll()

    @property
    def cpu_s(self) -> float:
        used = sum(last - self._baseline.get(key, 0.0) for key, last in self._last.items())
        return used - self._own_cpu_s

    def _rescan(self, *, baseline: bool = False) -> None:
        for process in [self._me, *self._me.children(recursive=True)]:
            with suppress(psutil.Error):
                key = (process.pid, process.create_time())
                if key not in self._known:
                    self._known[key] = process
                    if baseline:
                        times = process.cpu_times()
                        self._baseline[key] = times.user + times.system

    def _poll(self) -> None:
        for key, process in self._known.items():
            with suppress(psutil.Error):
                times = process.cpu_times()
                self._last[key] = times.user + times.system

    def _loop(self) -> None:
        started = time.thread_time()
        next_scan = 0.0
        while not self._stop.wait(self.poll_s):
            if time.monotonic() >= next_scan:
                self._rescan()
                next_scan = time.monotonic() + self.rescan_s
            self._poll()
        self._own_cpu_s = time.thread_time() - started


def browser_pss_mib() -> float:
    """PSS of the Chromium processes below this process (the Playwright driver left out)."""
    total = 0
    for process in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            if "chrom" in (process.cmdline() or [""])[0]:
                total += process.memory_full_info().pss
    return total / 2**20


def driver_pss_mib() -> float:
    total = 0
    for process in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            if "playwright/driver" in (process.cmdline() or [""])[0]:
                total += process.memory_full_info().pss
    return total / 2**20


@dataclass
class Cost:
    walls_ms: list[float]
    cpu_ms: float
    """Per check."""

    @property
    def p50(self) -> float:
        return percentile(self.walls_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.walls_ms, 95)


async def measure(n: int, once: Callable[[], Awaitable[object]], *, budget_s: float = float("inf")) -> Cost:
    """``n`` checks, or fewer (at least two) once ``budget_s`` is spent: a loaded machine makes walks
    slow, and the row's ``n`` says how many were made."""
    walls: list[float] = []
    began = time.monotonic()
    with CpuMeter() as meter:
        for done in range(n):
            if done >= 2 and time.monotonic() - began > budget_s:
                break
            started = time.perf_counter()
            await once()
            walls.append((time.perf_counter() - started) * 1000)
    return Cost(walls, meter.cpu_s * 1000 / len(walls))


def measure_blocking(n: int, once: Callable[[], object]) -> Cost:
    """``measure`` for a blocking call (the floor: nothing else runs meanwhile anyway)."""
    walls: list[float] = []
    with CpuMeter() as meter:
        for _ in range(n):
            started = time.perf_counter()
            once()
            walls.append((time.perf_counter() - started) * 1000)
    return Cost(walls, meter.cpu_s * 1000 / n)


def bench_settings(folder: Path, site_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": folder,
        "env": "test",
        "pacer": "none",
        "redis_url": "",
        "site_url": site_url,
        "session_max_checks": 1_000_000,
        "browser_warm_sessions": 4,
    }
    values.update(overrides)
    return load_settings(**values)


def adapter_for(settings: Settings) -> MunichAdapter:
    return MunichAdapter(solver=InPageAltchaSolver(), pacer=NoPacer(), settings=settings)


@dataclass
class Sizes:
    warm: int
    walks: int
    fresh_browser: int
    fresh_driver: int
    floor: int
    extra_sessions: int
    """Warm sessions opened beside the first for the memory figure."""


def set_calendar_delay(base_url: str, delay_ms: int) -> None:
    """Delay every ``available-calendar`` answer by ``delay_ms`` (0 clears it): the site's latency."""
    change: dict[str, object] = (
        {"slow_ms": delay_ms, "slow_s": 0, "endpoints": ["available-calendar"]}
        if delay_ms > 0
        else {"clear": ["slow"]}
    )
    base = base_url.removesuffix(PAGE_PATH)
    with httpx.Client(base_url=base, timeout=30) as client:
        client.post("/_replica/faults", json=change).raise_for_status()


async def _checks(folder: Path, site_url: str, sizes: Sizes) -> tuple[dict[str, Cost], dict[str, float]]:
    costs: dict[str, Cost] = {}
    memory: dict[str, float] = {}
    template_url = ""
    headers: dict[str, str] = {}
    token: str | None = None
    walks_seen = 0

    async def warm_rows(trace: bool) -> Cost:
        nonlocal template_url, headers, token, walks_seen
        settings = bench_settings(folder, site_url, trace_on_failure=trace)
        adapter = adapter_for(settings)
        async with BrowserPool(settings) as pool:
            for _ in range(3):  # the walk, then two warm checks to settle
                await run_check(pool, adapter, BUERGERBUERO, site_url=site_url)

            async def warm() -> None:
                nonlocal walks_seen
                result = await run_check(pool, adapter, BUERGERBUERO, site_url=site_url)
                walks_seen += result.walked

            cost = await measure(sizes.warm, warm)
            session = pool.warm_session(session_key(BUERGERBUERO))
            assert session is not None and CALENDAR in session.templates
            template_url = session.templates[CALENDAR].url
            headers = session.templates[CALENDAR].headers
            token = session.token
            if trace:
                await asyncio.sleep(1)
                memory["one"] = browser_pss_mib()
                # production: the one warm session of the site serves every target
                for key in OTHER_TARGETS[: sizes.extra_sessions]:
                    for _ in range(3):
                        await run_check(pool, adapter, key, site_url=site_url)
                await asyncio.sleep(1)
                memory["one_shared"] = browser_pss_mib()
                memory["targets"] = 1.0 + sizes.extra_sessions
                # what each further session would cost (a session per target, or booking walks)
                for index, key in enumerate(OTHER_TARGETS[: sizes.extra_sessions]):
                    async with pool.session(f"bench-extra-{index}") as extra:
                        await adapter.walk(extra, key, site_url)
                await asyncio.sleep(1)
                memory["four"] = browser_pss_mib()
                memory["driver"] = driver_pss_mib()
                memory["sessions"] = float(pool.stats.warm_sessions)
        return cost

    costs["warm"] = await warm_rows(trace=True)
    costs["warm_untraced"] = await warm_rows(trace=False)

    # (d) the floor, with no browser running
    url = RequestTemplate(template_url).with_query(**{Q_TOKEN: token})
    with httpx.Client(timeout=30, headers=headers) as client:

        def bare() -> None:
            response = client.get(url)
            response.raise_for_status()
            response.json()

        for _ in range(5):
            bare()
        costs["floor"] = measure_blocking(sizes.floor, bare)
        set_calendar_delay(site_url, SITE_LATENCY_MS)
        try:
            costs["floor_latency"] = measure_blocking(min(sizes.floor, LATENCY_ROWS), bare)
        finally:
            set_calendar_delay(site_url, 0)

    # (a) and (d) again with the site's answers 30 ms away, as from a host in Munich
    latency_settings = bench_settings(folder, site_url, trace_on_failure=True)
    latency_adapter = adapter_for(latency_settings)
    async with BrowserPool(latency_settings) as pool:
        await run_check(pool, latency_adapter, BUERGERBUERO, site_url=site_url)
        set_calendar_delay(site_url, SITE_LATENCY_MS)
        try:

            async def warm_far() -> None:
                await run_check(pool, latency_adapter, BUERGERBUERO, site_url=site_url)

            costs["warm_latency"] = await measure(min(sizes.warm, LATENCY_ROWS), warm_far)
        finally:
            set_calendar_delay(site_url, 0)

    # (b) a full walk in a fresh context of a running browser
    walk_settings = bench_settings(folder, site_url, session_max_checks=1)
    adapter = adapter_for(walk_settings)
    async with BrowserPool(walk_settings) as pool:
        await run_check(pool, adapter, BUERGERBUERO, site_url=site_url)

        async def walk() -> None:
            result = await run_check(pool, adapter, BUERGERBUERO, site_url=site_url)
            assert result.walked

        costs["walk"] = await measure(sizes.walks, walk, budget_s=WALK_ROW_BUDGET_S)

    # (c) a fresh browser per check, the driver kept; (c') the driver started per check too
    bot_settings = bench_settings(folder, site_url, trace_on_failure=False)
    adapter = adapter_for(bot_settings)
    async with async_playwright() as playwright:

        async def fresh_browser() -> None:
            launcher = BrowserLauncher(bot_settings, playwright=playwright)
            async with BrowserPool(bot_settings, launcher=launcher) as pool:
                await run_check(pool, adapter, BUERGERBUERO, site_url=site_url)

        costs["fresh_browser"] = await measure(sizes.fresh_browser, fresh_browser, budget_s=WALK_ROW_BUDGET_S)

    async def fresh_driver() -> None:
        async with BrowserPool(bot_settings) as pool:
            await run_check(pool, adapter, BUERGERBUERO, site_url=site_url)

    costs["fresh_driver"] = await measure(sizes.fresh_driver, fresh_driver, budget_s=WALK_ROW_BUDGET_S)
    memory["walks_in_warm_rows"] = float(walks_seen)
    return costs, memory


def run(quick: bool) -> list[Table]:
    configure_logging(load_settings(env="test", log_level="WARNING"), role="bench")
    sizes = (
        Sizes(warm=10, walks=1, fresh_browser=1, fresh_driver=1, floor=50, extra_sessions=1)
        if quick
        else Sizes(warm=200, walks=5, fresh_browser=4, fresh_driver=2, floor=500, extra_sessions=3)
    )
    captcha_cost = QUICK_CAPTCHA_COST if quick else CITY_CAPTCHA_COST
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mta-bench-cost-") as name:
        folder = Path(name)
        with replica_process(folder, MTA_REPLICA_CAPTCHA_COST=str(captcha_cost)) as base_url:
            released = release_slots(base_url, ORLEANSPLATZ)
            costs, memory = asyncio.run(_checks(folder, base_url + PAGE_PATH, sizes))

    floor = costs["floor"]
    table = Table(
        "Check cost: one check of Bürgerbüro Orleansplatz (captcha) against the replica",
        ["check", "n", "wall p50 (ms)", "wall p95 (ms)", "CPU / check (ms)", "p50 vs floor"],
    )
    labels = [
        ("warm", "(a) MTA warm session: in-page calendar request (tracing on, default)"),
        ("warm_untraced", "(a) MTA warm session, MTA_TRACE_ON_FAILURE=false"),
        ("walk", "(b) full walk in a fresh context (running browser)"),
        ("fresh_browser", "(c) fresh Chromium per check: launch, walk, close"),
        ("fresh_driver", "(c') fresh Playwright driver + Chromium per check"),
        ("floor", "(d) floor: bare API request with httpx (kept-alive, JSON parsed)"),
        ("warm_latency", f"(a) MTA warm session, site {SITE_LATENCY_MS} ms away"),
        ("floor_latency", f"(d) floor, site {SITE_LATENCY_MS} ms away"),
    ]
    for key, label in labels:
        cost = costs[key]
        base = costs["floor_latency"] if key.endswith("_latency") else floor
        table.add(label, len(cost.walls_ms), cost.p50, cost.p95, cost.cpu_ms, f"{cost.p50 / base.p50:.1f}×")
    one, four = memory["one"], memory["four"]
    per_session = (four - one) / max(1, memory["sessions"] - 1)
    table.notes += [
        f"Warm check vs floor (p50): {costs['warm'].p50 / floor.p50:.1f}× with tracing on, "
        f"{costs['warm_untraced'].p50 / floor.p50:.1f}× with tracing off (goal: within 3×); "
        f"CPU {costs['warm'].cpu_ms / max(floor.cpu_ms, 1e-9):.1f}× / "
        f"{costs['warm_untraced'].cpu_ms / max(floor.cpu_ms, 1e-9):.1f}× the floor's. "
        "On localhost the floor is about a millisecond, less than Chromium's own fetch (renderer to "
        "network service and back) plus one driver round trip; with the site "
        f"{SITE_LATENCY_MS} ms away (the last two rows, delay added by the replica) the warm check is "
        f"{costs['warm_latency'].p50 / costs['floor_latency'].p50:.2f}× the floor.",
        f"Fresh browser per check vs warm check (p50): {costs['fresh_browser'].p50 / costs['warm'].p50:.0f}×"
        f" the wall time, {costs['fresh_browser'].cpu_ms / costs['warm'].cpu_ms:.0f}× the CPU.",
        f"Memory (PSS of the Chromium process tree): {one:.0f} MiB with 1 warm session, "
        f"{memory['one_shared']:.0f} MiB with that session serving {memory['targets']:.0f} targets "
        f"(one session per site), {four:.0f} MiB with {memory['sessions']:.0f} sessions; "
        f"{per_session:.1f} MiB per extra session; "
        f"Playwright driver (node) {memory['driver']:.0f} MiB besides. PSS splits shared pages among "
        "every process mapping them, other Chromiums on the machine included: the increment per "
        "session is the steadier figure.",
        "CPU is this process plus its descendants (driver, Chromium, helpers), read every 20 ms so "
        "that processes which exit are counted, the replica excluded (an `mta replica` subprocess with its "
        "rate limit lifted). "
        f"Walks solve the replica's ALTCHA at cost {captcha_cost:,} (the city's challenge shows 1,000; "
        "a walk's time is mostly this proof of work, and its attempts vary: few walks, wide spread).",
        f"Warm rows: {memory['walks_in_warm_rows']:.0f} of the measured checks walked (session_max_checks "
        "lifted; in production a session re-walks every 200 checks or when its 5-minute token nears "
        "expiry, i.e. one walk amortised over ~200 checks). Walk rows keep MTA's browser retirement "
        "(a new Chromium every 20 contexts).",
        f"{released} slots released on 3 days; every check read them. The machine has "
        f"{os.cpu_count()} cores, shared with other jobs (1-minute load average {load:.1f} at the start): "
        "figures are indicative, compare rows within one run.",
    ]
    return [table]
