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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import redis

from shared import swaps
from shared.db.database import Database
from shared.db.models import Booking
from shared.domain import DEFAULT_SITE, CheckFailure, SiteUnavailable
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
    errors: int = 0


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

        def credentials(old_id: int = item.old_id) -> tuple[str, str, str] | None:
            with deps.db.transaction() as session:
                old = session.get(Booking, old_id)
                if old is None or not (old.process_id and old.auth_key):
                    return None
                return old.site, old.process_id, old.auth_key

        held = await asyncio.to_thread(credentials)
        if held is None:
            continue
        site, process_id, auth_key = held
        if await asyncio.to_thread(site_stopped, deps.redis, site):
            continue  # the operator's kill switch: the old one is cancelled after it is lifted
        try:
            await asyncio.to_thread(deps.site_budget(site).charge, 1)
            async with deps.pool.session(f"swap-cancel:{item.old_id}") as session:
                result = await deps.booker.cancel(session.page, deps.site_url, process_id, auth_key)
        except CheckFailure as failure:  # tried again at the next poll
            report.errors += 1
            log.warning("swap_cancel_failed", old_id=item.old_id, failure=type(failure).__name__)
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
                    swaps.cancel_refused(session, item, code, deps.clock())

        await asyncio.to_thread(record)
        if result.cancelled or result.already_gone:
            report.replaced += 1
        else:
            report.refused += 1
    if todo or report.replaced or report.refused:
        _wake(deps)
    return report


__all__ = ["SettleReport", "SwapDeps", "adopt", "settle_swaps"]
