"""Booking fixtures: settings pointing at the replica, a migrated SQLite database, a browser pool,
the booking dependencies, subscribers with profiles, and a real Dramatiq worker on the bookings queue.

Everything is real: Chromium (Debian's, through ``BrowserPool``), Redis (``redis_server``), the
replica of the city's site (``replica``), SQLite. Slots reach the database the way a check records
them (``shared.recording.record_observation``), built from what the replica serves, so the tests do
not depend on the check walk.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
import redis

from shared.db.database import Database, open_database
from shared.db.models import Booking, BookingProfile, Notification, Slot, Subscription, Target, User
from shared.domain import Observation, SlotSeen, office_key
from shared.recording import record_observation, sync_targets
from shared.settings import Settings, load_settings, reset_settings_cache
from tests.support.databases import MigratedTemplates, open_migrated
from tests.support.replica import Replica, berlin_slot

pytestmark = [pytest.mark.browser]

ORLEANSPLATZ = 102522
WOHNSITZANMELDUNG = 1063475
"""Bürgerbüro Orleansplatz: captcha, one 15-minute unit per appointment, activation 30 min."""
FS_OFFICE = 10308174
FS_SERVICE = 1071896
"""Führerscheinstelle (Umschreibung): no captcha, two units, Geburtsdatum required, activation 60 min."""
UNIT_S = 900


@pytest.fixture(scope="session")
def bookings_module(redis_server: Any) -> Iterator[ModuleType]:
    """``worker.bookings``, imported once the test Redis is known and the broker built from it, as
    an entry point does (``worker.broker.setup_broker``: the actors declare against it)."""
    from worker.broker import setup_broker

    previous = os.environ.get("MTA_REDIS_URL")
    os.environ.setdefault("MTA_REDIS_URL", redis_server.url)
    reset_settings_cache()
    setup_broker()
    from worker import bookings

    yield bookings
    if previous is None:
        os.environ.pop("MTA_REDIS_URL", None)
    reset_settings_cache()


@pytest.fixture
def booking_settings(tmp_path: Path, redis_url: str, replica: Replica) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        env="test",
        pacer="none",
        site_url=replica.page_url,
        booking_budget_per_minute=600,
        site_budget_per_minute=600,
        trace_on_failure=False,
        browser_warm_sessions=4,
    )


@pytest.fixture
def db(booking_settings: Settings, migrated_templates: MigratedTemplates) -> Iterator[Database]:
    database = open_migrated(booking_settings, migrated_templates)
    yield database
    database.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def make_booker() -> Any:
    from worker.captcha import InPageAltchaSolver
    from worker.pacer import NoPacer
    from worker.sites.munich.booker import MunichBooker

    return MunichBooker(solver=InPageAltchaSolver(), pacer=NoPacer())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_pool(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """One browser for a module's tests (each booking still gets a fresh context); tests using it
    run in the module's event loop (``pytest.mark.asyncio(loop_scope="module")``)."""
    from worker.browser import BrowserPool

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("pool"), env="test", trace_on_failure=False, browser_warm_sessions=4
    )
    async with BrowserPool(settings, trace=False) as browser_pool:
        yield browser_pool


@pytest.fixture
def pool(shared_pool: Any) -> Any:
    return shared_pool


@pytest.fixture
def deps(
    bookings_module: ModuleType,
    booking_settings: Settings,
    db: Database,
    redis_client: redis.Redis,
    pool: Any,
) -> Any:
    return bookings_module.BookingDeps(
        settings=booking_settings, db=db, redis=redis_client, pool=pool, booker=make_booker()
    )


# --- people and slots ----------------------------------------------------------------------------
@dataclass
class Person:
    user_id: int
    email: str
    subscription_id: int


def add_person(
    db: Database,
    user_id: int,
    *,
    service_id: int,
    office_id: int,
    email: str | None = None,
    autobook: bool = True,
    custom_fields: dict[str, str] | None = None,
) -> Person:
    """A user with a stored profile (written directly: tests may store what the bot would refuse),
    who agreed to MTA keeping it."""
    email = email or f"person{user_id}@example.org"
    with db.transaction() as session:
        session.add(User(id=user_id, language="de", consented_at=datetime.now(UTC)))
        session.flush()
        session.add(
            BookingProfile(
                user_id=user_id,
                first_name="Erika",
                last_name=f"Muster{user_id}",
                email=email,
                phone="+491511234567",
                custom_fields=custom_fields if custom_fields is not None else {"date_of_birth": "01.02.1990"},
            )
        )
        subscription = Subscription(
            user_id=user_id, service_id=service_id, office_ids=[office_id], autobook=autobook
        )
        session.add(subscription)
        session.flush()
        return Person(user_id, email, subscription.id)


def observe(db: Database, *, office_id: int, service_id: int, starts: list[int]) -> list[int]:
    """Record a check that saw ``starts`` (epoch s) as free, as ``check_target`` would; returns the
    new slot ids (their alerts are in the outbox when this returns)."""
    with db.transaction() as session:
        sync_targets(session)
        target = (
            session.query(Target)
            .filter_by(service_id=service_id, service_count=1, office_key=office_key([office_id]))
            .one()
        )
        observation = Observation(
            site="munich",
            service_id=service_id,
            service_count=1,
            office_ids=(office_id,),
            observed_at=datetime.now(UTC),
            slots=[SlotSeen(office_id, service_id, datetime.fromtimestamp(ts, UTC)) for ts in starts],
        )
        result = record_observation(session, target.id, observation, worker_id="test", duration_ms=5)
        return list(result.new_slot_ids)


POLICY_NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
"""The policy tests' fixed clock."""


def add_slot(
    db: Database, minutes_ahead: int, *, office_id: int = FS_OFFICE, service_id: int = FS_SERVICE
) -> int:
    """A slot row starting ``minutes_ahead`` after ``POLICY_NOW``, first seen then; its id."""
    with db.transaction() as session:
        slot = Slot(
            site="munich",
            office_id=office_id,
            service_id=service_id,
            service_count=1,
            start_at=POLICY_NOW + timedelta(minutes=minutes_ahead),
            first_seen_at=POLICY_NOW,
            last_seen_at=POLICY_NOW,
        )
        session.add(slot)
        session.flush()
        return slot.id


def bookings(db: Database) -> list[Booking]:
    with db.transaction() as session:
        rows = session.query(Booking).order_by(Booking.id).all()
        for row in rows:
            session.expunge(row)
        return rows


def booking_events(db: Database, user_id: int | None = None) -> list[tuple[int | None, str]]:
    """(booking id, event) of every booking/reminder notification, oldest first."""
    with db.transaction() as session:
        query = session.query(Notification).filter(Notification.booking_id.is_not(None))
        if user_id is not None:
            query = query.filter(Notification.user_id == user_id)
        return [(n.booking_id, str(n.payload.get("event"))) for n in query.order_by(Notification.id)]


def notification_payloads(db: Database, event: str) -> list[dict[str, Any]]:
    with db.transaction() as session:
        rows = session.query(Notification).filter(Notification.booking_id.is_not(None)).all()
        return [dict(n.payload) for n in rows if n.payload.get("event") == event]


def wait_until(condition: Callable[[], bool], timeout_s: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def fs_slot(replica: Replica, days_ahead: int, hour: int) -> int:
    """One Führerscheinstelle appointment (two consecutive units) released at the replica."""
    start = berlin_slot(days_ahead=days_ahead, hour=hour)
    replica.add_slots(FS_OFFICE, [start, start + UNIT_S])
    return start


def replica_now(replica: Replica) -> datetime:
    return datetime.fromisoformat(replica.control("GET", "/clock")["now"])


# --- a real Dramatiq worker on the bookings queue --------------------------------------------------
@dataclass
class RunningWorker:
    broker: Any
    deps: Any


@pytest.fixture
def dramatiq_worker(
    bookings_module: ModuleType, booking_settings: Settings, db: Database
) -> Iterator[RunningWorker]:
    """A Dramatiq worker (4 threads, one event loop) consuming ``bookings`` from the test Redis, with
    the worker's own ``BrowserMiddleware``: it opens the runtime (browser pool, booker, its own
    connection to the test's database (``db`` migrated it first), Redis) at worker boot and closes
    it at shutdown, as in ``mta worker``. The booking actors are bound to this broker for the test,
    so they find that runtime."""
    import dramatiq

    from worker.broker import BOOKINGS_QUEUE, current_runtime, make_broker

    actors = [
        bookings_module.book_slot,
        bookings_module.cancel_booking,
        bookings_module.poll_booking_states,
        bookings_module.adopt_appointment,
    ]
    previous = [actor.broker for actor in actors]
    broker = make_broker(booking_settings, with_browser=True)
    for actor in actors:
        actor.broker = broker
        broker.declare_actor(actor)
    worker = dramatiq.Worker(broker, queues={BOOKINGS_QUEUE}, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        deps = bookings_module.runtime_deps(current_runtime(broker))  # fails when Chromium did not start
        yield RunningWorker(broker=broker, deps=deps)
    finally:
        worker.stop(timeout=10_000)
        broker.close()
        for actor, old in zip(actors, previous, strict=True):
            actor.broker = old


# --- the database on both backends (policy tests) -------------------------------------------------
from tests.shared.conftest import (  # noqa: E402,F401  (fixtures)
    migrated_postgres_url,
    postgres_server_url,
    postgres_url,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def policy_db(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> Iterator[Database]:
    """A migrated database on SQLite and on PostgreSQL (skipped with a reason when none answers);
    copies of the session's migrated templates."""
    url = "" if request.param == "sqlite" else str(request.getfixturevalue("migrated_postgres_url"))
    settings = load_settings(data_dir=tmp_path, database_url=url, env="test")
    database = open_migrated(settings, migrated_templates) if not url else open_database(settings)
    yield database
    database.close()
