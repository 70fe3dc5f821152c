"""The worker's actors on Dramatiq's ``StubBroker``: a message goes through a real ``Worker`` into the
actor, without a Redis broker.

``check_target`` runs in the runtime ``BrowserMiddleware`` builds at worker boot (real Chromium,
the test's SQLite database, the project's Redis), with the site adapter replaced by a
``FakeAdapter``; ``book_slot`` and ``adopt_appointment`` are checked to reach their functions with
the message's arguments. The actor modules declare their actors against the broker the entry point set
(``worker.broker.current_broker``), so this broker is set before they are imported; when another
test of the session imported them first, the two actors are declared on this broker for the test.
Real Redis brokers stay in the farm and fault tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from shared.contracts import CHECKS_QUEUE
from shared.db.database import Database
from shared.db.models import Check, Slot, Target
from shared.domain import CheckOutcome, Observation, SlotSeen, office_key, utcnow
from shared.settings import Settings
from worker.broker import broker_middleware
from worker.sites.base import FakeAdapter

pytestmark = [pytest.mark.browser]

SERVICE = 1063475
OFFICE = 102522


@dataclass
class StubWorker:
    broker: StubBroker
    worker: dramatiq.Worker
    actors: ModuleType
    bookings: ModuleType


@pytest.fixture
def stub_worker(worker_settings: Settings, db: Database) -> Iterator[StubWorker]:
    """A ``StubBroker`` with a worker process's middleware (``BrowserMiddleware`` builds the runtime),
    the actors declared on it, and one running ``Worker``."""
    broker = StubBroker(middleware=broker_middleware(worker_settings, with_browser=True))
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    from worker import actors, bookings

    declared: list[dramatiq.Actor[Any, Any]] = [
        actors.check_target,
        bookings.book_slot,
        bookings.adopt_appointment,
    ]
    previous = [actor.broker for actor in declared]
    for actor in declared:
        if actor.broker is not broker:  # imported earlier in this session, against another broker
            actor.broker = broker
            broker.declare_actor(actor)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        yield StubWorker(broker=broker, worker=worker, actors=actors, bookings=bookings)
    finally:
        worker.stop()
        broker.close()
        for actor, old in zip(declared, previous, strict=True):
            actor.broker = old


def _target(db: Database) -> int:
    with db.transaction() as session:
        target = Target(service_id=SERVICE, service_count=1, office_key=office_key([OFFICE]))
        session.add(target)
        session.flush()
        return int(target.id)


def test_check_target_runs_the_adapter_and_records_the_check(stub_worker: StubWorker, db: Database) -> None:
    """A ``check_target`` message runs the site's adapter in the runtime's browser pool and records
    the check under the dispatch id with the slot it saw; the same message again is recorded once.
    Tried: the dispatch id not used as the check key (a new key per delivery: fails), and the
    adapter looked up under a wrong site (the actor raises: fails)."""
    from worker.broker import current_runtime

    start = (utcnow() + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    seen = Observation(
        "munich",
        SERVICE,
        1,
        (OFFICE,),
        observed_at=datetime.now(UTC),
        slots=[SlotSeen(OFFICE, SERVICE, start)],
    )
    adapter = FakeAdapter([seen, seen])
    current_runtime().adapters["munich"] = adapter  # the runtime the middleware built at boot
    target_id = _target(db)

    for _ in range(2):  # a redelivered message: the same dispatch id
        stub_worker.actors.check_target.send(target_id, "dispatch-1", [], None)
        stub_worker.broker.join(CHECKS_QUEUE, fail_fast=True)
        stub_worker.worker.join()

    assert adapter.walks + adapter.warm_checks == 2
    with db.read() as session:
        checks = session.scalars(select(Check).where(Check.target_id == target_id)).all()
        slots = session.scalars(select(Slot)).all()
    assert [(c.outcome, c.slots_seen, c.check_key) for c in checks] == [(CheckOutcome.OK, 1, "dispatch-1")]
    assert [(s.office_id, s.service_id, s.start_at.astimezone(UTC)) for s in slots] == [
        (OFFICE, SERVICE, start.astimezone(UTC))
    ]


def test_book_slot_message_reaches_the_booking_function(
    stub_worker: StubWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``book_slot`` message reaches ``run_booking`` with its arguments, on the runtime's
    database. Tried: the actor calling ``run_booking`` with ``manual`` dropped (fails)."""
    from worker.broker import current_runtime

    calls: list[dict[str, Any]] = []

    async def record(deps: Any, **kwargs: Any) -> Any:
        calls.append({"db": deps.db, **kwargs})
        return stub_worker.bookings.BookingReport(outcome="recorded")

    monkeypatch.setattr(stub_worker.bookings, "run_booking", record)
    requested = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)

    stub_worker.bookings.book_slot.send(7, 42, 3, requested.isoformat(), True)
    stub_worker.broker.join(stub_worker.bookings.book_slot.queue_name, fail_fast=True)
    stub_worker.worker.join()

    assert calls == [
        {
            "db": current_runtime().db,
            "user_id": 7,
            "slot_id": 42,
            "subscription_id": 3,
            "requested_at": requested,
            "manual": True,
        }
    ]


def test_adopt_appointment_message_reaches_the_swap_function(
    stub_worker: StubWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``adopt_appointment`` message, built by name as the bot sends it
    (``shared.enqueue.send_by_name``), reaches ``worker.swaps.adopt`` with the runtime's
    database and each argument in its place; the sealed credentials are handed on as sealed (the
    real read is in tests/booking/test_swap_worker.py). Tried: the actor passing ``any_office``
    and ``autobook`` the other way round (fails)."""
    from shared import enqueue, swaps
    from shared.contracts import ADOPT_APPOINTMENT_ACTOR, BOOKINGS_QUEUE
    from worker.broker import current_runtime

    calls: list[dict[str, Any]] = []

    async def record(deps: Any, **kwargs: Any) -> Any:
        calls.append({"db": deps.db, **kwargs})
        return 1

    monkeypatch.setattr(stub_worker.bookings.swaps, "adopt", record)
    sealed = swaps.seal_credentials("123456", "ab12")

    enqueue.send_by_name(
        stub_worker.broker, BOOKINGS_QUEUE, ADOPT_APPOINTMENT_ACTOR, (7, 3, sealed, True, False)
    )
    stub_worker.broker.join(BOOKINGS_QUEUE, fail_fast=True)
    stub_worker.worker.join()

    assert calls == [
        {
            "db": current_runtime().db,
            "user_id": 7,
            "profile_id": 3,
            "sealed": sealed,
            "any_office": True,
            "autobook": False,
        }
    ]
