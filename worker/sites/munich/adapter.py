"""The Munich adapter: reads free slots from the city's booking page (ZMS citizen view).

Everything here is aimed at the facts in the site's fact sheet (``shared/site/munich-site.md``),
kept in ``selectors``: element ids and German labels, the citizen-API endpoints and their
answers, the error codes. Nothing depends on how our replica happens to be built.

The walk (a fresh context) does what a person does: open the deep link for the service and office,
raise the count, let the captcha widget do its proof of work when the office needs it, press
"Weiter" and wait for the calendar. The slots come from the citizen-API answers the page itself
received (``available-calendar``, or the legacy ``available-days-by-office`` +
``available-appointments-by-office`` of releases <= muc45), and are cross-checked against the page:
the time-slot buttons must show the answer's times, or the "no appointment" callout must show when
there are none. Page and data disagreeing, or expected elements missing, is a ``LayoutChanged`` --
never a false slot.

A warm check then repeats the page's own calendar request from inside the open page (``fetch`` with
the URL, query and headers the page used), costing one site request and a few milliseconds.

What one answer covers (``Observation.covered_days``): the calendar paints whole months and lists
every bookable day in them, but times for one day only (spec §2.4a). So a check knows the complete
slots of the day whose times were loaded, and that the painted days not listed have none; other
listed days are left alone. Each warm check asks for the day least recently loaded (a newly listed
day first), so over a few checks every bookable day is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page, Request, Response
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from shared.domain import (
    SITE_TIMEZONE,
    CaptchaRequired,
    CheckFailure,
    CheckTimeout,
    LayoutChanged,
    Observation,
    RateLimited,
    SiteUnavailable,
    SlotSeen,
    TargetKey,
    utcnow,
)
from shared.logging import get_logger
from shared.settings import Settings
from worker.browser._session import RequestTemplate
from worker.captcha import CaptchaSolver, token_from_verify
from worker.pacer import Pacer
from worker.sites.base import SiteQuota
from worker.sites.munich import selectors as sel
from worker.sites.munich.failures import failure_for, header_int, reset_time

if TYPE_CHECKING:
    from worker.browser._session import BrowserSession

log = get_logger("mta.munich")

CALENDAR = "calendar"
LEGACY_DAYS = "legacy_days"
LEGACY_APPOINTMENTS = "legacy_appointments"
"""Keys of ``session.templates``: the page's own availability requests."""

_DROP_HEADERS = frozenset(
    {"host", "cookie", "user-agent", "referer", "origin", "content-length", "connection", "accept-encoding"}
)
"""Request headers the browser sets by itself; a template repeats only the page's own (Accept ...)."""

_FETCH_JS = """async ([url, method, headers]) => {
  const response = await fetch(url, { method, headers, cache: "no-store" });
  const seen = {};
  response.headers.forEach((value, name) => { seen[name] = value; });
  return { status: response.status, headers: seen, body: await response.text() };
}"""
"""The page's own kind of request, made from inside the page (same origin, cookies, egress)."""


# --- the citizen-API answers ----------------------------------------------------------------------
@dataclass
class Exchange:
    """One citizen-API request and its answer, as the page (or our in-page fetch) saw it."""

    endpoint: str
    url: str
    method: str
    status: int
    headers: dict[str, str]
    request_headers: dict[str, str]
    body: str | None
    data: Any = None
    parsed: bool = False

    @classmethod
    def build(
        cls,
        url: str,
        method: str,
        status: int,
        headers: dict[str, str],
        request_headers: dict[str, str],
        body: str | None,
    ) -> Exchange:
        exchange = cls(
            endpoint=sel.endpoint_of(url) or "",
            url=url,
            method=method,
            status=status,
            headers={k.lower(): v for k, v in headers.items()},
            request_headers={k.lower(): v for k, v in request_headers.items()},
            body=body,
        )
        if body is not None:
            try:
                exchange.data = json.loads(body)
                exchange.parsed = True
            except ValueError:
                exchange.parsed = False
        return exchange

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    @property
    def error_codes(self) -> list[str]:
        errors = self.data.get("errors") if isinstance(self.data, dict) else None
        if not isinstance(errors, list):
            return []
        return [str(e.get("errorCode")) for e in errors if isinstance(e, dict) and e.get("errorCode")]

    def template(self) -> RequestTemplate:
        headers = {
            k: v
            for k, v in self.request_headers.items()
            if k not in _DROP_HEADERS and not k.startswith("sec-") and not k.startswith(":")
        }
        return RequestTemplate(self.url, self.method, headers)


class ApiRecorder:
    """Listens to the page's citizen-API traffic: counts requests, keeps every answer."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.exchanges: list[Exchange] = []
        self.network_failures: list[str] = []
        self.requests = 0
        self.in_flight = 0
        self.last_activity = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_finished)
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)

    def detach(self) -> None:
        for event, handler in (
            ("request", self._on_request),
            ("requestfinished", self._on_finished),
            ("requestfailed", self._on_failed),
            ("response", self._on_response),
        ):
            self.page.remove_listener(event, handler)

    @staticmethod
    def _is_api(url: str) -> bool:
        return sel.API_MARKER in url

    def _on_request(self, request: Request) -> None:
        if self._is_api(request.url):
            self.requests += 1
            self.in_flight += 1
            self.last_activity = time.monotonic()

    def _on_finished(self, request: Request) -> None:
        if self._is_api(request.url):
            self.in_flight = max(0, self.in_flight - 1)
            self.last_activity = time.monotonic()

    def _on_failed(self, request: Request) -> None:
        if self._is_api(request.url):
            self.in_flight = max(0, self.in_flight - 1)
            # a request the page itself abandoned (a superseded calendar call) is no network trouble
            if "ERR_ABORTED" not in (request.failure or ""):
                self.network_failures.append(f"{sel.endpoint_of(request.url)}: {request.failure}")
            self.last_activity = time.monotonic()

    def _on_response(self, response: Response) -> None:
        if self._is_api(response.url):
            task = asyncio.ensure_future(self._capture(response))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _capture(self, response: Response) -> None:
        try:
            body: str | None = await response.text()
        except PlaywrightError:
            body = None
        request = response.request
        self.exchanges.append(
            Exchange.build(
                response.url, request.method, response.status, response.headers, request.headers, body
            )
        )
        self.last_activity = time.monotonic()

    async def drain(self) -> None:
        """Wait until every answer seen so far has been read."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def of(self, *endpoints: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.endpoint in endpoints]


# --- what an answer says --------------------------------------------------------------------------
@dataclass
class DayReading:
    """What availability answers said, day by day: complete slot lists for ``days``."""

    days: dict[date, list[tuple[int, int]]] = field(default_factory=dict)
    """Day -> (officeId, epoch) of every free slot that day (empty: none free)."""
    bookable: set[date] = field(default_factory=set)
    """Days listed as bookable (their times may not have been loaded)."""
    loaded: set[date] = field(default_factory=set)
    """Days whose times were loaded."""

    def merge(self, other: DayReading) -> None:
        """Later answers win day by day."""
        self.days.update(other.days)
        self.bookable |= other.bookable
        self.loaded |= other.loaded


def _iso_day(value: object, what: str) -> date:
    if not isinstance(value, str):
        raise LayoutChanged(f"{what} is not a date string: {value!r}"[:200])
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise LayoutChanged(f"{what} is not a date: {value!r}"[:200]) from None


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise LayoutChanged(f"{what} is not a number: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    raise LayoutChanged(f"{what} is not a number: {value!r}"[:200])


def _offices(value: str | None) -> set[int]:
    return {int(p) for p in (value or "").split(",") if p.strip().isascii() and p.strip().isdigit()}


def _days_between(first: date, last: date) -> set[date]:
    if last < first:
        return set()
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def _month_span(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def _slot_times(offices: object, wanted: set[int], what: str) -> list[tuple[int, int]]:
    if not isinstance(offices, list):
        raise LayoutChanged(f"{what}: 'offices' is not a list")
    found: list[tuple[int, int]] = []
    for entry in offices:
        if not isinstance(entry, dict):
            raise LayoutChanged(f"{what}: an office entry is not an object")
        office_id = _int(entry.get("officeId"), f"{what} officeId")
        appointments = entry.get("appointments")
        if not isinstance(appointments, list):
            raise LayoutChanged(f"{what}: 'appointments' is not a list")
        if office_id in wanted:
            found += [(office_id, _int(ts, f"{what} appointment")) for ts in appointments]
    return sorted(set(found))


def read_calendar(data: object, query: dict[str, str], wanted: set[int]) -> DayReading:
    """One ``available-calendar`` answer (spec §2.4a) for the offices in ``wanted``."""
    if not isinstance(data, dict) or not isinstance(data.get("availableDays"), list):
        raise LayoutChanged("available-calendar answer has no 'availableDays' list")
    range_start = _iso_day(data.get("startDate") or query.get(sel.Q_START), "startDate")
    range_end = _iso_day(data.get("endDate") or query.get(sel.Q_END), "endDate")
    reading = DayReading()
    listed: set[date] = set()
    painted: set[date] = set()
    window = [query.get(sel.Q_SLOTS_START), query.get(sel.Q_SLOTS_END)]
    if all(window):
        first = max(_iso_day(window[0], "slotsStartDate"), range_start)
        last = min(_iso_day(window[1], "slotsEndDate"), range_end)
        if first <= last:
            painted |= _days_between(_month_span(first)[0], _month_span(last)[1])
    else:  # no slots window: the whole range is painted
        painted |= _days_between(range_start, range_end)
    for entry in data["availableDays"]:
        if not isinstance(entry, dict):
            raise LayoutChanged("available-calendar day entry is not an object")
        day = _iso_day(entry.get("date"), "availableDays date")
        listed.add(day)
        month_first, month_last = _month_span(day)
        painted |= _days_between(month_first, month_last)
        providers = entry.get("providerIDs")
        if providers is not None and not isinstance(providers, str | int):
            raise LayoutChanged("available-calendar providerIDs is neither text nor a number")
        if providers is None or _offices(str(providers)) & wanted:
            reading.bookable.add(day)
        slots = _slot_times(entry.get("offices", []), wanted, f"available-calendar {day}")
        if slots:
            reading.days[day] = slots
            reading.loaded.add(day)
    # the nearest bookable days outside the painted months (rule 5): worth a day request when wanted
    for name in ("prevBookableDate", "nextBookableDate"):
        if data.get(name) is not None:
            day = _iso_day(data.get(name), name)
            if range_start <= day <= range_end and day not in painted:
                reading.bookable.add(day)
    # painted days within the range that are not listed have nothing free for this query
    for day in painted:
        if range_start <= day <= range_end and day not in listed:
            reading.days[day] = []
    return reading


def read_legacy_days(exchange: Exchange, wanted: set[int]) -> DayReading:
    """``available-days-by-office`` (<= muc45, spec §2.4b): bookable days of the whole range."""
    query = exchange.query
    range_start = _iso_day(query.get(sel.Q_START), "startDate")
    range_end = _iso_day(query.get(sel.Q_END), "endDate")
    reading = DayReading()
    if exchange.status == 404 and sel.LEGACY_NO_DAYS_CODE in exchange.error_codes:
        entries: list[Any] = []
    elif isinstance(exchange.data, dict) and isinstance(exchange.data.get("availableDays"), list):
        entries = exchange.data["availableDays"]
    else:
        raise LayoutChanged("available-days-by-office answer has no 'availableDays' list")
    listed: set[date] = set()
    for entry in entries:
        if isinstance(entry, dict):
            day = _iso_day(entry.get("time"), "availableDays time")
            providers = entry.get("providerIDs")
            if providers is None or _offices(str(providers)) & wanted:
                reading.bookable.add(day)
        else:
            day = _iso_day(entry, "availableDays entry")
            reading.bookable.add(day)
        listed.add(day)
    for day in _days_between(range_start, range_end) - listed:
        reading.days[day] = []
    return reading


def read_legacy_appointments(exchange: Exchange, wanted: set[int]) -> DayReading:
    """``available-appointments-by-office`` (<= muc45): every free time of one day."""
    day = _iso_day(exchange.query.get(sel.QL_DATE), "date")
    reading = DayReading()
    if exchange.status == 404 and sel.LEGACY_NO_APPOINTMENTS_CODE in exchange.error_codes:
        reading.days[day] = []
        return reading
    if not isinstance(exchange.data, dict):
        raise LayoutChanged("available-appointments-by-office answer is not an object")
    reading.days[day] = _slot_times(exchange.data.get("offices"), wanted, f"available-appointments {day}")
    reading.loaded.add(day)
    if reading.days[day]:
        reading.bookable.add(day)
    return reading


# --- the adapter ------------------------------------------------------------------------------------
Probe = Callable[[], Awaitable[bool]]


def _header_int(exchange: Exchange, name: str) -> int | None:
    return header_int(exchange.headers, name)


def berlin_today() -> date:
    return datetime.now(SITE_TIMEZONE).date()


@dataclass
class DayMemory:
    """What one session learned about one target's days: a session serves every target of its site,
    so this is kept per target (``session.site_data["days"][key]``)."""

    asked_at: dict[date, float] = field(default_factory=dict)
    """Monotonic time each day's times were last loaded."""
    bookable: set[date] = field(default_factory=set)
    """Days the calendar listed as bookable, not yet seen empty."""


def day_memory(session: BrowserSession, key: TargetKey) -> DayMemory:
    per_target: dict[TargetKey, DayMemory] = session.site_data.setdefault("days", {})
    return per_target.setdefault(key, DayMemory())


class MunichAdapter:
    """The ``SiteAdapter`` for stadt.muenchen.de's ZMS booking page."""

    site = sel.SITE

    def __init__(
        self,
        *,
        solver: CaptchaSolver,
        pacer: Pacer,
        settings: Settings,
        step_timeout_s: float = 45.0,
        dom_grace_s: float = 5.0,
        quiet_s: float = 0.25,
        request_timeout_s: float | None = None,
        today: Callable[[], date] = berlin_today,
        max_day_requests: int | None = None,
    ) -> None:
        self.solver = solver
        self.max_day_requests = (
            settings.check_day_requests_max if max_day_requests is None else max_day_requests
        )
        """Day requests one round may make beyond its horizon request (``check_round``)."""
        self.today = today
        """The site's current day (a replay pins it to the recording's; per adapter, so concurrent
        replays of different days do not meet)."""
        self.pacer = pacer
        self.settings = settings
        self.step_timeout_s = step_timeout_s
        self.dom_grace_s = dom_grace_s
        """How long the page may take to show the expected elements once the API has answered."""
        self.quiet_s = quiet_s
        self.request_timeout_s = (
            settings.check_request_timeout_s if request_timeout_s is None else request_timeout_s
        )
        """How long a warm check waits for the calendar answer (``MTA_CHECK_REQUEST_TIMEOUT_S``)."""
        self._last_reset: datetime | None = None
        self.quota: SiteQuota | None = None

    # === the full walk ===================================================================
    async def walk(
        self, session: BrowserSession, key: TargetKey, site_url: str, days: frozenset[date] | None = None
    ) -> Observation:
        """Deep link -> count -> captcha -> "Weiter" -> calendar, then one round of the request plan
        (``check_round``) for ``days``; leaves the page on the calendar."""
        page = session.page
        recorder = ApiRecorder(page)
        # every citizen-API answer the page receives during the walk (catalogue, scope flags ...)
        session.site_data["walk_exchanges"] = recorder.exchanges
        try:
            try:
                reading = await self._walk(session, recorder, key, site_url)
            except PlaywrightTimeoutError as exc:
                raise CheckTimeout(f"walk timed out: {str(exc).splitlines()[0][:200]}") from None
        finally:
            await recorder.drain()
            recorder.detach()
            session.requests_made += recorder.requests
            self._remember_limits(recorder.exchanges)
        # The page shows one month, and the deep link's office only; one round of the request plan
        # reads the whole horizon for all the target's offices (the way the page asks when a person
        # ticks offices and moves through days and months), so a fresh session misses nothing.
        reading.merge(await self.check_round(session, key, days))
        session.walked = True
        return self._observation(key, reading, source="walk")

    async def _walk(
        self,
        session: BrowserSession,
        recorder: ApiRecorder,
        key: TargetKey,
        site_url: str,
    ) -> DayReading:
        page = session.page
        url = sel.deep_link(site_url, key.service_id, key.office_ids[0] if key.office_ids else None)
        try:
            response = await page.goto(url, wait_until="domcontentloaded", timeout=self.step_timeout_s * 1000)
        except PlaywrightTimeoutError:
            raise CheckTimeout("the booking page did not load in time") from None
        except PlaywrightError as exc:
            raise SiteUnavailable(
                f"the booking page did not load: {str(exc).splitlines()[0][:200]}"
            ) from None
        if response is not None and response.status >= 500:
            raise SiteUnavailable(
                f"the booking page answered HTTP {response.status}", status_code=response.status
            )
        if response is not None and response.status >= 400:
            raise LayoutChanged(f"the booking page answered HTTP {response.status}")

        # step "Leistung": the service is preselected; wait for "Weiter" or the captcha widget
        next_button = page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True).first
        captcha_label = page.get_by_text(sel.CAPTCHA_LABEL, exact=True).first

        async def next_enabled() -> bool:
            return (
                await next_button.is_visible() and await next_button.get_attribute("aria-disabled") != "true"
            )

        def services_loaded() -> bool:
            return bool(recorder.of(sel.CATALOG_ENDPOINT))

        state = await self._settle(
            page,
            recorder,
            {"ready": next_enabled, "captcha": _visible(captcha_label)},
            what="the service step",
            api_done=services_loaded,
        )
        await self._set_count(page, key)
        if state == "captcha" or await captcha_label.is_visible():
            await self.pacer.think()
            token = await self.solver.solve(page, session)
            await recorder.drain()
            self._raise_for_api(recorder.exchanges)
            session.set_token(token or _verified_token(recorder.exchanges))
            await self._settle(
                page,
                recorder,
                {"ready": next_enabled},
                what="the service step after the captcha",
                api_done=services_loaded,
                missing=CaptchaRequired,
            )

        # step "Termin": the calendar
        await self.pacer.think()
        await self.pacer.move_to(page, next_button)
        seen_before = len(recorder.exchanges)
        await next_button.click(timeout=self.step_timeout_s * 1000)
        shown = await self._settle_calendar(page, recorder, since=seen_before)

        page_exchanges = self._availability(recorder.exchanges)
        if not page_exchanges:
            raise LayoutChanged("the page asked for no availability (calendar endpoint renamed?)")
        self._keep_templates(session, page_exchanges)
        await self._cross_check(page, page_exchanges, shown)

        wanted = set(key.office_ids)
        asked = day_memory(session, key).asked_at
        for exchange in page_exchanges:
            window = exchange.query.get(sel.Q_SLOTS_START) or exchange.query.get(sel.QL_DATE)
            if window:
                with contextlib.suppress(ValueError):
                    asked[date.fromisoformat(window)] = time.monotonic()
        reading = DayReading()
        for exchange in page_exchanges:
            if self._matches(exchange, key):
                reading.merge(self._read(exchange, wanted))
        self._remember_days(session, key, reading, None)
        return reading

    async def _set_count(self, page: Page, key: TargetKey) -> None:
        """Raise the service counter to the target's count (spec §4.3, "... erhöhen auf N")."""
        for n in range(2, key.service_count + 1):
            plus = page.get_by_role("button", name=sel.COUNTER_INCREASE.format(n=n)).first
            if not await plus.count() or await plus.get_attribute("aria-disabled") == "true":
                raise LayoutChanged(f"no counter button to raise the count to {n}")
            await self.pacer.move_to(page, plus)
            await plus.click()
        if key.service_count > 1:
            text = await page.locator(sel.counter_value(key.service_id)).first.inner_text()
            shown = re.findall(r"\d+", text)
            if not shown or shown[-1] != str(key.service_count):
                raise LayoutChanged(f"the counter shows {text.strip()[-40:]!r}, not {key.service_count}")

    async def _settle_calendar(self, page: Page, recorder: ApiRecorder, *, since: int) -> str:
        slot_button = page.locator(sel.TIMESLOT_BUTTON).first
        no_slots = page.get_by_text(sel.NO_SLOTS).first

        def answered() -> bool:
            return bool(self._availability(recorder.exchanges[since:]))

        return await self._settle(
            page,
            recorder,
            {"slots": _visible(slot_button), "none": _visible(no_slots)},
            what="the calendar",
            api_done=answered,
        )

    # === the warm check ==================================================================
    async def warm_check(
        self, session: BrowserSession, key: TargetKey, days: frozenset[date] | None = None
    ) -> Observation:
        """One round of the request plan (``check_round``) from inside the open page."""
        if not session.walked or not (CALENDAR in session.templates or LEGACY_DAYS in session.templates):
            raise LayoutChanged("warm check on a session without the page's calendar request")
        reading = await self.check_round(session, key, days)
        return self._observation(key, reading, source="calendar")

    async def check_round(
        self, session: BrowserSession, key: TargetKey, days: frozenset[date] | None = None
    ) -> DayReading:
        """The request plan of one round, for the days in ``days`` (None: every day of the horizon).

        1. The horizon: one calendar request whose slot window runs from the first to the last
           wanted day. The answer paints every month the window reaches (fact sheet §2.4a rule 2),
           so it lists the bookable days of all those months, and the times of the first bookable
           day in the window (rule 3); ``prev``/``nextBookableDate`` name bookable days outside it.
        2. The days: one request per bookable wanted day whose times the horizon answer did not
           carry -- every day this session has never loaded (a new bookable day, in any month),
           then the least recently loaded half of the others, so a new time on any open day is
           read within two rounds. At most ``max_day_requests`` day requests per round.

        Requests per round: 1 + new days + ceil(other open wanted days / 2), capped at
        1 + ``max_day_requests``; a round with nothing bookable costs one request.
        """
        today = self.today()
        wanted = None if days is None else frozenset(d for d in days if d >= today)
        if wanted is not None and not wanted:
            wanted = frozenset({today})  # nothing wanted in the horizon: keep the page's own view
        first = min(wanted) if wanted else today
        last = max(wanted) if wanted else None
        reading = await self._ask_horizon(session, key, first, last)
        self._remember_days(session, key, reading, None)
        memory = day_memory(session, key)
        open_days = sorted(
            d
            for d in memory.bookable
            if d >= today and (wanted is None or d in wanted) and d not in reading.loaded
        )
        fresh = [d for d in open_days if d not in memory.asked_at]
        others = sorted((d for d in open_days if d in memory.asked_at), key=lambda d: (memory.asked_at[d], d))
        plan = [*fresh, *others[: math.ceil(len(others) / 2)]][: self.max_day_requests]
        for day in plan:
            day_reading = await self._ask_day(session, key, day)
            reading.merge(day_reading)
            self._remember_days(session, key, day_reading, day)
        return reading

    def _remember_days(
        self, session: BrowserSession, key: TargetKey, reading: DayReading, asked_day: date | None
    ) -> None:
        now = time.monotonic()
        memory = day_memory(session, key)
        asked, bookable = memory.asked_at, memory.bookable
        if asked_day is not None:
            asked[asked_day] = now
        for day in reading.loaded:
            asked[day] = now
        for day, slots in reading.days.items():
            if not slots and day not in reading.bookable:
                bookable.discard(day)
                asked.pop(day, None)  # if it comes back, it is new again
        bookable |= reading.bookable
        today = self.today()
        for day in [d for d in bookable if d < today]:
            bookable.discard(day)

    @staticmethod
    def _common_query(
        session: BrowserSession, key: TargetKey, template: RequestTemplate
    ) -> dict[str, str | None]:
        if CALENDAR in session.templates:
            names = (sel.Q_OFFICES, sel.Q_SERVICES, sel.Q_COUNTS)
        else:
            names = (sel.QL_OFFICE, sel.QL_SERVICE, sel.QL_COUNT)
        return {
            names[0]: key.office_key,
            names[1]: str(key.service_id),
            names[2]: str(key.service_count),
            sel.Q_TOKEN: session.token or template.query.get(sel.Q_TOKEN) or None,
        }

    def _range(self, template: RequestTemplate) -> tuple[date, date]:
        """The calendar's date range as the page asks it: today and the page's own span."""
        today = self.today()
        return today, today + timedelta(days=self._span_days(template.query, sel.Q_START, sel.Q_END))

    async def _ask_horizon(
        self, session: BrowserSession, key: TargetKey, first: date, last: date | None
    ) -> DayReading:
        """Bookable days from ``first`` to ``last`` (None: the range's end), with the times of the
        first of them; on a legacy site the days request, which covers the whole range."""
        wanted = set(key.office_ids)
        if CALENDAR in session.templates:
            template = session.templates[CALENDAR]
            start, end = self._range(template)
            first = min(max(first, start), end)
            last = end if last is None else min(max(last, first), end)
            url = template.with_query(
                **self._common_query(session, key, template),
                **{
                    sel.Q_START: start.isoformat(),
                    sel.Q_END: end.isoformat(),
                    sel.Q_SLOTS_START: first.isoformat(),
                    sel.Q_SLOTS_END: last.isoformat(),
                },
            )
            return self._read(await self._fetch(session, template, url), wanted)
        template = session.templates[LEGACY_DAYS]
        start, end = self._range(template)
        url = template.with_query(
            **self._common_query(session, key, template),
            **{sel.Q_START: start.isoformat(), sel.Q_END: end.isoformat()},
        )
        return self._read(await self._fetch(session, template, url), wanted)

    async def _ask_day(self, session: BrowserSession, key: TargetKey, day: date) -> DayReading:
        """The free times of ``day``: the page's request when a person clicks that day."""
        wanted = set(key.office_ids)
        if CALENDAR in session.templates:
            template = session.templates[CALENDAR]
            start, end = self._range(template)
            url = template.with_query(
                **self._common_query(session, key, template),
                **{
                    sel.Q_START: start.isoformat(),
                    sel.Q_END: end.isoformat(),
                    sel.Q_SLOTS_START: day.isoformat(),
                    sel.Q_SLOTS_END: day.isoformat(),
                },
            )
            return self._read(await self._fetch(session, template, url), wanted)
        days_template = session.templates[LEGACY_DAYS]
        template = session.templates.get(LEGACY_APPOINTMENTS) or days_template.with_endpoint(
            sel.LEGACY_DAYS_ENDPOINT, sel.LEGACY_APPOINTMENTS_ENDPOINT
        )
        common = self._common_query(session, key, days_template)
        url = template.with_query(**common, **{sel.QL_DATE: day.isoformat()})
        return self._read(await self._fetch(session, template, url), wanted)

    @staticmethod
    def _span_days(query: dict[str, str], start: str, end: str) -> int:
        try:
            return max(0, (date.fromisoformat(query[end]) - date.fromisoformat(query[start])).days)
        except (KeyError, ValueError):
            return 183

    async def _fetch(self, session: BrowserSession, template: RequestTemplate, url: str) -> Exchange:
        """``fetch`` from inside the page, like the page's own script; maps failures to types."""
        session.requests_made += 1
        try:
            raw = await asyncio.wait_for(
                session.page.evaluate(_FETCH_JS, [url, template.method, template.headers]),
                timeout=self.request_timeout_s,
            )
        except TimeoutError:
            raise CheckTimeout(f"the calendar request took over {self.request_timeout_s:.0f}s") from None
        except PlaywrightError as exc:
            text = str(exc)
            if "Failed to fetch" in text or "NetworkError" in text:
                raise SiteUnavailable(f"calendar request failed: {text.splitlines()[0][:200]}") from None
            raise
        if not isinstance(raw, dict):
            raise SiteUnavailable("the in-page request returned nothing")
        exchange = Exchange.build(
            url,
            template.method,
            int(raw.get("status", 0)),
            dict(raw.get("headers") or {}),
            template.headers,
            raw.get("body"),
        )
        self._remember_limits([exchange])
        self._raise_for_api([exchange])
        return exchange

    # === reading and checking answers ==========================================================
    @staticmethod
    def _availability(exchanges: list[Exchange]) -> list[Exchange]:
        endpoints = (sel.CALENDAR_ENDPOINT, sel.LEGACY_DAYS_ENDPOINT, sel.LEGACY_APPOINTMENTS_ENDPOINT)
        return [e for e in exchanges if e.endpoint in endpoints]

    @staticmethod
    def _keep_templates(session: BrowserSession, exchanges: list[Exchange]) -> None:
        names = {
            sel.CALENDAR_ENDPOINT: CALENDAR,
            sel.LEGACY_DAYS_ENDPOINT: LEGACY_DAYS,
            sel.LEGACY_APPOINTMENTS_ENDPOINT: LEGACY_APPOINTMENTS,
        }
        for exchange in exchanges:
            session.templates[names[exchange.endpoint]] = exchange.template()
        token = next(
            (e.query.get(sel.Q_TOKEN) for e in reversed(exchanges) if e.query.get(sel.Q_TOKEN)), None
        )
        if token and session.token is None:
            session.set_token(token)

    @staticmethod
    def _matches(exchange: Exchange, key: TargetKey) -> bool:
        """Whether the page's request asked exactly what the target asks."""
        query = exchange.query
        if exchange.endpoint == sel.CALENDAR_ENDPOINT:
            names = (sel.Q_OFFICES, sel.Q_SERVICES, sel.Q_COUNTS)
        else:
            names = (sel.QL_OFFICE, sel.QL_SERVICE, sel.QL_COUNT)
        offices, services, counts = (query.get(n, "") for n in names)
        return (
            _offices(offices) == set(key.office_ids)
            and services.strip() == str(key.service_id)
            and counts.strip() == str(key.service_count)
        )

    @staticmethod
    def _read(exchange: Exchange, wanted: set[int]) -> DayReading:
        if exchange.endpoint == sel.CALENDAR_ENDPOINT:
            if exchange.status == 404 and sel.NO_SCOPE_CODE in exchange.error_codes:
                return DayReading()  # the page shows "no appointment"; nothing is known per day
            return read_calendar(exchange.data, exchange.query, wanted)
        if exchange.endpoint == sel.LEGACY_DAYS_ENDPOINT:
            return read_legacy_days(exchange, wanted)
        return read_legacy_appointments(exchange, wanted)

    def _raise_for_api(self, exchanges: list[Exchange]) -> None:
        """Turn the first failed citizen-API answer into its failure type (spec §2.10, §2.11)."""
        for exchange in exchanges:
            failure = self._failure(exchange)
            if failure is not None:
                raise failure

    def _failure(self, exchange: Exchange) -> CheckFailure | None:
        status, codes, endpoint = exchange.status, exchange.error_codes, exchange.endpoint
        # "nothing free" answers are outcomes, not failures (fact sheet §2.4a, §2.4b)
        if status == 404 and endpoint == sel.CALENDAR_ENDPOINT and sel.NO_SCOPE_CODE in codes:
            return None
        if status == 404 and endpoint == sel.LEGACY_DAYS_ENDPOINT and sel.LEGACY_NO_DAYS_CODE in codes:
            return None
        if (
            status == 404
            and endpoint == sel.LEGACY_APPOINTMENTS_ENDPOINT
            and sel.LEGACY_NO_APPOINTMENTS_CODE in codes
        ):
            return None
        return failure_for(
            endpoint,
            status,
            codes,
            is_object=exchange.parsed and isinstance(exchange.data, dict),
            headers=exchange.headers,
            last_reset=self._last_reset,
        )

    def _reset_at(self, exchange: Exchange) -> datetime:
        return reset_time(exchange.headers, self._last_reset)

    def _remember_limits(self, exchanges: list[Exchange]) -> None:
        """Keep what successful answers say about the rate limit (spec §2.11): when the window resets,
        and how many requests the site allows and has counted (``quota``)."""
        for exchange in exchanges:
            if exchange.status >= 400:
                continue
            reset = _header_int(exchange, sel.RATE_LIMIT_RESET_HEADER)
            if reset is not None and reset > 10**9:
                at = datetime.fromtimestamp(reset, UTC)
                if self._last_reset is None or at > self._last_reset:
                    self._last_reset = at
            limit = _header_int(exchange, sel.RATE_LIMIT_LIMIT_HEADER)
            remaining = _header_int(exchange, sel.RATE_LIMIT_REMAINING_HEADER)
            if limit and remaining is not None:
                self.quota = SiteQuota(limit=limit, counted=max(0, limit - remaining - 1))

    async def _cross_check(self, page: Page, exchanges: list[Exchange], shown: str) -> None:
        """The page must show what its last availability answer with times said (spec §4.3)."""
        expected: set[tuple[int, int]] = set()
        for exchange in exchanges:
            wanted = _offices(exchange.query.get(sel.Q_OFFICES) or exchange.query.get(sel.QL_OFFICE))
            reading = self._read(exchange, wanted)
            if reading.loaded:
                expected = {slot for day in reading.loaded for slot in reading.days[day]}
        if shown == "none":
            if expected:
                raise LayoutChanged("the page says no appointment is free, its calendar answer lists times")
            return
        ids: list[str] = await page.locator(sel.TIMESLOT_BUTTON).evaluate_all("els => els.map(e => e.id)")
        shown_slots: set[tuple[int, int]] = set()
        for element_id in ids:
            match = sel.TIMESLOT_ID.match(element_id or "")
            if match is None:
                raise LayoutChanged(f"a time-slot button has an unexpected id {element_id!r}"[:200])
            shown_slots.add((int(match.group(1)), int(match.group(2))))
        if not shown_slots:
            raise LayoutChanged("the calendar shows no time-slot buttons")
        extra = shown_slots - expected
        if extra:
            raise LayoutChanged(f"the page shows {len(extra)} time slot(s) its calendar answer does not list")

    def _observation(self, key: TargetKey, reading: DayReading, *, source: str) -> Observation:
        slots = [
            SlotSeen(office_id, key.service_id, datetime.fromtimestamp(ts, UTC))
            for day in sorted(reading.days)
            for office_id, ts in reading.days[day]
        ]
        return Observation(
            site=self.site,
            service_id=key.service_id,
            service_count=key.service_count,
            office_ids=key.office_ids,
            observed_at=utcnow(),
            slots=slots,
            source=source,
            covered_days=frozenset(reading.days),
        )

    # === waiting for the page ===================================================================
    async def _settle(
        self,
        page: Page,
        recorder: ApiRecorder,
        probes: dict[str, Probe],
        *,
        what: str,
        api_done: Callable[[], bool],
        missing: type[CheckFailure] = LayoutChanged,
    ) -> str:
        """Wait until the API is quiet and one of ``probes`` holds; return its name.

        An API failure or one of the site's error screens raises its type; the API done but none of
        the expected elements within ``dom_grace_s`` raises ``missing``; the step taking longer than
        ``step_timeout_s`` raises ``CheckTimeout``.
        """
        screens = {
            sel.RATE_LIMIT_SCREEN: lambda: RateLimited(
                "the page shows its rate-limit screen", reset_at=self._reset_at(_NO_EXCHANGE)
            ),
            sel.MAINTENANCE_SCREEN: lambda: SiteUnavailable(
                "the page shows its maintenance screen", status_code=503
            ),
            sel.UNAVAILABLE_SCREEN: lambda: SiteUnavailable("the page says the function is not available"),
            sel.INVALID_LINK_SCREEN: lambda: LayoutChanged("the page calls the deep link invalid"),
            sel.SESSION_EXPIRED: lambda: CaptchaRequired("the page says the session expired (captcha)"),
        }
        screen_probes = {text: _visible(page.get_by_text(text).first) for text in screens}
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            await recorder.drain()
            self._raise_for_api(recorder.exchanges)
            if recorder.network_failures:
                raise SiteUnavailable(f"citizen API unreachable: {recorder.network_failures[0]}"[:300])
            quiet = recorder.in_flight == 0 and time.monotonic() - recorder.last_activity >= self.quiet_s
            if quiet:
                for name, probe in probes.items():
                    if await probe():
                        return name
                for text, probe in screen_probes.items():
                    if await probe():
                        raise screens[text]()
                if api_done() and time.monotonic() - recorder.last_activity >= self.dom_grace_s:
                    raise missing(f"{what}: none of the expected elements ({', '.join(probes)}) appeared")
            if time.monotonic() >= deadline:
                raise CheckTimeout(f"{what} did not settle within {self.step_timeout_s:.0f}s")
            await asyncio.sleep(0.05)


_NO_EXCHANGE = Exchange("", "", "GET", 0, {}, {}, None)


def _verified_token(exchanges: list[Exchange]) -> str | None:
    """The token of the page's last successful captcha verify (a widget that verified on its own,
    before the solver looked, still left its answer in the walk's exchanges)."""
    for exchange in reversed(exchanges):
        if exchange.endpoint == sel.CAPTCHA_VERIFY_ENDPOINT:
            with contextlib.suppress(CaptchaRequired):
                return token_from_verify(exchange.data)
    return None


def _visible(locator: Locator) -> Probe:
    async def probe() -> bool:
        try:
            return await locator.is_visible()
        except PlaywrightError:
            return False

    return probe


__all__ = [
    "CALENDAR",
    "LEGACY_APPOINTMENTS",
    "LEGACY_DAYS",
    "ApiRecorder",
    "DayReading",
    "Exchange",
    "MunichAdapter",
    "read_calendar",
    "read_legacy_appointments",
    "read_legacy_days",
]
