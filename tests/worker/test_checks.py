"""``run_check`` in real Chromium against the replica: evidence on failure, a killed browser,
session retirement (max checks, token expiry) and what a check costs."""

from __future__ import annotations

import os
import signal
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from time import time

import pytest
import pytest_asyncio
from playwright.async_api import Error as PlaywrightError
from prometheus_client import REGISTRY

from shared.domain import SiteUnavailable, TargetKey
from shared.settings import Settings, load_settings
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    ORLEANSPLATZ,
    WOHNSITZANMELDUNG,
    Replica,
    berlin_slot,
)
from worker.browser import BrowserPool
from worker.captcha import InPageAltchaSolver
from worker.checks import _browser_gone, run_check, session_key, walked_session
from worker.pacer import NoPacer
from worker.sites.munich.adapter import MunichAdapter

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

BUERGERBUERO = TargetKey("munich", WOHNSITZANMELDUNG, 1, (ORLEANSPLATZ,))
FUEHRERSCHEIN = TargetKey("munich", FUEHRERSCHEIN_UMSCHREIBUNG, 1, (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,))
MAX_CHECKS = 3


@dataclass
class OffsetClock:
    """Real time plus an offset the test moves forward (session ages, token lifetimes)."""

    offset_s: float = 0.0

    def __call__(self) -> float:
        return time() + self.offset_s


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        data_dir=tmp_path_factory.mktemp("checks"),
        pacer="none",
        env="test",
        trace_on_failure=False,
        session_max_checks=MAX_CHECKS,
    )


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(settings: Settings, clock: OffsetClock) -> AsyncIterator[BrowserPool]:
    async with BrowserPool(settings, clock=clock) as pool:
        yield pool


@pytest.fixture(scope="module")
def adapter(settings: Settings) -> MunichAdapter:
    return MunichAdapter(
        solver=InPageAltchaSolver(), pacer=NoPacer(), settings=settings, dom_grace_s=2.0, quiet_s=0.1
    )


async def fresh(pool: BrowserPool, key: TargetKey) -> None:
    session = pool.warm_session(session_key(key))
    if session is not None:
        await pool.retire(session, "test wants a fresh walk")


def browser_pids() -> set[int]:
    """Main Chromium processes started below this test process (Playwright's pipe transport)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue

    def below_us(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    found = set()
    for pid in parents:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        is_browser = b"--remote-debugging-pipe" in args and not any(a.startswith(b"--type=") for a in args)
        if is_browser and below_us(pid):
            found.add(pid)
    return found


def calls(replica: Replica, endpoint: str) -> int:
    stats = replica.control("GET", "/requests/stats")["byPath"]
    return sum(n for path, n in stats.items() if path.rstrip("/").endswith("/" + endpoint))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_failed_check_leaves_trace_and_screenshot(
    adapter: MunichAdapter, replica: Replica, tmp_path: Path
) -> None:
    """Injected: maintenance (503) under a warm session, then again with ``<data_dir>/traces``
    replaced by a file. Asserted: ``SiteUnavailable`` carrying the requests it cost, a Playwright
    trace zip plus a screenshot the first time; the second time nothing can be saved, and the check
    still fails with the site's failure type, not a crash."""
    settings = load_settings(data_dir=tmp_path, pacer="none", env="test", trace_on_failure=True)
    async with BrowserPool(settings) as pool:
        await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
        replica.faults(maintenance=True)
        with pytest.raises(SiteUnavailable) as failure:
            await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
        assert failure.value.requests_made == 1  # type: ignore[attr-defined]
        traces = sorted(settings.trace_dir.glob("*.zip"))
        shots = sorted(settings.trace_dir.glob("*.png"))
        assert len(traces) == 1 and len(shots) == 1
        assert "SiteUnavailable" in traces[0].name
        with zipfile.ZipFile(traces[0]) as archive:
            assert any(name.endswith(".trace") for name in archive.namelist())
        assert shots[0].read_bytes().startswith(b"\x89PNG")

        settings.trace_dir.rename(tmp_path / "kept")
        settings.trace_dir.write_text("not a folder")
        with pytest.raises(SiteUnavailable):
            await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
    assert settings.trace_dir.read_text() == "not a folder"


async def test_killed_chromium_is_relaunched(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Injected: SIGKILL to the pool's Chromium between two checks. Asserted: the next check
    succeeds in a relaunched browser and the crash is counted."""
    slot = berlin_slot(days_ahead=2, hour=10)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, [slot, slot + 900])
    await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
    launched, crashes = pool.stats.browsers_launched, pool.stats.crashes
    restarts = metric("mta_browser_restarts_total", reason="crashed")
    pids = browser_pids()
    assert pids, "no Chromium process found below the test process"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    result = await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
    assert result.walked
    assert [s.office_id for s in result.observation.slots] == [FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE]
    assert pool.stats.browsers_launched == launched + 1
    assert pool.stats.crashes == crashes + 1
    assert metric("mta_browser_restarts_total", reason="crashed") == restarts + 1


async def test_an_error_naming_a_closed_target_counts_as_a_dead_browser(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """A call can fail on a killed browser before Playwright has handled its "disconnected" event:
    the error's own words then say the browser is gone (so the check is retried in a relaunched
    one); any other error on a live session does not."""
    await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
    session = pool.warm_session(session_key(FUEHRERSCHEIN))
    assert session is not None
    closed = PlaywrightError("Page.evaluate: Target page, context or browser has been closed")
    assert _browser_gone(session, closed)
    assert not _browser_gone(session, PlaywrightError("net::ERR_CONNECTION_RESET"))
    assert not _browser_gone(session)


async def test_session_retired_after_max_checks(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """After ``session_max_checks`` checks the session is closed and the next check walks afresh
    in a new context."""
    await fresh(pool, FUEHRERSCHEIN)
    walked = [
        (await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)).walked for _ in range(4)
    ]
    assert walked == [True, False, False, True]
    assert calls(replica, "offices-and-services") == 2


async def test_token_near_expiry_gets_a_fresh_walk(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica, clock: OffsetClock
) -> None:
    """A Bürgerbüro session reuses its captcha token until it nears expiry (300 s, refreshed 30 s
    before); then the next check walks and passes the captcha again."""
    await fresh(pool, BUERGERBUERO)
    first = await run_check(pool, adapter, BUERGERBUERO, site_url=replica.page_url)
    second = await run_check(pool, adapter, BUERGERBUERO, site_url=replica.page_url)
    assert (first.walked, second.walked) == (True, False)
    assert calls(replica, "captcha-verify") == 1
    clock.offset_s += 280
    try:
        third = await run_check(pool, adapter, BUERGERBUERO, site_url=replica.page_url)
    finally:
        clock.offset_s -= 280
    assert third.walked
    assert calls(replica, "captcha-verify") == 2


async def test_walked_session_for_booking(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """``walked_session`` hands the booking code a fresh page on the calendar, showing the target's
    slot button and holding a captcha token, apart from the checks' warm session; it is closed
    afterwards."""
    slot = berlin_slot(days_ahead=3, hour=11)
    replica.add_slots(ORLEANSPLATZ, [slot])
    await run_check(pool, adapter, BUERGERBUERO, site_url=replica.page_url)
    warm = pool.warm_session(session_key(BUERGERBUERO))
    async with walked_session(pool, adapter, BUERGERBUERO, site_url=replica.page_url) as (session, seen):
        assert session is not warm and session.token is not None
        assert [int(s.start.timestamp()) for s in seen.slots] == [slot]
        assert await session.page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{slot}").is_visible()
    assert session.retired
    assert warm is not None and pool.warm_session(session_key(BUERGERBUERO)) is warm
