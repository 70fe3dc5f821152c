"""The Munich adapter in real Chromium against the replica: walks, warm checks and failure types.

One browser pool serves the whole module (a Chromium launch per test would cost more than the
tests); a test that needs a fresh walk retires the warm sessions first.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import pytest_asyncio

from replica.clock import BERLIN
from replica.config import ReplicaConfig
from shared.domain import (
    CaptchaRequired,
    CheckTimeout,
    LayoutChanged,
    Observation,
    RateLimited,
    SiteUnavailable,
    TargetKey,
)
from shared.settings import Settings, load_settings
from tests.conftest import free_port
from tests.support.replica import (
    CAPTCHA_COST,
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    LEONRODSTRASSE,
    ORLEANSPLATZ,
    WOHNSITZANMELDUNG,
    Replica,
    berlin_slot,
    serve_replica,
)
from worker.browser import BrowserPool
from worker.captcha import InPageAltchaSolver
from worker.checks import CheckResult, run_check, session_key
from worker.pacer import NoPacer
from worker.sites.base import SiteQuota
from worker.sites.munich import selectors as sel
from worker.sites.munich.adapter import Exchange, MunichAdapter, _verified_token, read_calendar

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

BUERGERBUERO = TargetKey("munich", WOHNSITZANMELDUNG, 1, (ORLEANSPLATZ,))
FUEHRERSCHEIN = TargetKey("munich", FUEHRERSCHEIN_UMSCHREIBUNG, 1, (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,))


def units(start: int, count: int = 2) -> list[int]:
    """A Führerschein-Umschreibung needs two consecutive 15-minute units."""
    return [start + i * 900 for i in range(count)]


def starts(observation: Observation) -> set[tuple[int, int]]:
    return {(s.office_id, int(s.start.timestamp())) for s in observation.slots}


def day_of(ts: int) -> date:
    return datetime.fromtimestamp(ts, BERLIN).date()


def api_calls(replica: Replica, base_url: str | None = None) -> list[str]:
    """Endpoint names of the citizen-API requests in the replica's log, oldest first."""
    client = replica.client if base_url is None else httpx.Client(base_url=base_url)
    records = client.get("/_replica/requests").json()["requests"]
    return [
        r["path"].split("/api/citizen/", 1)[1].strip("/") for r in records if "/api/citizen/" in r["path"]
    ]


def request_log(replica: Replica) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = replica.control("GET", "/requests")["requests"]
    return records


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        data_dir=tmp_path_factory.mktemp("adapter"),
        pacer="none",
        env="test",
        browser_warm_sessions=4,
        trace_on_failure=False,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(settings: Settings) -> AsyncIterator[BrowserPool]:
    async with BrowserPool(settings) as pool:
        yield pool


@pytest.fixture(scope="module")
def adapter(settings: Settings) -> MunichAdapter:
    return MunichAdapter(
        solver=InPageAltchaSolver(timeout_s=30),
        pacer=NoPacer(),
        settings=settings,
        dom_grace_s=2.0,
        quiet_s=0.1,
    )


async def fresh(pool: BrowserPool, *keys: TargetKey) -> None:
    """Close the warm sessions of ``keys`` so that the next check walks."""
    for key in keys:
        session = pool.warm_session(session_key(key))
        if session is not None:
            await pool.retire(session, "test wants a fresh walk")


async def check(pool: BrowserPool, adapter: MunichAdapter, key: TargetKey, replica: Replica) -> CheckResult:
    return await run_check(pool, adapter, key, site_url=replica.page_url)


async def test_captcha_office_walk_then_warm_checks(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Bürgerbüro (captcha required): the walk passes the ALTCHA widget in the page and reads the
    released slot; warm checks then see a newly added slot and a vanished one with one calendar
    request each, no page load and no second captcha (the token is reused)."""
    await fresh(pool, BUERGERBUERO)
    first = berlin_slot(days_ahead=2, hour=10)
    replica.add_slots(ORLEANSPLATZ, [first])

    walked = await check(pool, adapter, BUERGERBUERO, replica)
    assert walked.walked
    assert starts(walked.observation) == {(ORLEANSPLATZ, first)}
    assert walked.observation.covered_days is not None and day_of(first) in walked.observation.covered_days
    calls = api_calls(replica)
    assert calls.count("captcha-verify") == 1
    assert walked.requests_made == len(calls)
    session = pool.warm_session(session_key(BUERGERBUERO))
    assert session is not None and session.token is not None
    assert (session.token_remaining_s() or 0) > 60

    second = first + 1800
    replica.add_slots(ORLEANSPLATZ, [second])
    before = len(request_log(replica))
    warm = await check(pool, adapter, BUERGERBUERO, replica)
    assert not warm.walked
    assert warm.requests_made == 1
    assert starts(warm.observation) == {(ORLEANSPLATZ, first), (ORLEANSPLATZ, second)}
    new_requests = request_log(replica)[before:]
    assert [r["path"].rsplit("/", 2)[-2] for r in new_requests] == ["available-calendar"]
    assert f"captchaToken={session.token}" in new_requests[0]["query"]

    replica.remove_slots(ORLEANSPLATZ, [first])
    gone = await check(pool, adapter, BUERGERBUERO, replica)
    assert starts(gone.observation) == {(ORLEANSPLATZ, second)}
    assert gone.observation.covered_days is not None and day_of(first) in gone.observation.covered_days
    assert api_calls(replica).count("captcha-verify") == 1

    # the site's X-RateLimit headers, as the farm's budget takes them in (spec §2.11)
    limiter = replica.control("GET", "/ratelimit")
    (count,) = [int(c["count"]) for c in limiter["clients"].values()]
    assert adapter.quota == SiteQuota(limit=limiter["limit"], counted=count)


async def test_in_page_captcha_clicks_again_when_a_click_is_lost(pool: BrowserPool, replica: Replica) -> None:
    """Injected: the widget's checkbox swallows the first click (as when the widget is still wiring
    itself up). Asserted: the solver clicks again after its pause, the page's own proof of work runs
    once and its token comes back; nothing is verified twice."""
    solver = InPageAltchaSolver(timeout_s=30, reclick_after_s=0.5)
    async with pool.session("test:lost-click") as session:
        page = session.page
        await page.goto(sel.deep_link(replica.page_url, WOHNSITZANMELDUNG, ORLEANSPLATZ))
        await page.get_by_text(sel.CAPTCHA_LABEL, exact=True).first.wait_for()
        await page.locator("altcha-widget input[type=checkbox]").first.evaluate(
            """(box) => {
                    window.mtaClicks = 0;
                    box.addEventListener("click", (event) => {
                        if (window.mtaClicks++ === 0) event.preventDefault();
                    });
                }"""
        )
        token = await solver.solve(page, session)
        assert token
        assert await page.evaluate("window.mtaClicks") == 2
        await pool.retire(session, "test done")
    assert api_calls(replica).count("captcha-verify") == 1


async def test_in_page_captcha_already_passed_is_not_clicked_again(
    pool: BrowserPool, replica: Replica
) -> None:
    """Injected: the widget is ticked before the solver looks (as a widget that verifies on load
    would be). Asserted: the solver sees the success, clicks nothing and returns no token of its
    own (the page keeps its pass); the site verified one solution only."""
    solver = InPageAltchaSolver(timeout_s=30)
    async with pool.session("test:passed") as session:
        page = session.page
        await page.goto(sel.deep_link(replica.page_url, WOHNSITZANMELDUNG, ORLEANSPLATZ))
        await page.get_by_text(sel.CAPTCHA_LABEL, exact=True).first.click()
        await page.get_by_text(sel.CAPTCHA_VERIFIED, exact=True).first.wait_for()
        assert await solver.solve(page, session) is None
        await pool.retire(session, "test done")
    assert api_calls(replica).count("captcha-verify") == 1


async def test_walk_for_several_offices_asks_their_union_once(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """A target watching two Bürgerbüros, slots at both: the walk lets the page load the deep link's
    office, then asks for both offices in one request, as the page does when both are ticked (not a
    click and a calendar load per office). Both offices' slots are read."""
    key = TargetKey("munich", WOHNSITZANMELDUNG, 1, (ORLEANSPLATZ, LEONRODSTRASSE))
    await fresh(pool, key)
    at = berlin_slot(days_ahead=2, hour=9)
    replica.add_slots(ORLEANSPLATZ, [at])
    replica.add_slots(LEONRODSTRASSE, [at + 900])
    before = len(request_log(replica))
    walked = await check(pool, adapter, key, replica)
    assert walked.walked
    assert starts(walked.observation) == {(ORLEANSPLATZ, at), (LEONRODSTRASSE, at + 900)}
    asked = [
        parse_qs(r["query"])["officeIds"][0]
        for r in request_log(replica)[before:]
        if r["path"].rstrip("/").endswith("available-calendar")
    ]
    # the page's own request(s) for its landing view, then ours for the union, once
    assert asked[-1] == f"{ORLEANSPLATZ},{LEONRODSTRASSE}" and set(asked[:-1]) == {str(ORLEANSPLATZ)}, asked


async def test_fuehrerscheinstelle_without_captcha(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Führerscheinstelle (no captcha): the walk never touches the captcha endpoints. Nothing free
    yet: the page shows its "no appointment" callout, the observation is empty and covers today
    (so the recorder may close slots seen before). Slots released later on two days are both found
    by the next warm round: its horizon request lists both days and carries the first day's times,
    one day request reads the second day's (two requests in all)."""
    await fresh(pool, FUEHRERSCHEIN)
    day_before = datetime.now(BERLIN).date()
    walked = await check(pool, adapter, FUEHRERSCHEIN, replica)
    assert walked.walked and walked.observation.slots == []
    days = {day_before, datetime.now(BERLIN).date()}  # a walk at midnight spans two days
    assert walked.observation.covered_days is not None and days & set(walked.observation.covered_days)
    assert not any(c.startswith("captcha") for c in api_calls(replica))
    session = pool.warm_session(session_key(FUEHRERSCHEIN))
    assert session is not None and session.token is None

    early = berlin_slot(days_ahead=3, hour=8, minute=30)
    later = berlin_slot(days_ahead=5, hour=9)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(early) + units(later))
    result = await check(pool, adapter, FUEHRERSCHEIN, replica)
    assert not result.walked and result.requests_made == 2
    assert {(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, early), (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, later)} <= starts(
        result.observation
    )


async def test_rate_limit_storm_on_walk_and_on_warm_check(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Injected: a 429 storm (``storm_s=0``), first under a warm session, then under a fresh walk.
    Asserted: ``RateLimited`` with a reset time in the future both times, the session retired."""
    await check(pool, adapter, FUEHRERSCHEIN, replica)  # a warm session (walked if there was none)
    replica.faults(storm_s=0)
    with pytest.raises(RateLimited) as warm:
        await check(pool, adapter, FUEHRERSCHEIN, replica)
    assert warm.value.reset_at is not None and warm.value.reset_at > datetime.now(UTC)
    assert warm.value.requests_made == 1  # type: ignore[attr-defined]
    assert pool.warm_session(session_key(FUEHRERSCHEIN)) is None

    with pytest.raises(RateLimited) as walk:
        await check(pool, adapter, FUEHRERSCHEIN, replica)
    assert walk.value.reset_at is not None and walk.value.reset_at > datetime.now(UTC)
    assert walk.value.requests_made >= 1  # type: ignore[attr-defined]


async def test_maintenance_is_site_unavailable(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Injected: maintenance mode (every API call 503 ``serviceUnavailable``). Asserted:
    ``SiteUnavailable`` with status 503, and no observation."""
    await fresh(pool, FUEHRERSCHEIN)
    replica.faults(maintenance=True)
    with pytest.raises(SiteUnavailable) as failure:
        await check(pool, adapter, FUEHRERSCHEIN, replica)
    assert failure.value.status_code == 503


@pytest.mark.parametrize("fault", ["error_500_s", "garbage_s"])
async def test_server_error_and_garbage_on_the_calendar(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica, fault: str
) -> None:
    """Injected: the calendar endpoint answers 500 ``internalError`` or 200 with a body that is not
    JSON, under a warm session. Asserted: ``SiteUnavailable`` (500 keeps its status)."""
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(berlin_slot(days_ahead=2, hour=11)))
    await check(pool, adapter, FUEHRERSCHEIN, replica)
    replica.faults(**{fault: 0}, endpoints=["available-calendar"])
    with pytest.raises(SiteUnavailable) as failure:
        await check(pool, adapter, FUEHRERSCHEIN, replica)
    if fault == "error_500_s":
        assert failure.value.status_code == 500


async def test_layout_change_is_not_a_false_slot(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Injected: the page renames its time-slot buttons (``renamed-timeslot-ids``) while a slot is
    free. Asserted: ``LayoutChanged`` -- the walk refuses to report what the page does not show."""
    await fresh(pool, FUEHRERSCHEIN)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(berlin_slot(days_ahead=2, hour=9)))
    replica.faults(layout_variant="renamed-timeslot-ids")
    with pytest.raises(LayoutChanged, match="none of the expected elements"):
        await check(pool, adapter, FUEHRERSCHEIN, replica)


async def test_renamed_calendar_endpoint_is_a_layout_change(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Injected: the site serves its calendar under another endpoint name. Asserted:
    ``LayoutChanged`` (the page works for a person, but the adapter must not guess)."""
    await fresh(pool, FUEHRERSCHEIN)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(berlin_slot(days_ahead=2, hour=9)))
    replica.faults(calendar_path="available-calendar-v2")
    with pytest.raises(LayoutChanged, match="no availability"):
        await check(pool, adapter, FUEHRERSCHEIN, replica)


async def test_expired_captcha_token_is_captcha_required(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Injected: the warm session's captcha token is replaced by a forged one. Asserted: the site's
    ``captchaInvalid`` becomes ``CaptchaRequired`` and the session is retired."""
    await check(pool, adapter, BUERGERBUERO, replica)
    session = pool.warm_session(session_key(BUERGERBUERO))
    assert session is not None and session.token is not None
    header, _claims, _signature = session.token.split(".")
    session.token = f"{header}.{_claims}.forged"
    with pytest.raises(CaptchaRequired, match="captchaInvalid"):
        await check(pool, adapter, BUERGERBUERO, replica)
    assert pool.warm_session(session_key(BUERGERBUERO)) is None


@pytest.fixture(scope="module")
def legacy_base_url() -> Iterator[str]:
    with serve_replica(ReplicaConfig(legacy_api=True, captcha_cost=CAPTCHA_COST)) as base_url:
        yield base_url


@pytest.fixture
def legacy(legacy_base_url: str) -> Iterator[Replica]:
    with httpx.Client(base_url=legacy_base_url, timeout=10) as client:
        handle = Replica(base_url=legacy_base_url, client=client)
        handle.reset()
        yield handle


async def test_legacy_endpoints(pool: BrowserPool, adapter: MunichAdapter, legacy: Replica) -> None:
    """A site still on the <= muc45 release (``available-days-by-office`` +
    ``available-appointments-by-office``): the walk reads the page's legacy answers, and a warm
    check repeats both requests (two site requests) and finds a slot released later."""
    await fresh(pool, FUEHRERSCHEIN)
    first = berlin_slot(days_ahead=2, hour=8)
    legacy.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(first))
    walked = await check(pool, adapter, FUEHRERSCHEIN, legacy)
    assert walked.walked
    assert (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, first) in starts(walked.observation)
    calls = api_calls(legacy)
    assert "available-days-by-office" in calls and "available-appointments-by-office" in calls
    assert "available-calendar" not in calls

    second = first + 3600
    legacy.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(second))
    warm = await check(pool, adapter, FUEHRERSCHEIN, legacy)
    assert not warm.walked and warm.requests_made == 2
    assert (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, second) in starts(warm.observation)
    await fresh(pool, FUEHRERSCHEIN)


async def test_read_calendar_covers_painted_month() -> None:
    """Pure parsing: the loaded day is complete, unlisted days of the painted month are empty,
    listed days without times are left alone."""
    data = {
        "startDate": "2026-12-01",
        "endDate": "2027-05-31",
        "availableDays": [
            {
                "date": "2026-12-03",
                "providerIDs": "1",
                "offices": [{"officeId": "1", "appointments": [10, 20]}],
            },
            {"date": "2026-12-05", "providerIDs": "1", "offices": []},
        ],
    }
    query = {"slotsStartDate": "2026-12-01", "slotsEndDate": "2026-12-01"}
    reading = read_calendar(data, query, {1})
    assert reading.days[date(2026, 12, 3)] == [(1, 10), (1, 20)]
    assert date(2026, 12, 5) not in reading.days
    assert reading.days[date(2026, 12, 31)] == []
    assert date(2027, 1, 1) not in reading.days
    with pytest.raises(LayoutChanged):
        read_calendar({"days": []}, query, {1})


async def test_unreachable_site_and_slow_calendar(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica, settings: Settings
) -> None:
    """Injected: a site URL nobody listens on, then a calendar that answers after 3 s to an adapter
    that waits 1 s. Asserted: ``SiteUnavailable`` for the first, ``CheckTimeout`` for the second."""
    await fresh(pool, FUEHRERSCHEIN)
    nowhere = f"http://127.0.0.1:{free_port()}/buergerservice/terminvereinbarung.html"
    with pytest.raises(SiteUnavailable, match="did not load"):
        await run_check(pool, adapter, FUEHRERSCHEIN, site_url=nowhere)

    impatient = MunichAdapter(
        solver=InPageAltchaSolver(), pacer=NoPacer(), settings=settings, request_timeout_s=1.0, quiet_s=0.1
    )
    await check(pool, impatient, FUEHRERSCHEIN, replica)
    replica.faults(slow_ms=3000, endpoints=["available-calendar"])
    with pytest.raises(CheckTimeout):
        await check(pool, impatient, FUEHRERSCHEIN, replica)


async def test_token_of_a_widget_that_verified_on_its_own() -> None:
    """A widget that verifies before the solver looks leaves its answer among the walk's exchanges:
    the walk takes the last successful verify's token from there; a refused verify gives none."""
    api = "https://example.invalid/buergeransicht/api/citizen"

    def verify(body: dict[str, Any]) -> Exchange:
        return Exchange.build(f"{api}/captcha-verify/", "POST", 200, {}, {}, json.dumps(body))

    calendar = Exchange.build(f"{api}/available-calendar/?officeIds=1", "GET", 200, {}, {}, "{}")
    passed = verify({"meta": {"success": True}, "data": {"valid": True}, "token": "t-2"})
    earlier = verify({"meta": {"success": True}, "data": {"valid": True}, "token": "t-1"})
    refused = verify({"meta": {"success": False, "error": "Captcha verification failed"}, "data": None})
    assert _verified_token([earlier, passed, calendar]) == "t-2"
    assert _verified_token([refused, calendar]) is None


# --- the whole horizon (issue 12) --------------------------------------------------------------------
def _calendar_windows(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(slotsStartDate, slotsEndDate) of every available-calendar request in ``records``."""
    windows = []
    for record in records:
        if "available-calendar" in record["path"]:
            query = {k: v[0] for k, v in parse_qs(record["query"]).items()}
            windows.append((query.get("slotsStartDate", ""), query.get("slotsEndDate", "")))
    return windows


def _month_after_next_slot(hour: int) -> int:
    """A working day early in the month after next (Berlin), as an epoch."""
    today = datetime.now(BERLIN).date()
    first = (today.replace(day=1) + timedelta(days=62)).replace(day=1)
    day = first + timedelta(days=2)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return berlin_slot(days_ahead=(day - today).days, hour=hour)


async def test_a_slot_in_the_month_after_next_is_seen_in_the_same_round_as_one_tomorrow(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Tried: a warm session on an office with nothing free; then one slot is released tomorrow and
    one in the month after next. Asserted: the very next warm round reads both (the calendar
    answer paints only the months its slot window reaches, so a one-day window would miss the
    later one), at the cost of its horizon request plus one day request, and the horizon request's
    slot window reaches the later month."""
    await fresh(pool, FUEHRERSCHEIN)
    await check(pool, adapter, FUEHRERSCHEIN, replica)
    soon = berlin_slot(days_ahead=1, hour=9)
    far = _month_after_next_slot(hour=10)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(soon) + units(far))
    before = len(request_log(replica))

    result = await check(pool, adapter, FUEHRERSCHEIN, replica)

    assert not result.walked
    seen = starts(result.observation)
    assert (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, far) in seen
    assert (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, soon) in seen
    assert result.requests_made == 2
    windows = _calendar_windows(request_log(replica)[before:])
    horizon_end = date.fromisoformat(windows[0][1])
    assert horizon_end >= day_of(far), windows
    assert (day_of(far).isoformat(),) * 2 in windows  # the later day's times, by a day request


async def test_a_new_time_on_the_last_of_fifteen_open_days_is_seen_within_two_rounds(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Tried: 15 open days; warm rounds until every day's times have been read once (new days
    first); then a new time is released on the last of the 15 days. Asserted: one of the next two
    rounds reads it, and no round costs more than its horizon request plus the day cap."""
    await fresh(pool, FUEHRERSCHEIN)
    open_days = list(range(1, 16))
    replica.add_slots(
        FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, [ts for d in open_days for ts in units(berlin_slot(d, hour=8))]
    )
    walked = await check(pool, adapter, FUEHRERSCHEIN, replica)  # the walk and its round
    warm = await check(pool, adapter, FUEHRERSCHEIN, replica)  # the days the walk's cap left over
    every_first_time = {(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, berlin_slot(d, hour=8)) for d in open_days}
    assert every_first_time <= starts(walked.observation) | starts(warm.observation)
    new_time = berlin_slot(days_ahead=open_days[-1], hour=13)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(new_time))

    rounds = []
    for _ in range(2):
        result = await check(pool, adapter, FUEHRERSCHEIN, replica)
        rounds.append(result)
        if (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, new_time) in starts(result.observation):
            break
    assert (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, new_time) in starts(rounds[-1].observation)
    assert all(r.requests_made <= 1 + adapter.max_day_requests for r in rounds)


async def test_days_nobody_wants_cost_no_request(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Tried: slots on three days; the check is told (as the scheduler tells it) that subscribers
    want only the third. Asserted: the round's horizon window starts at that day, no day request
    asks for another day, and the observation covers the wanted day with its slot."""
    await fresh(pool, FUEHRERSCHEIN)
    slots = [berlin_slot(days_ahead=d, hour=9) for d in (2, 3, 4)]
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, [ts for s in slots for ts in units(s)])
    await check(pool, adapter, FUEHRERSCHEIN, replica)
    wanted = frozenset({day_of(slots[2])})
    before = len(request_log(replica))

    result = await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url, days=wanted)

    windows = _calendar_windows(request_log(replica)[before:])
    assert windows[0][0] == day_of(slots[2]).isoformat()
    assert all(start == end == day_of(slots[2]).isoformat() for start, end in windows[1:]), windows
    assert (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, slots[2]) in starts(result.observation)
    assert result.observation.covered_days is not None and day_of(slots[2]) in result.observation.covered_days


async def test_a_walk_for_two_people_raises_the_counter(
    pool: BrowserPool, adapter: MunichAdapter, replica: Replica
) -> None:
    """Tried: a target for two people at a Bürgerbüro. Asserted: the walk raises the page's counter
    to 2 (read from the counter's text, as muc-patternlab-vue renders it) and every calendar request
    asks for a count of 2."""
    two = TargetKey("munich", WOHNSITZANMELDUNG, 2, (ORLEANSPLATZ,))
    await fresh(pool, two)
    before = len(request_log(replica))
    result = await check(pool, adapter, two, replica)
    assert result.walked
    counts = {
        parse_qs(r["query"])["serviceCounts"][0]
        for r in request_log(replica)[before:]
        if "available-calendar" in r["path"]
    }
    assert counts == {"2"}
