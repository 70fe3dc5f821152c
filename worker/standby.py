"""Booking pages kept ready: a standby per watched autobook target, so a booking starts one press
away from a fresh calendar instead of at the deep link.

A slot is gone within seconds, and most of a booking walk's time goes before the slot can be
picked: loading the page, the service step, the captcha's proof of work. A person who wants a slot
badly keeps the page open; MTA does the same for the newest autobook targets (at most
``MTA_BOOKING_STANDBYS`` per worker process): ``MunichBooker.prepare`` walks a session to the
service step with the captcha passed and leaves it there, and the booking actor books from it when
a slot of exactly that target comes (``claim``).

Politeness: a standby waits without a single request. Preparing one costs what the first half of
a walk costs (the page's service list and the captcha: about four API requests); it takes a
booking token (``MTA_BOOKING_BUDGET_PER_MINUTE``) and is charged to the site's request budget like
any walk. The pool retires a standby whose captcha token nears its end (``BrowserPool``'s token
margin), and ``keep_standbys`` prepares it again a little before that (``RENEW_BEFORE_S``): about
one preparation every three minutes per target with the city's five-minute token. Standbys for
targets nobody autobooks any more are closed.

``keep_standbys`` runs with the periodic booking-state job (``worker.bookings.poll_bookings``),
in whichever worker process runs it: a standby helps the bookings of its own process only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from shared.db.models import BookingProfile, Subscription, SubscriptionState
from shared.logging import get_logger
from worker.sites.booking import STANDBY_DATA_KEY as STANDBY
from worker.sites.booking import SlotToBook, Standby

if TYPE_CHECKING:
    from shared.db.database import Database

log = get_logger("mta.booking.standby")

STANDBY_PREFIX = "standby:"
RENEW_BEFORE_S = 120.0
"""A standby whose captcha token has less than this left is prepared again: the pool stops handing
it out 30-90 s before the token ends, and the keeper runs every ~30 s, so renewing this early keeps
a fit standby at every moment (a 5-minute token: one preparation about every 3 minutes)."""
CLAIMED = "standby_claimed"
"""``session.site_data`` flag: a booking took this standby (the keeper leaves it alone)."""


@dataclass
class StandbyReport:
    prepared: int = 0
    kept: int = 0
    dropped: int = 0
    requests: int = 0
    """API requests the preparations made (charged to the site budget)."""
    skipped: list[str] = field(default_factory=list)
    """Targets not prepared this time, with the reason (budget, in use, failure)."""


def wanted_standbys(db: Database, limit: int) -> list[Standby]:
    """The targets of the newest active autobook subscriptions whose person has a profile, one per
    (site, service, office, count), at most ``limit``. The deep link names one office, so a
    subscription's first office is its standby's."""
    if limit <= 0:
        return []
    with db.transaction() as session:
        rows = session.execute(
            select(
                Subscription.site,
                Subscription.service_id,
                Subscription.office_ids,
                Subscription.service_count,
            )
            .where(
                Subscription.state == SubscriptionState.ACTIVE,
                Subscription.autobook.is_(True),
                Subscription.user_id.in_(select(BookingProfile.user_id)),
            )
            .order_by(Subscription.created_at.desc(), Subscription.id.desc())
        ).all()
    wanted: list[Standby] = []
    for site, service_id, office_ids, count in rows:
        if not office_ids:
            continue
        standby = Standby(site, int(service_id), int(office_ids[0]), int(count or 1))
        if standby not in wanted:
            wanted.append(standby)
        if len(wanted) >= limit:
            break
    return wanted


def _fit(pool: Any, standby: Standby) -> Any | None:
    """The standby session for ``standby`` if it is prepared, idle, unclaimed and still fit."""
    session = pool.warm_session(standby.key)
    if session is None or session.in_use or session.site_data.get(CLAIMED):
        return None
    if session.site_data.get(STANDBY) != standby or pool.retire_reason(session) is not None:
        return None
    return session


def claim(pool: Any, site: str, slot: SlotToBook) -> str | None:
    """The pool key of a ready standby for ``slot``'s target, taken for one booking (no other
    booking and not the keeper will use it); None when there is none."""
    if not hasattr(pool, "warm_session"):  # a pool without kept sessions (a test's stand-in)
        return None
    standby = Standby(site, slot.service_id, slot.office_id, slot.service_count)
    session = _fit(pool, standby)
    if session is None:
        return None
    session.site_data[CLAIMED] = True
    return standby.key


async def keep_standbys(deps: Any, wanted: list[Standby]) -> StandbyReport:
    """Prepare each wanted standby that is missing or stale, close those no longer wanted.

    ``deps`` is a ``worker.bookings.BookingDeps`` (pool, booker, budgets, site URL)."""
    report = StandbyReport()
    pool = deps.pool
    for key in [k for k in pool.warm_keys() if k.startswith(STANDBY_PREFIX)]:
        session = pool.warm_session(key)
        if session is None or session.in_use or session.site_data.get(CLAIMED):
            continue
        if not any(w.key == key for w in wanted):
            await pool.retire(session, "standby no longer wanted")
            report.dropped += 1
    for standby in wanted:
        fit = _fit(pool, standby)
        remaining = fit.token_remaining_s() if fit is not None else None
        if fit is not None and (remaining is None or remaining > RENEW_BEFORE_S):
            report.kept += 1
            continue
        if fit is not None:
            await pool.retire(fit, "standby renewed before its token ends")
        current = pool.warm_session(standby.key)
        if current is not None and (current.in_use or current.site_data.get(CLAIMED)):
            report.skipped.append(f"{standby.key}: in use")
            continue
        if not await asyncio.to_thread(deps.booking_budget(standby.site).try_take):
            report.skipped.append(f"{standby.key}: no booking token")
            break
        made = 0
        try:
            # the pool hands out a fresh context here: a stale standby (token near its end, aged,
            # or broken) is closed on the way in
            async with pool.session(standby.key) as session:
                session.requests_made = 0
                try:
                    await deps.booker.prepare(session, deps.site_url, standby)
                finally:
                    made = int(session.requests_made)
        except Exception as exc:  # a failed preparation only means a booking walks from the start
            report.skipped.append(f"{standby.key}: {type(exc).__name__}")
            log.warning("booking_standby_failed", target=standby.key, error=type(exc).__name__)
        else:
            report.prepared += 1
        report.requests += made
        await asyncio.to_thread(deps.site_budget(standby.site).charge, made)
    return report


__all__ = ["StandbyReport", "claim", "keep_standbys", "wanted_standbys"]
