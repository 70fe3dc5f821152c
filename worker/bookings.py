"""Booking actors on the ``bookings`` queue: ``book_slot``, ``cancel_booking``, ``poll_booking_states``.

``book_slot(user_id, slot_id, subscription_id, requested_at, manual)`` books one slot for one
subscriber in this worker's browser (``worker.sites.munich.booker``) under the policy of
``shared.booking``. It spends its own budget (``MTA_BOOKING_BUDGET_PER_MINUTE`` per site, a
``SiteBudget`` keyed ``<site>:booking``, apart from the check budget).

Sending: ``dispatch_autobook(db, new_slot_ids)`` right after a check's observation is committed
(the slot alerts are then in the outbox, so an alert always goes out whether or not the booking
works), ``request_booking(...)`` for a user's tap on "Book this", ``request_cancel(...)`` when the
user no longer wants a held appointment. A Redis marker per (user, slot) drops a second send while
one is queued or running.

Redelivery (a worker killed mid-booking): the message comes back with the same ``requested_at``;
``shared.booking.start_booking`` finds the row the first delivery made and resumes it: a city hold
it recorded is finished with the page's own update/preconfirm requests; without a recorded hold the
same slot only is tried again (never another slot), so one request never holds two slots.

``poll_bookings(deps)`` is the periodic state job (send ``poll_booking_states`` every ~30 s from the
scheduler; it runs one at a time under a Redis lock): reminders before the activation deadline,
reservations that ran out, holding rows left by dead workers, and for every preconfirmed booking (at
most once per ``POLL_INTERVAL_S``) the appointment's state read through the site's own manage link:
confirmed when the activation link was used, expired when it is gone or past its deadline. It also
re-dispatches autobook alerts of the last minutes that never got a booking attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
import redis

from shared import booking as policy
from shared import enqueue
from shared.contracts import (
    ADOPT_APPOINTMENT_ACTOR,
    BOOK_SLOT_ACTOR,
    BOOKING_KEY_PREFIX,
    CANCEL_BOOKING_ACTOR,
    POLL_BOOKING_STATES_ACTOR,
    booking_marker_key,
)
from shared.db.database import Database
from shared.db.models import Booking, BookingProfile, BookingStatus, Notification, NotificationKind, Slot
from shared.domain import CheckFailure, LayoutChanged, RateLimited, ensure_utc, utcnow
from shared.killswitch import site_stopped
from shared.logging import get_logger, scrub_text
from shared.recording import alert_booking_layout_changed
from shared.settings import Settings
from worker import swaps
from worker.broker import BOOKINGS_QUEUE, WAKE_CHANNEL, current_broker, current_runtime
from worker.budget import SiteBudget, site_budget
from worker.sites.base import SiteBooker
from worker.sites.booking import (
    CityHold,
    Contact,
    HoldLost,
    Preconfirmed,
    Refused,
    SlotTaken,
    SlotToBook,
)
from worker.standby import claim as claim_standby
from worker.standby import keep_standbys, wanted_standbys

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = get_logger("mta.booking")

BOOKING_TIME_LIMIT_MS = 300_000
POLL_TIME_LIMIT_MS = 300_000
BUDGET_WAIT_S = 20.0
BUDGET_RETRY_DELAY_MS = 15_000
POLL_INTERVAL_S = 60
"""A preconfirmed booking's state is read from the site at most this often."""
POLL_LOCK_TTL_S = 240
SWEEP_WINDOW = timedelta(minutes=10)
KEY_PREFIX = BOOKING_KEY_PREFIX


class BudgetExhausted(Exception):
    """No booking token within ``BUDGET_WAIT_S``: the message is sent again later."""


@dataclass
class BookingDeps:
    """What a booking needs; the actors build it from the worker's runtime, tests hand it in."""

    settings: Settings
    db: Database
    redis: redis.Redis
    pool: Any
    """A ``worker.browser.BrowserPool`` (or anything with its ``session(key)`` context manager)."""
    booker: SiteBooker
    clock: Callable[[], datetime] = utcnow

    @property
    def site_url(self) -> str:
        return self.settings.site_url

    def booking_budget(self, site: str) -> SiteBudget:
        return SiteBudget(self.redis, f"{site}:booking", self.settings.booking_budget_per_minute)

    def site_budget(self, site: str) -> SiteBudget:
        """The checks' budget: every request to the city counts against it (one per address)."""
        return site_budget(self.redis, self.settings, site)


@dataclass
class BookingReport:
    outcome: str
    booking_ids: list[int] = field(default_factory=list)
    attempts: int = 0
    """Booking rows tried: walks, resumes, and short cuts for slots MTA itself already holds."""


@dataclass
class PollReport:
    checked: int = 0
    confirmed: int = 0
    expired: int = 0
    reminders: int = 0
    interrupted: int = 0
    redispatched: int = 0
    errors: int = 0
    standbys_prepared: int = 0


# --- database helpers (run in a thread) ------------------------------------------------------------
def _contact(db: Database, profile_id: int | None, service_id: int) -> Contact | None:
    """The decrypted profile the booking is for (its ``profile_id``, set when it was claimed), with
    the office's custom field resolved by the profile rules."""
    with db.transaction() as session:
        profile = session.get(BookingProfile, profile_id) if profile_id is not None else None
        if profile is None or not profile.email or not profile.last_name:
            return None
        custom = dict(profile.custom_fields or {})
        try:
            from shared.profile_rules import form_custom_fields

            custom.update(form_custom_fields(service_id, custom))
        except Exception:  # the label aliases in Contact.custom_value still apply
            log.warning("profile_rules_unavailable")
        return Contact(
            first_name=profile.first_name or "",
            last_name=profile.last_name,
            email=profile.email,
            phone=profile.phone,
            custom_fields=custom,
        )


def _slot_of(booking: Booking) -> SlotToBook:
    assert booking.start_at is not None
    return SlotToBook(booking.office_id, booking.service_id, booking.start_at, booking.service_count)


def _hold_of(booking: Booking) -> CityHold | None:
    if booking.process_id and booking.auth_key:
        return CityHold(booking.process_id, booking.auth_key, reservation_minutes=0)
    return None


def _read(db: Database, booking_id: int) -> Booking:
    with db.transaction() as session:
        booking = session.get(Booking, booking_id)
        if booking is None:
            raise LookupError(f"no booking {booking_id}")
        session.expunge(booking)
        return booking


def _after_taken(
    db: Database, booking_id: int, code: str, detail: str, tried: list[int], fallback: bool, now: datetime
) -> int | None:
    """Close the booking as taken; returns the next slot to try (then no "taken" message yet)."""
    with db.transaction() as session:
        booking = session.get(Booking, booking_id)
        assert booking is not None
        nxt = (
            policy.next_candidate_slot(session, booking, tried_slot_ids=tried, now=now) if fallback else None
        )
        policy.record_failed(
            session,
            booking_id,
            policy.BookingError(kind=policy.FailureKind.TAKEN, code=code, reason=detail),
            notify=nxt is None,
            now=now,
        )
        return nxt.id if nxt is not None else None


def _site_trouble(deps: BookingDeps, site: str, failure: CheckFailure, requests_made: int) -> None:
    """Charge what the walk cost; a 429 pauses every check of the site as well (one address)."""
    deps.site_budget(site).charge(requests_made)
    if isinstance(failure, RateLimited):
        from worker.scheduler import pause_site

        until = failure.reset_at or deps.clock() + timedelta(seconds=61)
        pause_site(deps.redis, site, until)


def _alert_layout(deps: BookingDeps, site: str, booking_id: int, failure: LayoutChanged) -> None:
    """The operator hears of a booking walk that could not read the page at once
    (``shared.recording.alert_booking_layout_changed`` says why), and the bot is woken to send it."""
    with deps.db.transaction() as session:
        inserted = alert_booking_layout_changed(
            session, site, booking_id, scrub_text(str(failure)), deps.settings.operator_chat_ids, deps.clock()
        )
    if inserted:
        _wake(deps, booking_id)


def _wake(deps: BookingDeps, booking_id: int) -> None:
    try:
        deps.redis.publish(WAKE_CHANNEL, f"booking:{booking_id}")
    except redis.RedisError:
        log.warning("wake_failed", booking_id=booking_id)


# --- one booking request ---------------------------------------------------------------------------
async def _take_budget(deps: BookingDeps, site: str) -> None:
    if await asyncio.to_thread(site_stopped, deps.redis, site):
        # the operator's kill switch: no request to the city, the booking waits like one over budget
        raise BudgetExhausted(f"{site} is stopped by the operator")
    budget = deps.booking_budget(site)
    deadline = time.monotonic() + BUDGET_WAIT_S
    while not await asyncio.to_thread(budget.try_take):
        if time.monotonic() > deadline:
            raise BudgetExhausted(f"no booking token for {site} within {BUDGET_WAIT_S:.0f} s")
        await asyncio.sleep(0.5)


async def run_booking(
    deps: BookingDeps,
    *,
    user_id: int,
    slot_id: int,
    subscription_id: int | None,
    requested_at: datetime,
    manual: bool = False,
) -> BookingReport:
    """Book ``slot_id`` for ``user_id`` (and, for autobook, the next matching slots if it is taken)."""
    requested_at = ensure_utc(requested_at)
    report = BookingReport(outcome="")
    tried: list[int] = []
    current = slot_id
    fallback_allowed = not manual
    while True:
        now = deps.clock()
        # a lost race may move on to the next slot only while attempts are left (else: "taken")
        may_fall_back = fallback_allowed and len(tried) < policy.MAX_FALLBACK_ATTEMPTS
        start = await asyncio.to_thread(
            _start, deps.db, user_id, current, subscription_id, requested_at, manual, now
        )
        if start.booking is not None and start.outcome in (
            policy.StartOutcome.STARTED,
            policy.StartOutcome.RESUME_HOLDING,
            policy.StartOutcome.RESUME_RESERVED,
        ):
            report.booking_ids.append(start.booking.id)
        if start.outcome is policy.StartOutcome.STARTED:
            assert start.booking is not None
            outcome, next_slot = await _attempt(deps, start.booking, may_fall_back, tried)
        elif start.outcome is policy.StartOutcome.RESUME_HOLDING:
            assert start.booking is not None
            log.info("booking_resumed", booking_id=start.booking.id, held=False)
            outcome, next_slot = await _attempt(deps, start.booking, False, tried)
        elif start.outcome is policy.StartOutcome.RESUME_RESERVED:
            assert start.booking is not None
            log.info("booking_resumed", booking_id=start.booking.id, held=True)
            outcome, next_slot = await _resume(deps, start.booking), None
        else:
            log.info("booking_not_started", slot_id=current, reason=start.outcome.value)
            if start.told:  # the subscriber hears why (e-mail cap, consent): wake the bot
                _wake(deps, 0)
            report.outcome = start.outcome.value
            return report
        report.attempts += 1
        tried.append(current)
        if next_slot is None:
            report.outcome = outcome
            return report
        current = next_slot


def _start(
    db: Database,
    user_id: int,
    slot_id: int,
    subscription_id: int | None,
    requested_at: datetime,
    manual: bool,
    now: datetime,
) -> policy.Start:
    return policy.begin_booking(
        db,
        user_id=user_id,
        slot_id=slot_id,
        subscription_id=subscription_id,
        requested_at=requested_at,
        manual=manual,
        now=now,
    )


async def _attempt(
    deps: BookingDeps, booking: Booking, fallback: bool, tried: list[int]
) -> tuple[str, int | None]:
    """One walk for one booking row; returns (outcome, next slot id to try or None)."""
    db = deps.db
    booking_id = booking.id
    slot_key = booking.slot_id or 0

    def held_elsewhere() -> bool:
        with db.transaction() as session:
            slot = session.get(Slot, slot_key)
            return slot is not None and policy.held_by_mta(session, slot, except_booking=booking_id)

    if await asyncio.to_thread(held_elsewhere):
        # another subscriber's booking already holds it at the city: no need to ask the site
        nxt = await asyncio.to_thread(
            _after_taken,
            db,
            booking_id,
            "heldByMta",
            "another booking holds this slot",
            [*tried, slot_key],
            fallback,
            deps.clock(),
        )
        _wake(deps, booking_id)
        return "taken", nxt

    contact = await asyncio.to_thread(_contact, db, booking.profile_id, booking.service_id)
    if contact is None:
        await asyncio.to_thread(
            _fail,
            db,
            booking_id,
            policy.BookingError(
                kind=policy.FailureKind.NO_PROFILE,
                code="noProfile",
                field="profile",
                reason="no booking profile stored",
            ),
            deps.clock(),
        )
        _wake(deps, booking_id)
        return "failed", None

    await _take_budget(deps, booking.site)

    async def on_reserved(hold: CityHold) -> None:
        await asyncio.to_thread(_reserved, db, booking_id, hold, deps.clock())
        _wake(deps, booking_id)

    started = time.monotonic()
    # a page kept ready for this target (worker.standby) saves the walk's first half
    key = claim_standby(deps.pool, booking.site, _slot_of(booking)) or f"booking:{booking_id}"
    async with deps.pool.session(key) as session:
        try:
            result = await deps.booker.book(
                session, deps.site_url, _slot_of(booking), contact, on_reserved=on_reserved
            )
        except CheckFailure as failure:
            log.warning(
                "booking_site_trouble",
                booking_id=booking_id,
                failure=type(failure).__name__,
                detail=scrub_text(str(failure)),
            )
            await asyncio.to_thread(_site_trouble, deps, booking.site, failure, int(session.requests_made))
            if isinstance(failure, LayoutChanged):
                await asyncio.to_thread(_alert_layout, deps, booking.site, booking_id, failure)
            await _cancel_quietly(deps, session.page, booking_id)
            await asyncio.to_thread(
                _fail,
                db,
                booking_id,
                policy.BookingError(
                    kind=policy.FailureKind.SITE, code=type(failure).__name__, reason=str(failure)
                ),
                deps.clock(),
            )
            _wake(deps, booking_id)
            return "failed", None
        except Exception as exc:  # a browser crash or an unforeseen page: fail this booking, loudly
            log.exception("booking_walk_crashed", booking_id=booking_id)
            await _cancel_quietly(deps, session.page, booking_id)
            await asyncio.to_thread(
                _fail,
                db,
                booking_id,
                policy.BookingError(kind=policy.FailureKind.SITE, code="internal", reason=type(exc).__name__),
                deps.clock(),
            )
            _wake(deps, booking_id)
            return "failed", None
        if isinstance(result, Refused) and result.hold is not None:
            await _cancel_quietly(deps, session.page, booking_id)
    requests_made = int(getattr(session, "requests_made", 0))
    await asyncio.to_thread(deps.site_budget(booking.site).charge, requests_made)
    duration_s = time.monotonic() - started
    outcome, nxt = await _record_result(deps, booking_id, result, fallback, [*tried, slot_key])
    log.info("booking_walked", booking_id=booking_id, outcome=outcome, duration_ms=int(duration_s * 1000))
    _wake(deps, booking_id)
    return outcome, nxt


async def _record_result(
    deps: BookingDeps, booking_id: int, result: Any, fallback: bool, tried: list[int]
) -> tuple[str, int | None]:
    db = deps.db
    now = deps.clock()
    if isinstance(result, Preconfirmed):
        await asyncio.to_thread(_reserved, db, booking_id, result.hold, now)  # no-op when recorded
        await asyncio.to_thread(_preconfirmed, db, booking_id, result.activation_minutes, now)
        return "preconfirmed", None
    if isinstance(result, SlotTaken):
        nxt = await asyncio.to_thread(
            _after_taken, db, booking_id, result.code, result.detail, tried, fallback, now
        )
        return "taken", nxt
    if isinstance(result, Refused):
        error = policy.BookingError(
            kind=policy.FailureKind.PROFILE, code=result.code, field=result.field, reason=result.reason
        )
        await asyncio.to_thread(_fail, db, booking_id, error, now)
        return "refused", None
    if isinstance(result, HoldLost):
        await asyncio.to_thread(_expired, db, booking_id, "reservation", result.code, now)
        return "expired", None
    raise TypeError(f"unknown booking result {result!r}")


async def _resume(deps: BookingDeps, booking: Booking) -> str:
    hold = _hold_of(booking)
    contact = await asyncio.to_thread(_contact, deps.db, booking.profile_id, booking.service_id)
    if hold is None or contact is None:
        return "failed"
    async with deps.pool.session(f"booking:{booking.id}") as session:
        try:
            result = await deps.booker.resume(session.page, deps.site_url, hold, contact)
        except CheckFailure as failure:
            log.warning("booking_resume_failed", booking_id=booking.id, failure=type(failure).__name__)
            return "interrupted"  # the poll expires it when the reservation runs out
        if isinstance(result, Refused):
            await _cancel_quietly(deps, session.page, booking.id)
    outcome, _ = await _record_result(deps, booking.id, result, False, [])
    _wake(deps, booking.id)
    return outcome


async def _cancel_quietly(deps: BookingDeps, page: Any, booking_id: int) -> None:
    """Give a city hold back (the slot returns to others); never raises."""
    booking = await asyncio.to_thread(_read, deps.db, booking_id)
    hold = _hold_of(booking)
    if hold is None:
        return
    try:
        result = await deps.booker.cancel(page, deps.site_url, hold.process_id, hold.auth_key)
        log.info("booking_hold_released", booking_id=booking_id, cancelled=result.cancelled)
    except Exception as exc:  # the hold then simply runs out
        log.warning("booking_hold_release_failed", booking_id=booking_id, error=type(exc).__name__)


def _reserved(db: Database, booking_id: int, hold: CityHold, now: datetime) -> None:
    with db.transaction() as session:
        policy.record_reserved(
            session,
            booking_id,
            process_id=hold.process_id,
            auth_key=hold.auth_key,
            reservation_minutes=hold.reservation_minutes,
            now=now,
        )


def _preconfirmed(db: Database, booking_id: int, minutes: int, now: datetime) -> None:
    with db.transaction() as session:
        policy.record_preconfirmed(session, booking_id, activation_minutes=minutes, now=now)


def _fail(db: Database, booking_id: int, error: policy.BookingError, now: datetime) -> None:
    with db.transaction() as session:
        policy.record_failed(session, booking_id, error, now=now)


def _expired(db: Database, booking_id: int, phase: str, code: str, now: datetime) -> None:
    with db.transaction() as session:
        policy.record_expired(session, booking_id, phase=phase, code=code, now=now)


# --- cancellation ----------------------------------------------------------------------------------
async def cancel_at_city(deps: BookingDeps, booking_id: int, user_id: int) -> bool:
    """Cancel the user's held appointment at the city (the slot returns to others after the city's
    hold-back); True when the booking is now cancelled."""

    def load() -> Booking | None:
        with deps.db.transaction() as session:
            booking = policy.cancellable(session, booking_id, user_id)
            if booking is not None:
                session.expunge(booking)
            return booking

    booking = await asyncio.to_thread(load)
    if booking is None:
        return False
    hold = _hold_of(booking)
    if hold is None:
        return False
    async with deps.pool.session(f"booking-cancel:{booking_id}") as session:
        result = await deps.booker.cancel(session.page, deps.site_url, hold.process_id, hold.auth_key)
    if not (result.cancelled or result.already_gone):
        log.warning("booking_cancel_refused", booking_id=booking_id, code=result.code)
        return False

    def mark() -> None:
        with deps.db.transaction() as session:
            policy.record_cancelled(session, booking_id, now=deps.clock())

    await asyncio.to_thread(mark)
    _wake(deps, booking_id)
    return True


# --- the periodic state job ------------------------------------------------------------------------
async def poll_bookings(
    deps: BookingDeps, *, now: datetime | None = None, min_interval_s: float = POLL_INTERVAL_S
) -> PollReport:
    """Reminders, expiries and confirmations; see the module docstring. ``now`` may be given (tests
    pass the replica's clock)."""
    now = ensure_utc(now) if now is not None else deps.clock()
    report = PollReport()

    def local_part() -> tuple[int, int, int, list[int]]:
        with deps.db.transaction() as session:
            expired, interrupted = policy.close_stale(session, now)
            reminders = policy.queue_reminders(session, now)
            return expired, interrupted, reminders, policy.preconfirmed_bookings(session)

    report.expired, report.interrupted, report.reminders, ids = await asyncio.to_thread(local_part)
    for booking_id in ids:
        if min_interval_s > 0 and not deps.redis.set(
            f"{KEY_PREFIX}polled:{booking_id}", b"1", nx=True, ex=max(1, int(min_interval_s))
        ):
            continue
        booking = await asyncio.to_thread(_read, deps.db, booking_id)
        hold = _hold_of(booking)
        if hold is None:
            continue
        if not await asyncio.to_thread(deps.site_budget(booking.site).try_take):
            log.info("booking_poll_budget_spent", remaining=len(ids) - report.checked)
            break
        try:
            async with deps.pool.session(f"booking-poll:{booking_id}") as session:
                state = await deps.booker.read_appointment(
                    session.page, deps.site_url, hold.process_id, hold.auth_key
                )
        except CheckFailure as failure:
            report.errors += 1
            log.warning("booking_poll_failed", booking_id=booking_id, failure=type(failure).__name__)
            continue
        report.checked += 1

        def apply(
            booking_id: int = booking_id, found: bool = state.found, status: str | None = state.status
        ) -> BookingStatus:
            with deps.db.transaction() as session:
                return policy.apply_site_state(session, booking_id, found=found, status=status, now=now)

        new_status = await asyncio.to_thread(apply)
        if new_status is BookingStatus.CONFIRMED:
            report.confirmed += 1
        elif new_status is BookingStatus.EXPIRED:
            report.expired += 1
    await swaps.settle_swaps(deps)  # an earlier date confirmed: only now the old one is cancelled
    report.redispatched = await asyncio.to_thread(sweep_autobook, deps.db, deps.redis, now)
    report.standbys_prepared = await _keep_standbys(deps)
    if report.expired or report.confirmed or report.reminders or report.interrupted:
        _wake(deps, 0)
    return report


async def _keep_standbys(deps: BookingDeps) -> int:
    """Keep this process's booking pages ready (``worker.standby``); never fails the poll."""
    if deps.settings.booking_standbys <= 0 or not hasattr(deps.pool, "warm_keys"):
        return 0
    try:
        wanted = await asyncio.to_thread(wanted_standbys, deps.db, deps.settings.booking_standbys)
        wanted = [w for w in wanted if not await asyncio.to_thread(site_stopped, deps.redis, w.site)]
        kept = await keep_standbys(deps, wanted)
    except Exception as exc:
        log.warning("booking_standbys_failed", error=type(exc).__name__)
        return 0
    return kept.prepared


def sweep_autobook(db: Database, client: redis.Redis, now: datetime) -> int:
    """Autobook alerts of the last ``SWEEP_WINDOW`` whose booking was never attempted (a lost
    dispatch): dispatch them now. Pairs already tried or queued are skipped."""
    with db.transaction() as session:
        rows = session.query(Notification.slot_id).filter(
            Notification.kind == NotificationKind.SLOT,
            Notification.created_at >= now - SWEEP_WINDOW,
            Notification.slot_id.is_not(None),
        )
        slot_ids = sorted({slot_id for (slot_id,) in rows if slot_id is not None})
        if not slot_ids:
            return 0
        requests = policy.autobook_requests(session, slot_ids, now=now)
        tried = {
            (user_id, slot_id)
            for user_id, slot_id in session.query(Booking.user_id, Booking.slot_id).filter(
                Booking.slot_id.in_(slot_ids)
            )
        }
    fresh = [r for r in requests if (r.user_id, r.slot_id) not in tried]
    return _send_requests(client, fresh)


# --- sending ---------------------------------------------------------------------------------------
def request_booking(
    user_id: int,
    slot_id: int,
    subscription_id: int | None = None,
    *,
    manual: bool = False,
    client: redis.Redis | None = None,
) -> bool:
    """Queue a ``book_slot`` message; False when one for this (user, slot) is already queued or running
    (``shared.enqueue.request_booking``, the bot's way too)."""
    return enqueue.request_booking(
        client or _redis(), book_slot.broker, user_id, slot_id, subscription_id, manual=manual
    )


def _send_requests(client: redis.Redis, requests: list[policy.BookRequest]) -> int:
    return sum(request_booking(r.user_id, r.slot_id, r.subscription_id, client=client) for r in requests)


def dispatch_autobook(
    db: Database, slot_ids: list[int], *, client: redis.Redis | None = None, now: datetime | None = None
) -> int:
    """Queue the autobook attempts for newly seen slots (call after the observation's transaction
    committed, so the slot alerts are already in the outbox). Returns how many were queued."""
    if not slot_ids:
        return 0
    with db.transaction() as session:
        requests = policy.autobook_requests(session, slot_ids, now=now)
    return _send_requests(client or _redis(), requests)


def request_cancel(booking_id: int, user_id: int) -> None:
    """Queue the city cancellation of a booking the user no longer wants."""
    cancel_booking.send(booking_id, user_id)


# --- actor plumbing --------------------------------------------------------------------------------
def _runtime() -> Runtime:
    """The runtime of the worker the booking actors are bound to (``actor.broker``): held by its
    ``BrowserMiddleware``, opened at worker boot and closed at shutdown (tests and benches run a
    worker with that middleware too)."""
    return current_runtime(book_slot.broker)


def _redis() -> redis.Redis:
    return _runtime().client()


def runtime_deps(rt: Runtime) -> BookingDeps:
    """What a booking needs, from a worker's runtime (database, Redis, pool and booker are opened
    and closed with it, ``worker.runtime``)."""
    return BookingDeps(settings=rt.settings, db=rt.db, redis=rt.client(), pool=rt.pool, booker=rt.booker)


def _actor_deps() -> BookingDeps:
    return runtime_deps(_runtime())


@dramatiq.actor(
    actor_name=BOOK_SLOT_ACTOR,
    queue_name=BOOKINGS_QUEUE,
    broker=current_broker(),  # the entry point's (worker.broker.setup_broker), set before this import
    max_retries=0,
    time_limit=BOOKING_TIME_LIMIT_MS,
)
async def book_slot(
    user_id: int,
    slot_id: int,
    subscription_id: int | None = None,
    requested_at: str | None = None,
    manual: bool = False,
) -> None:
    """Book one slot for one subscriber (see the module docstring)."""
    deps = _actor_deps()
    when = datetime.fromisoformat(requested_at) if requested_at else deps.clock()
    try:
        report = await run_booking(
            deps,
            user_id=user_id,
            slot_id=slot_id,
            subscription_id=subscription_id,
            requested_at=when,
            manual=manual,
        )
    except BudgetExhausted:
        log.info("booking_budget_wait", slot_id=slot_id)
        book_slot.send_with_options(
            args=(user_id, slot_id, subscription_id, when.isoformat(), manual), delay=BUDGET_RETRY_DELAY_MS
        )
        return
    if report.attempts:
        # tried: the next request for this pair may come; untried (no profile, already active ...):
        # the marker's TTL throttles the sweep's re-dispatch
        deps.redis.delete(booking_marker_key(user_id, slot_id))
    log.info("booking_done", slot_id=slot_id, outcome=report.outcome, attempts=report.attempts)


@dramatiq.actor(
    actor_name=CANCEL_BOOKING_ACTOR,
    queue_name=BOOKINGS_QUEUE,
    broker=current_broker(),
    max_retries=3,
    time_limit=BOOKING_TIME_LIMIT_MS,
)
async def cancel_booking(booking_id: int, user_id: int) -> None:
    """Cancel a held appointment at the city because its user no longer wants it."""
    cancelled = await cancel_at_city(_actor_deps(), booking_id, user_id)
    log.info("booking_cancel_done", booking_id=booking_id, cancelled=cancelled)


@dramatiq.actor(
    actor_name=POLL_BOOKING_STATES_ACTOR,
    queue_name=BOOKINGS_QUEUE,
    broker=current_broker(),
    max_retries=0,
    time_limit=POLL_TIME_LIMIT_MS,
)
async def poll_booking_states() -> None:
    """The periodic booking-state job; one at a time across all workers (Redis lock)."""
    deps = _actor_deps()
    lock = deps.redis.lock(f"{KEY_PREFIX}poll-lock", timeout=POLL_LOCK_TTL_S, blocking=False)
    if not lock.acquire(blocking=False):
        return
    try:
        report = await poll_bookings(deps)
        log.info("booking_poll_done", **report.__dict__)
    finally:
        with contextlib.suppress(redis.exceptions.LockError):
            lock.release()


@dramatiq.actor(
    actor_name=ADOPT_APPOINTMENT_ACTOR,
    queue_name=BOOKINGS_QUEUE,
    broker=current_broker(),
    max_retries=0,
    time_limit=BOOKING_TIME_LIMIT_MS,
)
async def adopt_appointment(
    user_id: int, profile_id: int | None, sealed: str, any_office: bool, autobook: bool
) -> None:
    """An appointment booked elsewhere, entered in the bot: read it at the city, keep it, and watch
    for an earlier date (``worker.swaps.adopt``)."""
    await swaps.adopt(
        _actor_deps(),
        user_id=user_id,
        profile_id=profile_id,
        sealed=sealed,
        any_office=any_office,
        autobook=autobook,
    )


__all__ = [
    "BookingDeps",
    "BookingReport",
    "BudgetExhausted",
    "PollReport",
    "adopt_appointment",
    "book_slot",
    "cancel_at_city",
    "cancel_booking",
    "dispatch_autobook",
    "poll_booking_states",
    "poll_bookings",
    "request_booking",
    "request_cancel",
    "run_booking",
    "runtime_deps",
    "sweep_autobook",
]
