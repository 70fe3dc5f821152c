"""Settling a confirmed swap when the old appointment will not cancel (``worker.swaps.settle_swaps``):
retried with back-off while the old one is more than a day away, however long that takes; given
up, and the person told that they hold two appointments, when the city refuses, when it still
fails within the last day, or when the old one is past. Real database (SQLite and PostgreSQL) and
Redis; the city's answers are scripted (``FakeBooker``), the clock is the test's. The cancellation
in Chromium against the replica is in ``test_swap_walk.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import redis

from shared import swaps
from shared.db.database import Database
from shared.db.models import Booking, BookingStatus, Notification, Subscription, SubscriptionState
from shared.domain import CheckFailure, SiteUnavailable
from shared.settings import load_settings
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, POLICY_NOW
from tests.booking.test_family_policy import add_family
from tests.booking.test_swap_policy import OLD_MINUTES, held_booking, watch
from worker.sites.base import FakeBooker
from worker.sites.booking import CancelResult
from worker.swaps import cancel_backoff_key, settle_swaps

NOW = POLICY_NOW
OLD_START = NOW + timedelta(minutes=OLD_MINUTES)
REFUSED = CancelResult(cancelled=False, code="appointmentCanNotBeCanceled")


class CityAnswers(FakeBooker):
    """``cancel`` answers from a script: a result, or a failure to raise."""

    def __init__(self, *answers: CancelResult | CheckFailure) -> None:
        super().__init__()
        self.answers = list(answers)

    async def cancel(self, page: Any, site_url: str, process_id: str, auth_key: str) -> CancelResult:
        self.cancelled.append(process_id)
        answer = self.answers.pop(0) if self.answers else CancelResult(cancelled=True)
        if isinstance(answer, CheckFailure):
            raise answer
        return answer


class NoBrowser:
    @contextlib.asynccontextmanager
    async def session(self, key: str) -> AsyncIterator[Any]:
        yield SimpleNamespace(page=None)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Swap:
    deps: Any
    clock: Clock
    booker: CityAnswers
    old_id: int
    new_id: int
    sub_id: int


def confirmed_swap(
    bookings: ModuleType,
    db: Database,
    client: redis.Redis,
    tmp_path: Path,
    user_id: int,
    *answers: CancelResult | CheckFailure,
) -> Swap:
    """A confirmed appointment ten days ahead, its swap watch, and the earlier one confirmed at
    ``NOW`` (``bookings``: ``worker.bookings``, imported once its broker is built)."""
    (profile,) = add_family(db, user_id, [f"{user_id}@example.org"])
    old = held_booking(db, user_id, profile, BookingStatus.CONFIRMED)
    sub = watch(db, user_id, old)
    with db.transaction() as session:
        new = Booking(
            user_id=user_id,
            profile_id=profile,
            service_id=FS_SERVICE,
            office_id=FS_OFFICE,
            start_at=NOW + timedelta(days=2),
            status=BookingStatus.CONFIRMED,
            process_id="7654321",
            auth_key="cd34",
            replaces_booking_id=old,
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(new)
        session.flush()
        new_id = new.id
    clock = Clock()
    booker = CityAnswers(*answers)
    settings = load_settings(data_dir=tmp_path, env="test", site_budget_per_minute=6000)
    deps = bookings.BookingDeps(
        settings=settings, db=db, redis=client, pool=NoBrowser(), booker=booker, clock=clock
    )
    return Swap(deps, clock, booker, old, new_id, sub)


def told(db: Database, user_id: int) -> list[dict[str, Any]]:
    with db.transaction() as session:
        rows = session.query(Notification).filter(Notification.user_id == user_id).order_by(Notification.id)
        return [dict(n.payload) for n in rows if str(n.payload.get("event", "")).startswith("swap_cancel")]


def ended(db: Database, swap: Swap) -> tuple[BookingStatus, int | None, SubscriptionState]:
    with db.transaction() as session:
        old, new = session.get(Booking, swap.old_id), session.get(Booking, swap.new_id)
        sub = session.get(Subscription, swap.sub_id)
        assert old is not None and new is not None and sub is not None
        return old.status, new.replaces_booking_id, sub.state


@pytest.fixture
def client(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.asyncio
async def test_a_failing_cancellation_is_retried_with_back_off_then_handed_to_the_person(
    bookings_module: ModuleType, policy_db: Database, client: redis.Redis, tmp_path: Path
) -> None:
    """The city's site fails at every cancellation of the old appointment. Tried at once, not again
    30 s later (back-off 1 min), again after it, then still tried three days on (past the two
    days a confirmed swap used to be looked at); 23 hours before the old appointment one more
    failure gives up: "swap_cancel_failed" (reason failing) once, the old one still booked, the
    swap over, and no request after that. Tried: the old two-day lookback put back on confirmed
    swaps (the three-days try did not happen), no back-off (tried again after 30 s), and a failure
    in the last day treated like any other (nothing told)."""
    failing = [SiteUnavailable("down")] * 10
    swap = confirmed_swap(bookings_module, policy_db, client, tmp_path, 9101, *failing)

    report = await settle_swaps(swap.deps)
    assert (report.errors, report.given_up, len(swap.booker.cancelled)) == (1, 0, 1)
    swap.clock.now = NOW + timedelta(seconds=30)
    assert (await settle_swaps(swap.deps)).waiting == 1 and len(swap.booker.cancelled) == 1
    swap.clock.now = NOW + timedelta(seconds=61)
    await settle_swaps(swap.deps)
    assert len(swap.booker.cancelled) == 2
    assert client.hget(cancel_backoff_key(swap.old_id), "failures") == b"2"
    swap.clock.now = NOW + timedelta(days=3)
    await settle_swaps(swap.deps)
    assert len(swap.booker.cancelled) == 3 and told(policy_db, 9101) == []

    swap.clock.now = OLD_START - timedelta(hours=23)
    report = await settle_swaps(swap.deps)
    assert (report.errors, report.given_up, len(swap.booker.cancelled)) == (1, 1, 4)
    (message,) = told(policy_db, 9101)
    assert (message["event"], message["reason"], message["booking_id"]) == (
        "swap_cancel_failed",
        "failing",
        swap.old_id,
    )
    assert ended(policy_db, swap) == (BookingStatus.CONFIRMED, None, SubscriptionState.DONE)
    swap.clock.now = OLD_START - timedelta(hours=1)
    await settle_swaps(swap.deps)
    assert len(swap.booker.cancelled) == 4 and len(told(policy_db, 9101)) == 1
    assert not client.exists(cancel_backoff_key(swap.old_id))


@pytest.mark.asyncio
async def test_a_refusal_or_a_past_appointment_is_told_at_once(
    bookings_module: ModuleType, policy_db: Database, client: redis.Redis, tmp_path: Path
) -> None:
    """The city refuses to cancel (``appointmentCanNotBeCanceled``): told at once, reason refused,
    with the city's code. A swap whose old appointment is already past when settling comes round
    (a worker down for days): no request, told with reason past. Tried: the refusal given the
    failing reason, and a past old appointment tried at the city (a request was made)."""
    refused = confirmed_swap(bookings_module, policy_db, client, tmp_path, 9201, REFUSED)
    report = await settle_swaps(refused.deps)
    assert (report.refused, len(refused.booker.cancelled)) == (1, 1)
    (message,) = told(policy_db, 9201)
    assert (message["reason"], message["code"]) == ("refused", "appointmentCanNotBeCanceled")
    assert ended(policy_db, refused) == (BookingStatus.CONFIRMED, None, SubscriptionState.DONE)

    past = confirmed_swap(bookings_module, policy_db, client, tmp_path / "past", 9202)
    past.clock.now = OLD_START + timedelta(minutes=5)
    report = await settle_swaps(past.deps)
    assert (report.given_up, past.booker.cancelled) == (1, [])
    (message,) = told(policy_db, 9202)
    assert message["reason"] == "past"
    assert ended(policy_db, past)[1:] == (None, SubscriptionState.DONE)


def test_the_back_off_doubles_from_a_minute_to_an_hour() -> None:
    delays = [swaps.cancel_retry_delay(n) for n in (1, 2, 3, 6, 7, 50)]
    assert [int(d.total_seconds() // 60) for d in delays] == [1, 2, 4, 32, 60, 60]
