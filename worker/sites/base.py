"""What a site adapter does, and a fake one for tests of everything around it.

An adapter knows one city's pages and API; the pool (``worker.browser``) owns the browsers and the
policy of when a session is walked afresh; ``worker.checks.run_check`` puts the two together.

A session moves through two kinds of checks:

- ``walk``: a fresh context does what a person does (deep link, captcha, calendar), reads the slots
  from the responses the page itself fetched and cross-checks them against the page. It leaves the
  page on the calendar with a valid captcha token and the page's own calendar request captured as a
  ``RequestTemplate`` in ``session.templates``. The booking adapter starts from exactly this state.
- ``warm_check``: repeats that captured request from inside the open page (milliseconds, one site
  request), as the page does when a person moves through the calendar.

Both return an ``Observation`` or raise a ``CheckFailure`` subclass; both count the site requests
they cause in ``session.requests_made`` (the check's cost against the site's budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

from shared.domain import CaptchaRequired, CheckFailure, Observation, TargetKey, utcnow
from worker.sites.booking import (
    STANDBY_DATA_KEY,
    AppointmentState,
    BookingResult,
    CancelResult,
    CityHold,
    Contact,
    OnReserved,
    Preconfirmed,
    SlotToBook,
    Standby,
)

if TYPE_CHECKING:
    from playwright.async_api import Page

    from worker.browser._session import BrowserSession


@dataclass(frozen=True)
class SiteQuota:
    """What the site's last successful answer said about our rate limit (its X-RateLimit headers):
    the farm follows it when it is stricter than the settings (``SiteBudget.observe``)."""

    limit: int
    """Requests the site allows without a 60-second pause."""
    counted: int
    """Requests the site has counted since our last such pause."""


class SiteAdapter(Protocol):
    """Reads one site's free slots through a browser session."""

    site: str
    """The site name targets carry (``TargetKey.site``)."""
    quota: SiteQuota | None
    """The rate limit as the site's last answer stated it (None: the site states none)."""

    async def walk(
        self, session: BrowserSession, key: TargetKey, site_url: str, days: frozenset[date] | None = None
    ) -> Observation:
        """The full walk in ``session`` (a fresh context), then one round for ``days``; marks
        ``session.walked`` on success."""
        ...

    async def warm_check(
        self, session: BrowserSession, key: TargetKey, days: frozenset[date] | None = None
    ) -> Observation:
        """One round of checks on a walked session: the page's own calendar requests, for the days
        in ``days`` that someone wants (None: the whole horizon)."""
        ...


class FakeAdapter:
    """Scripted results without a browser: each call pops the next result (an ``Observation``, a
    ``CheckFailure`` to raise, or a callable building either from the key); when the script is empty
    it returns an empty observation. Counts calls and charges ``requests_per_walk`` /
    ``requests_per_check`` site requests. Offices in ``captcha_offices`` behave like the city's: a
    walk there leaves a token in the session, a warm check there without one is ``CaptchaRequired``."""

    site = "munich"
    quota: SiteQuota | None = None

    def __init__(
        self,
        results: list[Observation | CheckFailure | Callable[[TargetKey], Observation]] | None = None,
        *,
        site: str = "munich",
        requests_per_walk: int = 3,
        requests_per_check: int = 1,
        captcha_offices: frozenset[int] = frozenset(),
    ) -> None:
        self.site = site
        self.captcha_offices = captcha_offices
        self.results = list(results or [])
        self.requests_per_walk = requests_per_walk
        self.requests_per_check = requests_per_check
        self.walks = 0
        self.warm_checks = 0
        self.days_asked: list[frozenset[date] | None] = []
        """The ``days`` of every call, in order."""

    def _next(self, key: TargetKey) -> Observation:
        if not self.results:
            return Observation(
                key.site, key.service_id, key.service_count, key.office_ids, observed_at=utcnow()
            )
        result = self.results.pop(0)
        if isinstance(result, CheckFailure):
            raise result
        if isinstance(result, Observation):
            return result
        return result(key)

    async def walk(
        self, session: BrowserSession, key: TargetKey, site_url: str, days: frozenset[date] | None = None
    ) -> Observation:
        self.walks += 1
        self.days_asked.append(days)
        session.requests_made += self.requests_per_walk
        if self.captcha_offices & set(key.office_ids):
            session.set_token("fake-captcha-token")
        observation = self._next(key)
        session.walked = True
        return observation

    async def warm_check(
        self, session: BrowserSession, key: TargetKey, days: frozenset[date] | None = None
    ) -> Observation:
        self.warm_checks += 1
        self.days_asked.append(days)
        session.requests_made += self.requests_per_check
        if session.token is None and self.captcha_offices & set(key.office_ids):
            raise CaptchaRequired("captchaMissing")
        return self._next(key)


class SiteBooker(Protocol):
    """Books one slot on one site in the browser, as a person does, and reads or cancels it later
    from the links the city e-mails. Outcomes are values (``worker.sites.booking``); site trouble
    raises a ``CheckFailure``."""

    async def book(
        self,
        session: BrowserSession,
        site_url: str,
        slot: SlotToBook,
        contact: Contact,
        *,
        on_reserved: OnReserved | None = None,
    ) -> BookingResult:
        """Walk to ``slot``, reserve it (``on_reserved`` hears of the hold at once), fill in
        ``contact`` and preconfirm. A session ``prepare``d for the slot's target starts from where
        the preparation left it."""
        ...

    async def prepare(self, session: BrowserSession, site_url: str, standby: Standby) -> None:
        """Walk ``session`` to the point from which a booking of ``standby``'s target starts
        (``worker.standby``), and leave it there."""
        ...

    async def read_appointment(
        self, page: Page, site_url: str, process_id: str, auth_key: str
    ) -> AppointmentState:
        """What the site says about a process now."""
        ...

    async def cancel(self, page: Page, site_url: str, process_id: str, auth_key: str) -> CancelResult:
        """Cancel a process at the city, so the slot goes back to others."""
        ...

    async def resume(self, page: Page, site_url: str, hold: CityHold, contact: Contact) -> BookingResult:
        """Finish a reservation an interrupted walk left behind."""
        ...


class FakeBooker:
    """Scripted bookings without a browser: each ``book`` pops the next result (an outcome, or a
    ``CheckFailure`` to raise); when the script is empty it preconfirms. ``states`` answers
    ``read_appointment`` by process id; ``cancelled`` lists the processes cancelled."""

    def __init__(
        self,
        results: list[BookingResult | CheckFailure] | None = None,
        *,
        activation_minutes: int = 30,
    ) -> None:
        self.results = list(results or [])
        self.activation_minutes = activation_minutes
        self.booked: list[tuple[SlotToBook, Contact]] = []
        self.states: dict[str, AppointmentState] = {}
        self.cancelled: list[str] = []
        self.prepared: list[Standby] = []

    async def book(
        self,
        session: BrowserSession,
        site_url: str,
        slot: SlotToBook,
        contact: Contact,
        *,
        on_reserved: OnReserved | None = None,
    ) -> BookingResult:
        self.booked.append((slot, contact))
        result = self.results.pop(0) if self.results else None
        if isinstance(result, CheckFailure):
            raise result
        if result is not None:
            return result
        hold = CityHold(f"fake-{len(self.booked)}", "0" * 64, 15)
        if on_reserved is not None:
            await on_reserved(hold)
        return Preconfirmed(hold, self.activation_minutes, True)

    async def prepare(self, session: BrowserSession, site_url: str, standby: Standby) -> None:
        self.prepared.append(standby)
        session.walked = True
        session.site_data[STANDBY_DATA_KEY] = standby

    async def read_appointment(
        self, page: Page, site_url: str, process_id: str, auth_key: str
    ) -> AppointmentState:
        return self.states.get(process_id, AppointmentState(found=False))

    async def cancel(self, page: Page, site_url: str, process_id: str, auth_key: str) -> CancelResult:
        self.cancelled.append(process_id)
        return CancelResult(cancelled=True)

    async def resume(self, page: Page, site_url: str, hold: CityHold, contact: Contact) -> BookingResult:
        return Preconfirmed(hold, self.activation_minutes, False)


__all__ = ["FakeAdapter", "FakeBooker", "SiteAdapter", "SiteBooker", "SiteQuota"]
