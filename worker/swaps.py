"""The worker's part of an earlier date (``shared.swaps`` has the course and the policy).

- ``adopt(deps, ...)`` (the ``adopt_appointment`` actor of ``worker.bookings`` runs it): an
  appointment booked elsewhere, entered in the bot by process id and auth key (sealed: encrypted
  in the message). One read at the city through the appointment's manage link
  (``SiteBooker.read_appointment``) gives service, office, date and time; MTA keeps it as the
  person's booking and starts watching for an earlier date, or tells them why not (not found,
  wrong key, only reserved, past, known already).
- ``settle_swaps(deps)``, called by the booking poll after it read the states of preconfirmed
  bookings: a swap whose new booking is now confirmed gets its old booking cancelled at the city
  (then "done"); one whose new booking failed or expired keeps the old one and says so. Only a
  confirmed new booking ever leads to a cancellation, so the person is never left without one.
  A cancellation that fails is tried again with back-off (its count and next time in a Redis
  hash per old booking, ``cancel_backoff_key``: lost with Redis, it only means an earlier try)
  until ``shared.swaps.give_up_cancelling``; then, or when the city refuses, or once the old
  appointment is past, the person is told to cancel it themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import redis

from shared import swaps
from shared.contracts import BOOKING_KEY_PREFIX
from shared.db.database import Database
from shared.db.models import Booking
from shared.domain import DEFAULT_SITE, CheckFailure, SiteUnavailable, ensure_utc
from shared.killswitch import site_stopped
from shared.logging import get_logger
from worker.broker import WAKE_CHANNEL
from worker.budget import SiteBudget
from worker.sites.base import SiteBooker

log = get_logger("mta.swaps")


class SwapDeps(Protocol):
    """What a swap needs: ``worker.bookings.BookingDeps`` has it (the booking actors hand theirs in)."""

    @property
    def db(self) -> Database: ...

    @property
    def redis(self) -> redis.Redis: ...

    @property
    def pool(self) -> Any: ...

    @property
    def booker(self) -> SiteBooker: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...

    @property
    def site_url(self) -> str: ...

    def site_budget(self, site: str) -> SiteBudget: ...


@dataclass
class SettleReport:
    replaced: int = 0
    refused: int = 0
    """The city answered that the old one cannot be cancelled."""
    errors: int = 0
    """Cancellations that failed (site trouble): tried again after a back-off."""
    waiting: int = 0
    """Cancellations not tried at this poll: backing off, or the operator stopped the site."""
    given_up: int = 0
    """Failing too close to the old appointment, or the old one past: the person is told."""


CANCEL_BACKOFF_TTL_S = 40 * 24 * 3600
"""A back-off record outlives its last failure by this much (renewed at each failure)."""


def cancel_backoff_key(old_id: int) -> str:
    """Redis hash of a failing swap cancellation: ``failures`` and ``next_at`` (epoch seconds)."""
    return f"{BOOKING_KEY_PREFIX}swap-cancel:{old_id}"


def _backing_off(client: redis.Redis, old_id: int, now: datetime) -> bool:
    next_at = client.hget(cancel_backoff_key(old_id), "next_at")
    return next_at is not None and float(next_at) > now.timestamp()


def _note_failure(client: redis.Redis, old_id: int, now: datetime) -> timedelta:
    key = cancel_backoff_key(old_id)
    failures = int(client.hincrby(key, "failures", 1))
    delay = swaps.cancel_retry_delay(failures)
    client.hset(key, "next_at", str((now + delay).timestamp()))
    client.expire(key, CANCEL_BACKOFF_TTL_S)
    return delay


def _wake(deps: SwapDeps) -> None:
    try:
        deps.redis.publish(WAKE_CHANNEL, "swap")
    except Exception:  # the bot's sweep finds the rows anyway
        log.warning("wake_failed")


# --- an appointment booked elsewhere ---------------------------------------------------------------
_LOOKUP_OF_CODE = {
    "appointmentNotFound": swaps.LookupCode.NOT_FOUND,
    "invalidProcessId": swaps.LookupCode.NOT_FOUND,
    "authKeyMismatch": swaps.LookupCode.KEY_MISMATCH,
    "invalidAuthKey": swaps.LookupCode.KEY_MISMATCH,
}


async def adopt(
    deps: SwapDeps,
    *,
    user_id: int,
    profile_id: int | None,
    sealed: str,
    any_office: bool,
    autobook: bool,
    site: str = DEFAULT_SITE,
) -> swaps.LookupCode | int:
    """Read the appointment at the city; keep it and watch for an earlier date (returns the new
    swap subscription's id), or tell the person why not (returns the code)."""
    process_id, auth_key = swaps.unseal_credentials(sealed)
    now = deps.clock()
    state = None
    try:
        if await asyncio.to_thread(site_stopped, deps.redis, site):  # the operator's kill switch
            raise SiteUnavailable(f"{site} is stopped by the operator")
        await asyncio.to_thread(deps.site_budget(site).charge, 1)
        async with deps.pool.session(f"swap-adopt:{user_id}") as session:
            state = await deps.booker.read_appointment(session.page, deps.site_url, process_id, auth_key)
    except CheckFailure as failure:  # told "could not read it just now; try again"
        log.warning("swap_adopt_site_trouble", failure=type(failure).__name__)

    def record() -> swaps.LookupCode | int:
        with deps.db.transaction() as session:
            code: swaps.LookupCode | None = None
            if state is None:
                code = swaps.LookupCode.SITE
            elif not state.found:
                code = _LOOKUP_OF_CODE.get(state.code or "", swaps.LookupCode.NOT_FOUND)
            elif state.office_id is None or state.service_id is None or state.start is None:
                code = swaps.LookupCode.SITE  # an answer without where or when: nothing to watch for
            if code is None:
                assert state is not None and state.office_id is not None and state.service_id is not None
                assert state.start is not None
                kept = swaps.adopt(
                    session,
                    user_id=user_id,
                    profile_id=profile_id,
                    process_id=process_id,
                    auth_key=auth_key,
                    appointment=swaps.CityAppointment(
                        status=state.status or "",
                        office_id=state.office_id,
                        service_id=state.service_id,
                        service_count=state.service_count,
                        start_at=state.start,
                    ),
                    site=site,
                    now=now,
                )
                if isinstance(kept, Booking):
                    started = swaps.start_swap(
                        session,
                        user_id=user_id,
                        booking_id=kept.id,
                        any_office=any_office,
                        autobook=autobook,
                        now=now,
                        notify=True,
                    )
                    assert started.subscription_id is not None
                    return started.subscription_id
                code = kept
            swaps.tell_lookup_failed(session, user_id, code, site, now)
            return code

    result = await asyncio.to_thread(record)
    log.info("swap_adopt_done", outcome=result if isinstance(result, str) else "watching")
    _wake(deps)
    return result


# --- settling --------------------------------------------------------------------------------------
async def settle_swaps(deps: SwapDeps) -> SettleReport:
    """Settle every swap whose new booking reached an end (see the module docstring)."""
    report = SettleReport()

    def plan() -> list[swaps.Pending]:
        with deps.db.transaction() as session:
            return swaps.pending(session, deps.clock())

    todo = await asyncio.to_thread(plan)
    for item in todo:

        def credentials(
            old_id: int = item.old_id,
        ) -> tuple[str, str | None, str | None, datetime | None] | None:
            with deps.db.transaction() as session:
                old = session.get(Booking, old_id)
                if old is None:  # erased (/delete) since pending() found it
                    return None
                start = ensure_utc(old.start_at) if old.start_at is not None else None
                return old.site, old.process_id, old.auth_key, start

        def give_up(reason: swaps.CancelGiveUp, code: str | None = None, item: swaps.Pending = item) -> None:
            with deps.db.transaction() as session:
                swaps.cancel_refused(session, item, code, deps.clock(), reason)
            deps.redis.delete(cancel_backoff_key(item.old_id))
            log.warning("swap_cancel_given_up", old_id=item.old_id, reason=reason.value, code=code)

        held = await asyncio.to_thread(credentials)
        if held is None:
            continue
        site, process_id, auth_key, old_start = held
        now = deps.clock()
        if old_start is None or old_start <= now:
            await asyncio.to_thread(give_up, swaps.CancelGiveUp.PAST)
            report.given_up += 1
            continue
        if not (process_id and auth_key):  # nothing to cancel with: the person's own link can
            await asyncio.to_thread(give_up, swaps.CancelGiveUp.FAILING)
            report.given_up += 1
            continue
        if await asyncio.to_thread(_backing_off, deps.redis, item.old_id, now):
            report.waiting += 1
            continue
        if await asyncio.to_thread(site_stopped, deps.redis, site):
            # the operator's kill switch: the old one is cancelled after it is lifted, unless its
            # day has come by then
            if swaps.give_up_cancelling(old_start, now):
                await asyncio.to_thread(give_up, swaps.CancelGiveUp.FAILING)
                report.given_up += 1
            else:
                report.waiting += 1
            continue
        try:
            await asyncio.to_thread(deps.site_budget(site).charge, 1)
            async with deps.pool.session(f"swap-cancel:{item.old_id}") as session:
                result = await deps.booker.cancel(session.page, deps.site_url, process_id, auth_key)
        except CheckFailure as failure:
            report.errors += 1
            if swaps.give_up_cancelling(old_start, now):
                await asyncio.to_thread(give_up, swaps.CancelGiveUp.FAILING, type(failure).__name__)
                report.given_up += 1
                continue
            delay = await asyncio.to_thread(_note_failure, deps.redis, item.old_id, now)
            log.warning(
                "swap_cancel_failed",
                old_id=item.old_id,
                failure=type(failure).__name__,
                retry_in_s=int(delay.total_seconds()),
            )
            continue

        def record(
            item: swaps.Pending = item,
            ok: bool = result.cancelled or result.already_gone,
            code: str | None = result.code,
        ) -> None:
            with deps.db.transaction() as session:
                if ok:
                    swaps.replaced(session, item, deps.clock())
                else:
                    swaps.cancel_refused(session, item, code, deps.clock(), swaps.CancelGiveUp.REFUSED)
            deps.redis.delete(cancel_backoff_key(item.old_id))

        await asyncio.to_thread(record)
        if result.cancelled or result.already_gone:
            report.replaced += 1
        else:
            report.refused += 1
    if todo or report.replaced or report.refused or report.given_up:
        _wake(deps)
    return report


__all__ = ["CANCEL_BACKOFF_TTL_S", "SettleReport", "SwapDeps", "adopt", "cancel_backoff_key", "settle_swaps"]
