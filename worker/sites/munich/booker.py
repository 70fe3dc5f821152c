"""Booking one slot on the Munich site in the browser, the way a person does it (spec §4.3, §4.4).

The walk: open the deep link for the service and office, set the count, pass the captcha, press
"Weiter", open the slot's day, pick the slot, press "Weiter" (the page reserves), type the contact
details from the subscriber's profile with the pacer's typing delays, fill the office's custom fields
(e.g. Geburtsdatum at the Führerscheinstelle), accept the terms, press "Termin reservieren" (the
page preconfirms; the city e-mails the activation link to the subscriber).

The result is read twice: from the citizen-API responses the page itself fetched (reserve, update,
preconfirm: process id, auth key, error codes) and from the page (field errors the page raises
before sending anything, the "Aktivieren Sie Ihren Termin." callout). Site trouble raises the
``CheckFailure`` types of ``shared.domain``; booking outcomes are values (``Preconfirmed``,
``SlotTaken``, ``Refused``, ``HoldLost``).

The e-mail links are used the same way: ``read_appointment`` opens the manage link
(``#/appointment/<hash>``) and reads the page's own ``appointment`` response; ``cancel`` opens it
with ``"action":"cancel"`` and presses "Absagen"; ``resume`` finishes a reservation an interrupted
worker left behind with the page's own update and preconfirm requests.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import enum
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from playwright.async_api import Error as PlaywrightError

from shared.domain import (
    SITE_TIMEZONE,
    CaptchaRequired,
    CheckTimeout,
    LayoutChanged,
    RateLimited,
    SiteUnavailable,
)
from shared.logging import get_logger
from worker.pacer import NoPacer, Pacer
from worker.sites.booking import STANDBY_DATA_KEY as STANDBY
from worker.sites.booking import (
    AppointmentState,
    BookingResult,
    CancelResult,
    CityHold,
    Contact,
    HoldLost,
    OnReserved,
    Preconfirmed,
    Refused,
    SlotTaken,
    SlotToBook,
    Standby,
)
from worker.sites.munich import booking_selectors as bsel
from worker.sites.munich import selectors as sel
from worker.sites.munich.failures import failure_for

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Response

    from worker.browser._session import BrowserSession
    from worker.captcha import CaptchaSolver

log = get_logger("mta.booking.munich")

POLL_S = 0.05
QUIET_S = 0.3
"""A calendar answer the page may follow with another request (the day it selects next): how long
no calendar request must have been sent before the appointment step counts as settled."""
CALENDAR_ENDPOINTS = frozenset(
    {sel.CALENDAR_ENDPOINT, sel.LEGACY_DAYS_ENDPOINT, sel.LEGACY_APPOINTMENTS_ENDPOINT}
)
FATAL_SCREENS = (
    sel.RATE_LIMIT_SCREEN,
    sel.MAINTENANCE_SCREEN,
    sel.UNAVAILABLE_SCREEN,
    sel.INVALID_LINK_SCREEN,
)


# --- the page's own API traffic ------------------------------------------------------------------
@dataclass(frozen=True)
class ApiResponse:
    endpoint: str
    status: int
    body: Any
    headers: dict[str, str]
    url: str = ""

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query))

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and isinstance(self.body, dict) and "errors" not in self.body

    @property
    def codes(self) -> list[str]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        if not isinstance(errors, list):
            return []
        return [str(e.get("errorCode")) for e in errors if isinstance(e, dict) and e.get("errorCode")]

    @property
    def message(self) -> str:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("errorMessage") or "")
        return ""


class ApiRecorder:
    """Collects the citizen-API responses a page receives (endpoint, status, JSON body)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.responses: list[ApiResponse] = []
        self.api_base: str | None = None
        self.requests = 0
        self._calendar_open: set[str] = set()
        self.last_calendar_event_at = 0.0
        self.shown_at: float | None = None
        """When the appointment step last showed its times (monotonic s): a person reacts to what
        appears, so the next think counts from then, not from when the page went quiet."""
        page.on("response", self._on_response)
        page.on("request", self._on_request)
        page.on("requestfailed", self._on_request_failed)

    def _on_request(self, request: Any) -> None:
        if sel.API_MARKER in request.url:
            self.requests += 1
            if sel.endpoint_of(request.url) in CALENDAR_ENDPOINTS:
                self._calendar_open.add(request.url)
                self.last_calendar_event_at = time.monotonic()

    def _on_request_failed(self, request: Any) -> None:
        """The page aborts a calendar request another one supersedes: it is no longer in flight."""
        self._calendar_open.discard(request.url)

    def calendar_pending(self) -> bool:
        """A calendar request of the page has no answer yet."""
        return bool(self._calendar_open)

    async def _on_response(self, response: Response) -> None:
        endpoint = sel.endpoint_of(response.url)
        if endpoint is None:
            return
        if self.api_base is None:
            self.api_base = response.url.split(sel.API_MARKER, 1)[0] + sel.API_MARKER.rstrip("/")
        body: Any = None
        # the catalogue is large and not needed here: calendar answers (which day lists which slot),
        # booking calls and errors only
        if endpoint in bsel.BOOKING_ENDPOINTS or endpoint in CALENDAR_ENDPOINTS or response.status >= 400:
            try:
                body = await response.json()
            except (PlaywrightError, ValueError):
                body = None
        self.responses.append(
            ApiResponse(endpoint, response.status, body, dict(response.headers), response.url)
        )
        if endpoint in CALENDAR_ENDPOINTS:
            self._calendar_open.discard(response.url)
            self.last_calendar_event_at = time.monotonic()

    def mark(self) -> int:
        return len(self.responses)

    def since(self, mark: int, endpoint: str) -> ApiResponse | None:
        for response in self.responses[mark:]:
            if response.endpoint == endpoint:
                return response
        return None

    def detach(self) -> None:
        with contextlib.suppress(Exception):
            self.page.remove_listener("response", self._on_response)
            self.page.remove_listener("request", self._on_request)
            self.page.remove_listener("requestfailed", self._on_request_failed)


def raise_for_site(response: ApiResponse) -> None:
    """Raise what a failed API response that is not a booking outcome means (``failures``)."""
    failure = failure_for(
        response.endpoint,
        response.status,
        response.codes,
        is_object=isinstance(response.body, dict),
        headers=response.headers,
    )
    codes = ",".join(response.codes) or "an answer not understood"
    raise failure or LayoutChanged(f"{response.endpoint}: HTTP {response.status} {codes}")


def _hold_from(body: dict[str, Any], fallback: CityHold | None = None) -> CityHold:
    process_id = body.get("processId")
    auth_key = body.get("authKey")
    if process_id is None or not isinstance(auth_key, str) or not auth_key:
        if fallback is not None:
            return fallback
        raise LayoutChanged("reserve-appointment answered without processId/authKey")
    scope = body.get("scope") if isinstance(body.get("scope"), dict) else {}
    minutes = scope.get("reservationDuration") if isinstance(scope, dict) else None
    return CityHold(
        process_id=str(process_id),
        auth_key=auth_key,
        reservation_minutes=int(minutes)
        if isinstance(minutes, int) and minutes > 0
        else bsel.DEFAULT_RESERVATION_MIN,
    )


def _appointment_state(body: Any) -> AppointmentState:
    """The ThinnedProcess of GET ``appointment``: status, office, main service and count, start
    (``timestamp`` epoch seconds as a string); fields it lacks stay None."""
    if not isinstance(body, dict):
        return AppointmentState(found=True)

    def number(key: str) -> int | None:
        value = body.get(key)
        try:
            return int(value) if value is not None and not isinstance(value, bool) else None
        except (TypeError, ValueError):
            return None

    stamp = number("timestamp")
    return AppointmentState(
        found=True,
        status=str(body.get("status") or "") or None,
        office_id=number("officeId"),
        service_id=number("serviceId"),
        service_count=number("serviceCount") or 1,
        start=datetime.fromtimestamp(stamp, UTC) if stamp is not None else None,
    )


def _activation_minutes(body: Any) -> int | None:
    scope = body.get("scope") if isinstance(body, dict) else None
    value = scope.get("activationDuration") if isinstance(scope, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else None


# --- the walk ------------------------------------------------------------------------------------
class MunichBooker:
    """Books, reads and cancels appointments on the Munich site through a browser session."""

    site = sel.SITE

    def __init__(
        self,
        *,
        solver: CaptchaSolver,
        pacer: Pacer | None = None,
        step_timeout_s: float = 30.0,
        max_paging: int = 24,
        max_months: int = 8,
    ) -> None:
        self.solver = solver
        self.pacer: Pacer = pacer or NoPacer()
        self.step_timeout_s = step_timeout_s
        self.max_paging = max_paging
        """Früher/Später presses at most (one per hour group of a day)."""
        self.max_months = max_months
        """Month button presses at most (the page's horizon is six months)."""

    # ------------------------------------------------------------------------------------------
    async def book(
        self,
        session: BrowserSession,
        site_url: str,
        slot: SlotToBook,
        contact: Contact,
        *,
        on_reserved: OnReserved | None = None,
    ) -> BookingResult:
        """Walk the booking form for ``slot`` with ``contact``; ``on_reserved`` runs the moment the
        city holds the slot (so the hold is recorded before anything else can go wrong)."""
        page = session.page
        recorder = ApiRecorder(page)
        # a standby is used once: whatever happens next, the page has left its ready point
        standby = session.site_data.pop(STANDBY, None)
        if standby is not None:
            session.mark_bad("a booking walked on from its standby")
        try:
            taken = await self._open_and_pick(session, recorder, site_url, slot, standby)
            if taken is not None:
                return taken
            hold_or_taken = await self._reserve(page, recorder)
            if isinstance(hold_or_taken, SlotTaken):
                return hold_or_taken
            hold = hold_or_taken
            if on_reserved is not None:
                await on_reserved(hold)
            refused = await self._fill_contact(page, recorder, contact, hold)
            if refused is not None:
                return refused
            return await self._preconfirm(page, recorder, hold)
        finally:
            recorder.detach()
            # the walk's cost against the site's request budget (see worker.sites.base)
            session.requests_made = getattr(session, "requests_made", 0) + recorder.requests

    # --- the standby: a page kept one press away from a fresh calendar ---------------------------
    async def prepare(self, session: BrowserSession, site_url: str, standby: Standby) -> None:
        """Walk ``session`` to the ready point for ``standby``'s target and leave it there: the deep
        link, the count, the captcha passed, "Weiter" enabled. Pressing "Weiter" later mounts the
        appointment step, which loads the calendar afresh (``AppointmentSelection.vue`` onMounted);
        the calendar step itself cannot be refreshed in place (same request, no new fetch; going
        back asks for the captcha again), so the standby waits one step before it. Waiting costs
        no request; the preparation's requests are added to ``session.requests_made``."""
        recorder = ApiRecorder(session.page)
        try:
            await self._open_service_step(
                session, site_url, standby.service_id, standby.office_id, standby.service_count
            )
        finally:
            recorder.detach()
            session.requests_made = getattr(session, "requests_made", 0) + recorder.requests
        session.walked = True
        session.site_data[STANDBY] = standby
        log.info("booking_standby_ready", target=standby.key, requests=recorder.requests)

    async def _standby_ready(self, page: Page, next_button: Locator) -> bool:
        """The page still stands where ``prepare`` left it: "Weiter" shown and enabled (the page
        disables it again when the captcha expires or fails) and no error screen."""
        with contextlib.suppress(PlaywrightError):
            if not await next_button.count() or not await next_button.is_visible():
                return False
            if await next_button.get_attribute("aria-disabled") == "true":
                return False
            for text in (*FATAL_SCREENS, sel.SESSION_EXPIRED, sel.CAPTCHA_EXPIRED, sel.CAPTCHA_FAILED):
                if await page.get_by_text(text, exact=True).count():
                    return False
            return True
        return False

    async def _open_service_step(
        self, session: BrowserSession, site_url: str, service_id: int, office_id: int, count: int
    ) -> None:
        """Open the deep link, set the count, pass the captcha; returns with "Weiter" enabled."""
        page = session.page
        await page.goto(sel.deep_link(site_url, service_id, office_id), wait_until="domcontentloaded")
        next_button = page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True)
        await self._wait_visible(page, next_button.first, "the service step's Weiter button")
        await self._wait_ready_or_captcha(page, next_button.first)
        for n in range(2, count + 1):
            plus = page.locator(f'button[aria-label*="{sel.COUNTER_INCREASE.format(n=n)}"]')
            await self._click(page, plus.first, f"the counter's + button (count {n})")
        token = await self.solver.solve(page, session)
        if token is not None:
            session.set_token(token)
        await self._wait_enabled(page, next_button.first, "Weiter after the captcha")

    async def _open_and_pick(
        self,
        session: BrowserSession,
        recorder: ApiRecorder,
        site_url: str,
        slot: SlotToBook,
        standby: Standby | None = None,
    ) -> SlotTaken | None:
        page = session.page
        next_button = page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True)
        if standby is not None and standby.fits(slot) and await self._standby_ready(page, next_button.first):
            log.info("booking_from_standby", target=standby.key)
        else:
            if standby is not None:
                log.info("booking_standby_unfit", target=standby.key)
            await self._open_service_step(
                session, site_url, slot.service_id, slot.office_id, slot.service_count
            )
        step = recorder.mark()
        await self._click(page, next_button.first, "Weiter (to the appointment step)")
        await self._wait_for_calendar(page, recorder, step)
        await self._tick_office(page, recorder, slot)
        if await page.get_by_text(sel.NO_SLOTS, exact=True).count():
            if _calendar_verdict(recorder.responses[step:], slot) is _Verdict.GONE:
                return SlotTaken(sel.NO_SCOPE_CODE, "the calendar answer lists no free appointment")
            raise LayoutChanged("the page says no appointment is free, its calendar answer lists the slot")
        button = page.locator(bsel.timeslot_button(slot.office_id, slot.timestamp))
        if not await _visible(button):
            taken = await self._show_slot(page, recorder, slot, step)
            if taken is not None:
                return taken
        await self._click(page, button.first, "the slot's time button", since=recorder.shown_at)
        await self._wait_visible(
            page, page.get_by_text(bsel.SELECTED_APPOINTMENT, exact=True).first, "Ausgewählter Termin"
        )
        return None

    async def _wait_for_calendar(self, page: Page, recorder: ApiRecorder, mark: int) -> None:
        """Wait until the appointment step shows times or the no-slots callout and the page has no
        calendar request in flight; an answer the page cannot have understood is a layout change."""
        deadline = time.monotonic() + self.step_timeout_s
        shown_at: float | None = None
        while True:
            await self._check_fatal(page, recorder, mark)
            _check_calendar_answers(recorder.responses[mark:])
            shown = await _visible(page.locator(sel.TIMESLOT_BUTTON)) or await _visible(
                page.get_by_text(sel.NO_SLOTS, exact=True)
            )
            if shown and shown_at is None:
                shown_at = time.monotonic()
            if shown and await self._calendar_idle(recorder):
                recorder.shown_at = shown_at
                return
            if time.monotonic() > deadline:
                raise LayoutChanged("the appointment step showed neither time slots nor the no-slots callout")
            await asyncio.sleep(POLL_S)

    async def _calendar_idle(self, recorder: ApiRecorder) -> bool:
        """No calendar request in flight, and none sent for a short while (the page follows one
        answer with another request, e.g. for the day it then selects)."""
        if recorder.calendar_pending():
            return False
        return time.monotonic() - recorder.last_calendar_event_at >= QUIET_S

    async def _tick_office(self, page: Page, recorder: ApiRecorder, slot: SlotToBook) -> None:
        """With several offices the page lists a checkbox per office; the slot's must be ticked
        (the deep link ticks it; a changed page may not). Ticking reloads the calendar."""
        checkbox = page.locator(sel.provider_checkbox(slot.office_id))
        if not await checkbox.count():
            if await page.locator(bsel.ANY_PROVIDER_CHECKBOX).count():
                raise LayoutChanged(
                    f"the page offers offices to tick, but not the slot's office {slot.office_id}"
                )
            return
        if await checkbox.first.is_checked():
            return
        mark = recorder.mark()
        await self.pacer.think()
        await checkbox.first.check()
        await self._wait_answer(
            page, recorder, mark, lambda r: slot.office_id in _offices_of(r), "the office"
        )
        await self._wait_for_calendar(page, recorder, mark)

    async def _show_slot(
        self, page: Page, recorder: ApiRecorder, slot: SlotToBook, step: int
    ) -> SlotTaken | None:
        """Bring the slot's time button on screen: turn the calendar to the slot's month with the
        month buttons, pick the day tile, wait for the page's answer for that day, page the times
        with Früher/Später. Returns SlotTaken only when the site's answer says the slot is gone;
        what the booker cannot find or understand on the page is LayoutChanged."""
        day = slot.start.astimezone(SITE_TIMEZONE).date()
        taken = await self._turn_to_month(page, recorder, slot, day, step)
        if taken is not None:
            return taken
        tile = await self._day_tile(page, day)
        if await tile.get_attribute("aria-disabled") == "true":
            if _calendar_verdict(recorder.responses[step:], slot) is _Verdict.GONE:
                return SlotTaken("notInCalendar", "the calendar answer does not list the slot's day")
            raise LayoutChanged(f"the day tile of {day} is disabled while the calendar answer lists the day")
        if "selected" not in (await tile.get_attribute("class") or "").split():
            mark = recorder.mark()
            await self._click(page, tile, f"the day tile of {day}", since=recorder.shown_at)
            await self._wait_answer(page, recorder, mark, lambda r: _covers(r, day), f"the answer for {day}")
            await self._wait_for_calendar(page, recorder, mark)
        else:
            await self._wait_answer(page, recorder, step, lambda r: _covers(r, day), f"the answer for {day}")
        verdict = _calendar_verdict(recorder.responses[step:], slot)
        if verdict is _Verdict.GONE:
            return SlotTaken("notInCalendar", "the day's calendar answer does not list the slot")
        if verdict is not _Verdict.LISTED:
            raise LayoutChanged(f"no calendar answer with the times of {day} for office {slot.office_id}")
        await self._page_to_slot(page, slot, day)
        return None

    async def _turn_to_month(
        self, page: Page, recorder: ApiRecorder, slot: SlotToBook, day: date, step: int
    ) -> SlotTaken | None:
        """Press "Nächster/Vorheriger Monat" until the caption shows the slot's month (the page
        jumps to the next bookable date when its answer names one, else turns one month)."""
        target = (day.year, day.month)
        for _ in range(self.max_months):
            shown = await self._shown_month(page)
            if shown == target:
                return None
            forward = shown < target
            nav = page.locator(bsel.NEXT_MONTH_BUTTON if forward else bsel.PREV_MONTH_BUTTON)
            if not await nav.count():
                raise LayoutChanged("the calendar has no month button")
            if await nav.first.get_attribute("aria-disabled") == "true":
                break
            mark = recorder.mark()
            caption = await page.locator(bsel.CALENDAR_CAPTION).first.inner_text()
            await self._click(page, nav.first, "Nächster Monat" if forward else "Vorheriger Monat")
            deadline = time.monotonic() + self.step_timeout_s
            while True:
                await self._check_fatal(page, recorder, mark)
                _check_calendar_answers(recorder.responses[mark:])
                now_caption = await page.locator(bsel.CALENDAR_CAPTION).first.inner_text()
                if now_caption != caption and await self._calendar_idle(recorder):
                    break
                if time.monotonic() > deadline:
                    raise LayoutChanged("the month button did not turn the calendar")
                await asyncio.sleep(POLL_S)
        if await self._shown_month(page) == target:
            return None
        if _calendar_verdict(recorder.responses[step:], slot) is _Verdict.GONE:
            return SlotTaken("notInCalendar", "the calendar answer has no bookable day in the slot's month")
        raise LayoutChanged(f"the calendar could not be turned to {day:%Y-%m}")

    async def _shown_month(self, page: Page) -> tuple[int, int]:
        caption = page.locator(bsel.CALENDAR_CAPTION)
        if not await caption.count():
            raise LayoutChanged("the calendar has no month caption")
        text = (await caption.first.inner_text()).strip()
        month = bsel.parse_month_caption(text)
        if month is None:
            raise LayoutChanged(f"the calendar caption {text[:40]!r} names no month")
        return month

    async def _day_tile(self, page: Page, day: date) -> Locator:
        """The shown month's day tiles (role=button, the bare day number; days of other months are
        not rendered): exactly one per day of the month, the day's at its place."""
        tiles = page.locator(bsel.CALENDAR_DAY)
        count = await tiles.count()
        expected = calendar.monthrange(day.year, day.month)[1]
        if count != expected:
            raise LayoutChanged(f"the calendar shows {count} day tiles for {day:%Y-%m}, not {expected}")
        tile = tiles.nth(day.day - 1)
        text = (await tile.inner_text()).strip()
        label = await tile.get_attribute("aria-label")
        if text != str(day.day) or label != bsel.DAY_TILE_LABEL.format(day=day.day):
            raise LayoutChanged(f"the day tile of {day} reads {text[:20]!r} / {str(label)[:40]!r}")
        return tile

    async def _page_to_slot(self, page: Page, slot: SlotToBook, day: date) -> None:
        """The answer lists the slot: wait for the day's times, then page with Früher/Später (shown
        only when several offices offer the service) until the slot's button shows."""
        button = page.locator(bsel.timeslot_button(slot.office_id, slot.timestamp))
        deadline = time.monotonic() + self.step_timeout_s
        pages = 0
        while True:
            if await _visible(button):
                return
            shown = await _shown_times(page)
            if shown and all(_berlin_day(ts) == day for ts in shown):
                forward = max(shown) < slot.timestamp
                pager = page.locator(bsel.LATER_BUTTON if forward else bsel.EARLIER_BUTTON)
                usable = await pager.count() and await pager.first.get_attribute("aria-disabled") != "true"
                if not usable or pages >= self.max_paging:
                    raise LayoutChanged(
                        "the calendar answer lists the slot, the page does not show its button"
                    )
                pages += 1
                await self._click(page, pager.first, "Später" if forward else "Früher")
                await self._wait_times_change(page, shown, button)
                continue
            if time.monotonic() > deadline:
                raise LayoutChanged(f"the times of {day} did not appear")
            await asyncio.sleep(POLL_S)

    async def _wait_times_change(self, page: Page, before: set[int], button: Locator) -> None:
        deadline = time.monotonic() + self.step_timeout_s
        while time.monotonic() < deadline:
            if await _visible(button) or await _shown_times(page) != before:
                return
            await asyncio.sleep(POLL_S)
        raise LayoutChanged("Früher/Später did not change the times shown")

    async def _wait_answer(
        self,
        page: Page,
        recorder: ApiRecorder,
        mark: int,
        wanted: Callable[[ApiResponse], bool],
        what: str,
    ) -> ApiResponse:
        """The first calendar answer since ``mark`` that ``wanted`` accepts. No such request sent
        in time: the page did not ask (LayoutChanged); sent but unanswered: CheckTimeout."""
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            await self._check_fatal(page, recorder, mark)
            answers = [r for r in recorder.responses[mark:] if r.endpoint in CALENDAR_ENDPOINTS]
            _check_calendar_answers(answers)
            for answer in answers:
                if wanted(answer):
                    return answer
            if time.monotonic() > deadline:
                if recorder.calendar_pending():
                    raise CheckTimeout(f"{what}: the calendar request got no answer in time")
                raise LayoutChanged(f"{what}: the page sent no calendar request for it")
            await asyncio.sleep(POLL_S)

    async def _reserve(self, page: Page, recorder: ApiRecorder) -> CityHold | SlotTaken:
        mark = recorder.mark()
        await self._click(
            page, page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True).last, "Weiter (reserve)"
        )
        response = await self._wait_response(page, recorder, mark, bsel.RESERVE_ENDPOINT)
        if response.ok:
            return _hold_from(response.body)
        if set(response.codes) & bsel.SLOT_TAKEN_CODES:
            return SlotTaken(sorted(set(response.codes) & bsel.SLOT_TAKEN_CODES)[0], response.message)
        raise_for_site(response)
        raise AssertionError("unreachable")

    async def _fill_contact(
        self, page: Page, recorder: ApiRecorder, contact: Contact, hold: CityHold
    ) -> Refused | HoldLost | None:
        first = page.locator(bsel.FIRST_NAME_INPUT)
        await self._wait_visible(page, first.first, "the contact form")
        await self._type(page, first.first, contact.first_name)
        await self._type(page, page.locator(bsel.LAST_NAME_INPUT).first, contact.last_name)
        await self._type(page, page.locator(bsel.EMAIL_INPUT).first, contact.email)
        phone = page.locator(bsel.PHONE_INPUT)
        if await phone.count() and contact.phone:
            await self._type(page, phone.first, contact.phone)
        for key, selector in (
            ("customTextfield", bsel.CUSTOM1_TEXTAREA),
            ("customTextfield2", bsel.CUSTOM2_TEXTAREA),
        ):
            area = page.locator(selector)
            if not await area.count():
                continue
            label = await self._label_of(page, selector.lstrip("#"))
            value = contact.custom_value(key, label)
            if value:
                await self._type(page, area.first, value)
        mark = recorder.mark()
        await self._click(
            page, page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True).last, "Weiter (contact)"
        )
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            response = recorder.since(mark, bsel.UPDATE_ENDPOINT)
            if response is not None:
                break
            invalid = await self._invalid_fields(page)
            if invalid:
                field_name, reason = invalid[0]
                others = "; ".join(f"{f}: {r}" for f, r in invalid[1:])
                return Refused(
                    field_name, "pageValidation", reason + (f" (also {others})" if others else ""), hold
                )
            await self._check_fatal(page, recorder, mark)
            if time.monotonic() > deadline:
                raise CheckTimeout("update-appointment: no answer and no field error in time")
            await asyncio.sleep(POLL_S)
        if response.ok:
            return None
        codes = response.codes
        for code in codes:
            if code in bsel.FIELD_OF_ERROR_CODE:
                return Refused(bsel.FIELD_OF_ERROR_CODE[code], code, response.message or code, hold)
        if set(codes) & bsel.RESERVATION_GONE_CODES:
            return HoldLost(hold, codes[0])
        raise_for_site(response)
        raise AssertionError("unreachable")

    async def _preconfirm(self, page: Page, recorder: ApiRecorder, hold: CityHold) -> Preconfirmed | HoldLost:
        await self._wait_visible(page, page.locator(bsel.SUMMARY).first, "the overview")
        await self.pacer.think()
        await page.locator(bsel.TERMS_CHECKBOX).first.check()
        video = page.locator(bsel.VIDEO_CHECKBOX)
        if await video.count():
            await video.first.check()
        mark = recorder.mark()
        book = page.get_by_role("button", name=bsel.BOOK_BUTTON, exact=True)
        await self._wait_enabled(page, book.first, "Termin reservieren")
        await self._click(page, book.first, "Termin reservieren")
        response = await self._wait_response(page, recorder, mark, bsel.PRECONFIRM_ENDPOINT)
        if not response.ok:
            if set(response.codes) & bsel.RESERVATION_GONE_CODES:
                return HoldLost(hold, response.codes[0])
            raise_for_site(response)
        status = response.body.get("status")
        if status != bsel.STATUS_PRECONFIRMED:
            raise LayoutChanged(f"preconfirm-appointment answered status {status!r}")
        minutes = _activation_minutes(response.body)
        callout = page.get_by_text(bsel.ACTIVATE_CALLOUT, exact=True)
        page_confirmed = True
        try:
            await callout.first.wait_for(state="visible", timeout=self.step_timeout_s * 1000)
        except PlaywrightError:
            page_confirmed = False
            log.warning("booking_callout_missing", process=hold.process_id)
        if minutes is None and page_confirmed:
            text = await page.get_by_text(re.compile(bsel.ACTIVATION_MINUTES_TEXT)).first.inner_text()
            found = re.search(bsel.ACTIVATION_MINUTES_TEXT, text)
            minutes = int(found.group(1)) if found else None
        return Preconfirmed(
            hold=_hold_from(response.body, hold),
            activation_minutes=minutes or bsel.DEFAULT_ACTIVATION_MIN,
            page_confirmed=page_confirmed,
        )

    # --- the e-mail links ------------------------------------------------------------------------
    async def read_appointment(
        self, page: Page, site_url: str, process_id: str, auth_key: str
    ) -> AppointmentState:
        """Open the manage link and read the page's own ``appointment`` response."""
        recorder = ApiRecorder(page)
        try:
            mark = recorder.mark()
            await page.goto(bsel.manage_link(site_url, process_id, auth_key), wait_until="domcontentloaded")
            response = await self._wait_response(page, recorder, mark, bsel.APPOINTMENT_ENDPOINT)
        finally:
            recorder.detach()
        if response.ok:
            return _appointment_state(response.body)
        if bsel.NOT_FOUND_CODE in response.codes or response.status == 404:
            return AppointmentState(found=False, code=bsel.NOT_FOUND_CODE)
        for code in (bsel.AUTH_KEY_MISMATCH_CODE, *bsel.INVALID_CREDENTIAL_CODES):
            if code in response.codes:
                return AppointmentState(found=False, code=code)
        raise_for_site(response)
        raise AssertionError("unreachable")

    async def cancel(self, page: Page, site_url: str, process_id: str, auth_key: str) -> CancelResult:
        """Cancel through the manage link's "Termin absagen" dialog (spec §4.2, §4.3)."""
        recorder = ApiRecorder(page)
        try:
            mark = recorder.mark()
            await page.goto(
                bsel.manage_link(site_url, process_id, auth_key, "cancel"), wait_until="domcontentloaded"
            )
            read = await self._wait_response(page, recorder, mark, bsel.APPOINTMENT_ENDPOINT)
            if not read.ok:
                if bsel.NOT_FOUND_CODE in read.codes or read.status == 404:
                    return CancelResult(cancelled=False, already_gone=True, code=bsel.NOT_FOUND_CODE)
                raise_for_site(read)
            confirm = page.get_by_role("button", name=bsel.CANCEL_CONFIRM_BUTTON, exact=True)
            try:
                await confirm.first.wait_for(state="visible", timeout=3_000)
            except PlaywrightError:
                await self._click(
                    page,
                    page.get_by_role("button", name=bsel.CANCEL_BUTTON, exact=True).first,
                    "Termin absagen",
                )
            mark = recorder.mark()
            await self._click(page, confirm.first, "Absagen")
            response = await self._wait_response(page, recorder, mark, bsel.CANCEL_ENDPOINT)
        finally:
            recorder.detach()
        if response.ok:
            return CancelResult(cancelled=True)
        if bsel.NOT_FOUND_CODE in response.codes:
            return CancelResult(cancelled=False, already_gone=True, code=bsel.NOT_FOUND_CODE)
        if bsel.CANNOT_CANCEL_CODE in response.codes:
            return CancelResult(cancelled=False, code=bsel.CANNOT_CANCEL_CODE)
        raise_for_site(response)
        raise AssertionError("unreachable")

    async def resume(self, page: Page, site_url: str, hold: CityHold, contact: Contact) -> BookingResult:
        """Finish a reservation an interrupted walk left behind: the page's own update and
        preconfirm requests, sent from the page (same origin, same headers) after reading it."""
        recorder = ApiRecorder(page)
        try:
            mark = recorder.mark()
            await page.goto(
                bsel.manage_link(site_url, hold.process_id, hold.auth_key), wait_until="domcontentloaded"
            )
            read = await self._wait_response(page, recorder, mark, bsel.APPOINTMENT_ENDPOINT)
            api_base = recorder.api_base
        finally:
            recorder.detach()
        if not read.ok:
            if bsel.NOT_FOUND_CODE in read.codes or read.status == 404:
                return HoldLost(hold, bsel.NOT_FOUND_CODE)
            raise_for_site(read)
        status = read.body.get("status")
        if status == bsel.STATUS_PRECONFIRMED:
            return Preconfirmed(hold, _activation_minutes(read.body) or bsel.DEFAULT_ACTIVATION_MIN, False)
        if status != bsel.STATUS_RESERVED or api_base is None:
            return HoldLost(hold, f"status:{status}")
        scope = read.body.get("scope") if isinstance(read.body.get("scope"), dict) else {}
        custom1 = contact.custom_value("customTextfield", scope.get("customTextfieldLabel"))
        custom2 = contact.custom_value("customTextfield2", scope.get("customTextfield2Label"))
        body = {
            "processId": int(hold.process_id),
            "authKey": hold.auth_key,
            "scope": scope,
            "familyName": f"{contact.first_name.strip()} {contact.last_name.strip()}",
            "email": contact.email.strip(),
            "telephone": contact.phone if scope.get("telephoneActivated") and contact.phone else None,
            "customTextfield": custom1 if scope.get("customTextfieldActivated") else None,
            "customTextfield2": custom2 if scope.get("customTextfield2Activated") else None,
        }
        update = await _post_from_page(page, api_base, bsel.UPDATE_ENDPOINT, body)
        if not update.ok:
            for code in update.codes:
                if code in bsel.FIELD_OF_ERROR_CODE:
                    return Refused(bsel.FIELD_OF_ERROR_CODE[code], code, update.message or code, hold)
            if set(update.codes) & bsel.RESERVATION_GONE_CODES:
                return HoldLost(hold, update.codes[0])
            raise_for_site(update)
        done = await _post_from_page(
            page,
            api_base,
            bsel.PRECONFIRM_ENDPOINT,
            {"processId": int(hold.process_id), "authKey": hold.auth_key, "scope": scope},
        )
        if not done.ok:
            if set(done.codes) & bsel.RESERVATION_GONE_CODES:
                return HoldLost(hold, done.codes[0])
            raise_for_site(done)
        return Preconfirmed(hold, _activation_minutes(done.body) or bsel.DEFAULT_ACTIVATION_MIN, False)

    # --- helpers ---------------------------------------------------------------------------------
    async def _check_fatal(self, page: Page, recorder: ApiRecorder, mark: int) -> None:
        for response in recorder.responses[mark:]:
            if response.status == 429 or response.status >= 500 or sel.RATE_LIMIT_CODE in response.codes:
                raise_for_site(response)
        for text in FATAL_SCREENS:
            if await page.get_by_text(text, exact=True).count():
                if text == sel.RATE_LIMIT_SCREEN:
                    raise RateLimited("the page shows its rate-limit screen")
                if text == sel.INVALID_LINK_SCREEN:
                    raise LayoutChanged("the page refused the deep link")
                raise SiteUnavailable(f"the page shows: {text}")
        if await page.get_by_text(sel.SESSION_EXPIRED, exact=True).count():
            raise CaptchaRequired("the page says the session expired")

    async def _wait_response(
        self, page: Page, recorder: ApiRecorder, mark: int, endpoint: str
    ) -> ApiResponse:
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            response = recorder.since(mark, endpoint)
            if response is not None:
                return response
            await self._check_fatal(page, recorder, mark)
            if time.monotonic() > deadline:
                raise CheckTimeout(f"{endpoint}: the page sent no request or got no answer in time")
            await asyncio.sleep(POLL_S)

    async def _wait_visible(self, page: Page, locator: Locator, what: str) -> None:
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            with contextlib.suppress(PlaywrightError):
                if await locator.is_visible():
                    return
            await self._check_fatal(page, _NO_RECORDER, 0)
            if time.monotonic() > deadline:
                raise LayoutChanged(f"{what} did not appear")
            await asyncio.sleep(POLL_S)

    async def _wait_ready_or_captcha(self, page: Page, next_button: Locator) -> None:
        """Wait until "Weiter" is enabled or the captcha widget shows its label: the widget mounts
        a moment after the button, and a solver asked before that would see a widget without a label
        (or none at all) and give up."""
        label = page.get_by_text(sel.CAPTCHA_LABEL, exact=True).first
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            with contextlib.suppress(PlaywrightError):
                if await label.is_visible() or await next_button.get_attribute("aria-disabled") != "true":
                    return
            await self._check_fatal(page, _NO_RECORDER, 0)
            if time.monotonic() > deadline:
                raise CaptchaRequired("Weiter stayed disabled and no captcha widget appeared")
            await asyncio.sleep(POLL_S)

    async def _wait_enabled(self, page: Page, locator: Locator, what: str) -> None:
        await self._wait_visible(page, locator, what)
        deadline = time.monotonic() + self.step_timeout_s
        while await locator.get_attribute("aria-disabled") == "true":
            if time.monotonic() > deadline:
                raise CaptchaRequired(f"{what} stayed disabled")
            await asyncio.sleep(POLL_S)

    async def _click(self, page: Page, locator: Locator, what: str, *, since: float | None = None) -> None:
        """Think, move the mouse onto ``locator`` and click; ``since`` (monotonic s): when what the
        click reacts to appeared, so time spent waiting for the page to settle counts as reading."""
        await self._wait_visible(page, locator, what)
        await self.pacer.think(elapsed_s=time.monotonic() - since if since is not None else 0.0)
        await self.pacer.move_to(page, locator)
        await locator.click()

    async def _type(self, page: Page, locator: Locator, text: str) -> None:
        await self.pacer.think()
        await locator.fill("")
        await self.pacer.type_text(locator, text)

    async def _label_of(self, page: Page, element_id: str) -> str | None:
        label = page.locator(f'label[for="{element_id}"]')
        if not await label.count():
            return None
        return (await label.first.inner_text()).replace("*", "").strip() or None

    async def _invalid_fields(self, page: Page) -> list[tuple[str, str]]:
        """(profile field, the page's message) for each field the page marked invalid."""
        invalid = page.locator(bsel.INVALID_FIELD)
        found: list[tuple[str, str]] = []
        for i in range(await invalid.count()):
            group = invalid.nth(i)
            control = group.locator(bsel.FIELD_CONTROL)
            element_id = (await control.first.get_attribute("id") or "") if await control.count() else ""
            name = bsel.FIELD_OF_ELEMENT_ID.get(element_id, element_id or "unknown")
            message = ""
            error = group.locator(bsel.FIELD_ERROR_MESSAGE)
            if await error.count():
                message = (await error.first.inner_text()).strip()
            if name.startswith("customTextfield"):
                label = await self._label_of(page, element_id)
                if label:
                    name = f"{name} ({label})"
            found.append((name, message or "refused by the page"))
        return found


# --- what the page's calendar answers say about the slot -----------------------------------------
class _Verdict(enum.Enum):
    LISTED = "listed"
    """An answer with the day's times lists the slot."""
    BOOKABLE = "bookable"
    """The day is bookable for the office; its times were not loaded yet."""
    GONE = "gone"
    """The site's answer says the slot is not free (day not bookable, or its times lack it)."""
    UNKNOWN = "unknown"


def _berlin_day(timestamp: int) -> date:
    return datetime.fromtimestamp(timestamp, SITE_TIMEZONE).date()


def _offices_of(answer: ApiResponse) -> set[int]:
    """The offices a calendar request asked for (``officeIds``, legacy ``officeId``)."""
    query = answer.query
    raw = query.get(sel.Q_OFFICES) or query.get(sel.QL_OFFICE) or ""
    return {int(part) for part in raw.split(",") if part.strip().isdigit()}


def _window(answer: ApiResponse) -> tuple[str, str] | None:
    """The free-slot window an answer loaded times for (its own fields, else the request's)."""
    if answer.endpoint == sel.LEGACY_APPOINTMENTS_ENDPOINT:
        day = answer.query.get(sel.QL_DATE)
        return (day, day) if day else None
    if answer.endpoint != sel.CALENDAR_ENDPOINT:
        return None
    body = answer.body if isinstance(answer.body, dict) else {}
    start = body.get(sel.A_SLOTS_START) or answer.query.get(sel.Q_SLOTS_START)
    end = body.get(sel.A_SLOTS_END) or answer.query.get(sel.Q_SLOTS_END)
    return (str(start), str(end)) if start and end else None


def _covers(answer: ApiResponse, day: date) -> bool:
    window = _window(answer)
    return window is not None and window[0] <= day.isoformat() <= window[1]


def _check_calendar_answers(answers: Iterable[ApiResponse]) -> None:
    """A calendar answer the booker (and the page) cannot read is a layout change; the site's own
    "nothing free" answers are outcomes, other errors map through ``failures``."""
    for answer in answers:
        if answer.endpoint not in CALENDAR_ENDPOINTS:
            continue
        if answer.status >= 400:
            if set(answer.codes) & bsel.SLOT_TAKEN_CODES:
                continue
            raise_for_site(answer)
        body = answer.body
        if not isinstance(body, dict):
            raise_for_site(answer)
        if answer.endpoint == sel.LEGACY_APPOINTMENTS_ENDPOINT:
            offices = body.get(sel.A_OFFICES)
            if not isinstance(offices, list) or not all(
                isinstance(o, dict) and sel.A_OFFICE_ID in o and isinstance(o.get(sel.A_APPOINTMENTS), list)
                for o in offices
            ):
                raise LayoutChanged(f"{answer.endpoint} answered without offices/appointments")
            continue
        days = body.get(sel.A_DAYS)
        date_field = sel.A_DATE if answer.endpoint == sel.CALENDAR_ENDPOINT else sel.AL_DATE
        if not isinstance(days, list) or not all(
            isinstance(d, dict) and date_field in d and sel.A_PROVIDER_IDS in d for d in days
        ):
            raise LayoutChanged(
                f"{answer.endpoint} answered without {sel.A_DAYS} ({date_field}, providerIDs)"
            )
        for d in days:
            offices = d.get(sel.A_OFFICES, [])
            if not isinstance(offices, list) or not all(
                isinstance(o, dict)
                and sel.A_OFFICE_ID in o
                and isinstance(o.get(sel.A_APPOINTMENTS, []), list)
                for o in offices
            ):
                raise LayoutChanged(f"{answer.endpoint} answered a day without offices/appointments")


def _calendar_verdict(answers: Iterable[ApiResponse], slot: SlotToBook) -> _Verdict:
    """What the page's calendar answers (in order, the latest deciding) say about ``slot``."""
    day = _berlin_day(slot.timestamp)
    iso = day.isoformat()
    month = iso[:7]
    verdict = _Verdict.UNKNOWN
    for answer in answers:
        if answer.endpoint not in CALENDAR_ENDPOINTS or slot.office_id not in _offices_of(answer):
            continue
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status >= 400:  # the site's own "nothing free" (noAppointmentForThisScope ...)
            if answer.endpoint == sel.LEGACY_APPOINTMENTS_ENDPOINT and not _covers(answer, day):
                continue
            verdict = _Verdict.GONE
            continue
        if answer.endpoint == sel.LEGACY_APPOINTMENTS_ENDPOINT:
            if _covers(answer, day):
                listed = any(
                    str(o.get(sel.A_OFFICE_ID)) == str(slot.office_id)
                    and slot.timestamp in (o.get(sel.A_APPOINTMENTS) or [])
                    for o in body.get(sel.A_OFFICES, [])
                )
                verdict = _Verdict.LISTED if listed else _Verdict.GONE
            continue
        date_field = sel.A_DATE if answer.endpoint == sel.CALENDAR_ENDPOINT else sel.AL_DATE
        days = {str(d.get(date_field)): d for d in body.get(sel.A_DAYS, []) if isinstance(d, dict)}
        entry = days.get(iso)
        providers = str(entry.get(sel.A_PROVIDER_IDS, "")).split(",") if entry else []
        if answer.endpoint == sel.LEGACY_DAYS_ENDPOINT:  # the whole range, no times
            verdict = _Verdict.BOOKABLE if str(slot.office_id) in providers else _Verdict.GONE
            continue
        window = _window(answer)
        if window is not None and window[0] <= iso <= window[1]:
            listed = entry is not None and any(
                str(o.get(sel.A_OFFICE_ID)) == str(slot.office_id)
                and slot.timestamp in (o.get(sel.A_APPOINTMENTS) or [])
                for o in entry.get(sel.A_OFFICES, [])
            )
            verdict = _Verdict.LISTED if listed else _Verdict.GONE
            continue
        painted = {d[:7] for d in days} | ({window[0][:7], window[1][:7]} if window else set())
        if month in painted:
            if str(slot.office_id) not in providers:
                verdict = _Verdict.GONE
            elif verdict is not _Verdict.LISTED:
                verdict = _Verdict.BOOKABLE
            continue
        # a month outside the painted one: the nearest bookable days around it (spec §2.4a rule 5)
        if painted and month > max(painted):
            nxt = body.get(sel.A_NEXT_BOOKABLE)
            if nxt is None or str(nxt) > iso:
                verdict = _Verdict.GONE
        elif painted and month < min(painted):
            prev = body.get(sel.A_PREV_BOOKABLE)
            if prev is None or str(prev) < iso:
                verdict = _Verdict.GONE
    return verdict


async def _visible(locator: Locator) -> bool:
    with contextlib.suppress(PlaywrightError):
        return await locator.first.is_visible()
    return False


async def _shown_times(page: Page) -> set[int]:
    """Epochs of the time-slot buttons on screen (``#provider-<office>-timeslot-<epoch>``)."""
    ids: list[str] = await page.locator(sel.TIMESLOT_BUTTON).evaluate_all(
        "els => els.filter(e => e.offsetParent !== null).map(e => e.id)"
    )
    found: set[int] = set()
    for element_id in ids:
        match = sel.TIMESLOT_ID.match(element_id or "")
        if match is None:
            raise LayoutChanged(f"a time-slot button has an unexpected id {element_id!r}"[:200])
        found.add(int(match.group(2)))
    return found


class _NoRecorder:
    responses: list[ApiResponse] = []  # noqa: RUF012  (read-only, always empty)


_NO_RECORDER: Any = _NoRecorder()


async def _post_from_page(page: Page, api_base: str, endpoint: str, body: dict[str, Any]) -> ApiResponse:
    """POST JSON to ``<api_base>/<endpoint>/`` with the page's own fetch (as its API client does)."""
    url = f"{api_base}/{endpoint}/"
    result = await page.evaluate(
        """async ([url, body]) => {
            const resp = await fetch(url, {method: "POST", body: JSON.stringify(body),
                headers: {"Content-Type": "application/json", Accept: "application/json"}});
            let data = null;
            try { data = await resp.json(); } catch (e) { data = null; }
            return {status: resp.status, body: data};
        }""",
        [url, body],
    )
    return ApiResponse(endpoint, int(result["status"]), result["body"], {})


__all__ = [
    "ApiRecorder",
    "ApiResponse",
    "AppointmentState",
    "BookingResult",
    "CancelResult",
    "CityHold",
    "Contact",
    "HoldLost",
    "MunichBooker",
    "OnReserved",
    "Preconfirmed",
    "Refused",
    "SlotTaken",
    "SlotToBook",
    "raise_for_site",
]
