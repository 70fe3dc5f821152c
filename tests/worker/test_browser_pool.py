"""The browser pool's policy in real Chromium, driven through ``run_check`` with a ``FakeAdapter``
(no site needed): warm sessions, their limit, retirement on error / age / token expiry, and the
browser's retirement after N contexts."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from time import time

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from shared.domain import SiteUnavailable, TargetKey
from shared.settings import Settings, load_settings
from worker.browser import BrowserPool, BrowserSession
from worker.checks import run_check, session_key
from worker.sites.base import FakeAdapter

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SITE_URL = "http://127.0.0.1:9/unused"
KEYS = [TargetKey("munich", 1063475, 1, (office,)) for office in (102522, 102523, 102524)]
SITES = [TargetKey(site, 1063475, 1, (102522,)) for site in ("site-a", "site-b", "site-c")]


@dataclass
class OffsetClock:
    offset_s: float = 0.0

    def __call__(self) -> float:
        return time() + self.offset_s


def jwt(lifetime_s: int) -> str:
    """An unsigned JWT-shaped token with ``iat``/``exp`` (the pool only reads the lifetime)."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time())
    return f"{part({'alg': 'HS256'})}.{part({'iat': now, 'exp': now + lifetime_s})}.sig"


def make_settings(tmp: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp,
        "pacer": "none",
        "env": "test",
        "trace_on_failure": False,
        "browser_warm_sessions": 2,
        "browser_max_sessions": 3,
        "session_max_age_s": 600.0,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(tmp_path_factory: pytest.TempPathFactory, clock: OffsetClock) -> AsyncIterator[BrowserPool]:
    async with BrowserPool(make_settings(tmp_path_factory.mktemp("pool")), clock=clock) as pool:
        yield pool


async def reset(pool: BrowserPool) -> None:
    pool.captcha_targets.clear()
    for key in [*KEYS, *SITES]:
        session = pool.warm_session(session_key(key))
        if session is not None:
            await pool.retire(session, "test reset")


def contexts_gauge() -> float:
    return REGISTRY.get_sample_value("mta_browser_contexts") or 0.0


async def test_warm_session_is_reused_then_walks_after_error(pool: BrowserPool) -> None:
    """A successful check keeps its session warm for the next one; a failure closes it, so the
    check after a failure walks afresh."""
    await reset(pool)
    adapter = FakeAdapter()
    key = KEYS[0]
    first = await run_check(pool, adapter, key, site_url=SITE_URL)
    second = await run_check(pool, adapter, key, site_url=SITE_URL)
    assert (first.walked, second.walked) == (True, False)
    assert (first.requests_made, second.requests_made) == (3, 1)
    assert (adapter.walks, adapter.warm_checks) == (1, 1)

    adapter.results.append(SiteUnavailable("injected 503"))
    with pytest.raises(SiteUnavailable) as failure:
        await run_check(pool, adapter, key, site_url=SITE_URL)
    assert failure.value.requests_made == 1  # type: ignore[attr-defined]
    assert pool.warm_session(session_key(key)) is None
    assert (await run_check(pool, adapter, key, site_url=SITE_URL)).walked


async def test_targets_of_one_site_share_one_warm_session(pool: BrowserPool) -> None:
    """Three targets of one site: one walk, then warm checks for all three in the same context."""
    await reset(pool)
    adapter = FakeAdapter()
    opened = pool.stats.contexts_opened
    results = [await run_check(pool, adapter, key, site_url=SITE_URL) for key in KEYS * 2]
    assert [r.walked for r in results] == [True, False, False, False, False, False]
    assert (adapter.walks, adapter.warm_checks) == (1, 5)
    assert pool.stats.contexts_opened - opened == 1
    assert pool.warm_session(session_key(KEYS[0])) is pool.warm_session(session_key(KEYS[2]))


async def test_captcha_office_never_gets_a_session_walked_without_a_token(pool: BrowserPool) -> None:
    """Injected: the site's session was walked at an office without captcha, then a target at a
    captcha office is checked. Asserted: the warm check's ``captchaMissing`` is not a failed check:
    it is retried at once in a fresh session walked at the captcha office, whose token then serves
    both targets; the pool remembers which target needs the token."""
    await reset(pool)
    open_office, captcha_office = KEYS[0], KEYS[1]
    adapter = FakeAdapter(captcha_offices=frozenset(captcha_office.office_ids))
    assert (await run_check(pool, adapter, open_office, site_url=SITE_URL)).walked
    first = pool.warm_session(session_key(open_office))
    assert first is not None and first.token is None

    result = await run_check(pool, adapter, captcha_office, site_url=SITE_URL)
    assert result.walked and result.requests_made == 1 + 3  # the refused warm check + the walk
    assert first.retired
    second = pool.warm_session(session_key(captcha_office))
    assert second is not None and second.token is not None
    assert pool.captcha_targets == {captcha_office}
    assert not (await run_check(pool, adapter, open_office, site_url=SITE_URL)).walked
    assert not (await run_check(pool, adapter, captcha_office, site_url=SITE_URL)).walked
    assert (adapter.walks, adapter.warm_checks) == (2, 3)


async def test_warm_sessions_are_capped_least_recently_used_first(pool: BrowserPool) -> None:
    """With ``browser_warm_sessions=2``, a third site's session closes the least recently used one,
    and the open-context gauge follows the pool."""
    await reset(pool)
    adapter = FakeAdapter()
    baseline = contexts_gauge() - pool.stats.contexts_open
    for key in SITES:
        await run_check(pool, adapter, key, site_url=SITE_URL)
    assert pool.stats.contexts_open == 2
    assert pool.warm_session(session_key(SITES[0])) is None
    assert pool.warm_session(session_key(SITES[2])) is not None
    assert contexts_gauge() - baseline == 2


async def test_browser_retired_after_max_contexts(pool: BrowserPool) -> None:
    """After ``browser_max_sessions`` contexts the browser is replaced by a new launch, and the old
    one is closed once its last session is gone."""
    await reset(pool)
    adapter = FakeAdapter([SiteUnavailable("retire me")] * 8)
    launched = pool.stats.browsers_launched
    restarts = REGISTRY.get_sample_value("mta_browser_restarts_total", {"reason": "retired"}) or 0.0
    for _ in range(4):  # every failure closes its context, so each check opens a new one
        with pytest.raises(SiteUnavailable):
            await run_check(pool, adapter, KEYS[0], site_url=SITE_URL)
    assert pool.stats.browsers_launched >= launched + 1
    assert (REGISTRY.get_sample_value("mta_browser_restarts_total", {"reason": "retired"}) or 0.0) > restarts
    browser = pool.browser
    assert browser is not None and browser.is_connected()
    assert len(browser.contexts) <= pool.stats.contexts_open


@pytest.mark.parametrize(
    ("prepare", "advance_s"),
    [
        (lambda session: None, 601.0),  # older than session_max_age_s
        (lambda session: session.set_token(jwt(300)), 275.0),  # token within 30 s of expiry
    ],
    ids=["max-age", "token-expiry"],
)
async def test_session_walked_afresh_when_old_or_token_expiring(
    pool: BrowserPool, clock: OffsetClock, prepare: Callable[[BrowserSession], None], advance_s: float
) -> None:
    """A session past ``session_max_age_s``, or whose captcha token is about to expire, is closed
    before the next check, which walks afresh."""
    await reset(pool)
    adapter = FakeAdapter()
    key = KEYS[1]
    await run_check(pool, adapter, key, site_url=SITE_URL)
    session = pool.warm_session(session_key(key))
    assert session is not None
    prepare(session)
    assert not (await run_check(pool, adapter, key, site_url=SITE_URL)).walked
    clock.offset_s += advance_s
    try:
        assert (await run_check(pool, adapter, key, site_url=SITE_URL)).walked
    finally:
        clock.offset_s -= advance_s
    assert session.retired


async def test_session_context_manager_for_the_booking_adapter(pool: BrowserPool) -> None:
    """The documented way to get a walked page: ``pool.session(key)`` + ``adapter.walk``; the
    session stays warm afterwards unless the block raised."""
    await reset(pool)
    adapter = FakeAdapter()
    key = KEYS[2]
    async with pool.session(session_key(key)) as session:
        await adapter.walk(session, key, SITE_URL)
        assert session.walked and not session.page.is_closed()
    assert pool.warm_session(session_key(key)) is session
    with pytest.raises(RuntimeError):
        async with pool.session(session_key(key)) as again:
            assert again is session
            raise RuntimeError("booking failed")
    assert session.retired and pool.warm_session(session_key(key)) is None


async def test_record_check_counts_outcome_duration_and_slots() -> None:
    """``metrics.record_check`` (called by the actor): checks by site and outcome, the duration
    histogram, and the slots seen."""
    from datetime import UTC, datetime

    from shared.domain import Observation, SlotSeen
    from worker import metrics

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    site = "metrics-test"
    slot = SlotSeen(102522, 1063475, datetime(2030, 1, 2, 9, tzinfo=UTC))
    seen = Observation(site, 1063475, 1, (102522,), datetime.now(UTC), slots=[slot, slot])
    metrics.record_check(site, seen, 0.02)
    metrics.record_check(site, Observation(site, 1063475, 1, (102522,), datetime.now(UTC)), 0.01)
    metrics.record_check(site, SiteUnavailable("503"), 1.5)
    assert value("mta_checks_total", site=site, outcome="ok") == 1
    assert value("mta_checks_total", site=site, outcome="no_slots") == 1
    assert value("mta_checks_total", site=site, outcome="site_error") == 1
    assert value("mta_slots_seen_total", site=site) == 2
    assert value("mta_check_seconds_count", site=site) == 3


async def test_worker_runtime_launches_chromium_at_boot(tmp_path: Path) -> None:
    """``runtime.start`` (the worker's boot hook) has a running Chromium before any check, and
    ``runtime.stop`` closes it."""
    from worker import runtime

    rt = await runtime.start(make_settings(tmp_path))
    try:
        browser = rt.pool.browser
        assert browser is not None and browser.is_connected()
        assert rt.pool.stats.browsers_launched == 1 and rt.pool.stats.contexts_opened == 0
        assert rt.status()["browsers_launched"] == 1
    finally:
        await runtime.stop(rt)
    assert not browser.is_connected() and rt.stopping
