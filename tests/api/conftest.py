"""Status-service fixtures: a migrated SQLite database, settings, the app in-process and on a port.

``seed`` fills the database with a small, realistic farm state through the models (a subscriber
with a profile, a watched target, checks, slots, alerts, a booking), so tests assert on what the
real tables hold, and can check that personal data never reaches the public views.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import redis
import structlog
import uvicorn
from fastapi.testclient import TestClient

from api.app import ApiServer, create_app
from shared.db.database import Database
from shared.db.models import (
    Booking,
    BookingProfile,
    BookingStatus,
    Check,
    Notification,
    NotificationKind,
    NotificationStatus,
    Slot,
    Subscription,
    Target,
    TargetState,
    User,
)
from shared.domain import CheckOutcome, office_key
from shared.settings import Settings, load_settings
from tests.conftest import free_port, wait_for_port
from tests.support.databases import MigratedTemplates, open_migrated
from worker import heartbeat

ADMIN_TOKEN = "test-admin-token-0123456789"
USER_ID = 4242424242
"""The seeded subscriber's Telegram id (also their chat id): must never show publicly."""
PERSON = {
    "first_name": "Erika",
    "last_name": "Mustermann",
    "email": "erika@example.org",
    "phone": "+49 151 2345678",
}
SITE = "munich"
SERVICE_ID = 1063475  # Wohnsitzanmeldung
OFFICE_ID = 102522  # Bürgerbüro Orleansplatz


@pytest.fixture(autouse=True)
def _forget_logging_config() -> Iterator[None]:
    """CLI tests configure structlog onto pytest's captured stderr: put the defaults back after."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
def api_settings(tmp_path: Path, redis_url: str) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", redis_url=redis_url, env="test", pacer="none", admin_token=ADMIN_TOKEN
    )


@pytest.fixture
def db(api_settings: Settings, migrated_templates: MigratedTemplates) -> Iterator[Database]:
    database = open_migrated(api_settings, migrated_templates)
    yield database
    database.close()


@pytest.fixture
def client(api_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, refresh_s=0.2)) as test_client:
        yield test_client


@dataclass
class LiveServer:
    url: str
    server: ApiServer


@contextmanager
def serve(settings: Settings, refresh_s: float = 0.3) -> Iterator[LiveServer]:
    """The app served by uvicorn on a free port of 127.0.0.1, in a thread."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, refresh_s=refresh_s),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = ApiServer(config)
    thread = threading.Thread(target=server.run, name="api-test-server", daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", server=server)
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def live_server(api_settings: Settings, db: Database) -> Iterator[LiveServer]:
    with serve(api_settings) as server:
        yield server


def farm_alive(redis_url: str, *, bot: bool = True) -> None:
    """What a running farm leaves in Redis: worker and scheduler heartbeats, the leader, the bot's."""
    client = redis.Redis.from_url(redis_url)
    heartbeat.beat(client, "worker", "testhost:101", {"browser": "ready", "contexts_open": 2}, ttl_s=600)
    heartbeat.beat(client, "scheduler", "testhost:202:abcd", {"leader": True}, ttl_s=600)
    client.set(heartbeat.LEADER_KEY, "testhost:202:abcd", px=600_000)
    if bot:
        client.set("mta:heartbeat:bot", int(time.time()), ex=600)
    client.close()


@dataclass
class Seeded:
    now: datetime
    target_id: int
    slot_ids: list[int]
    alert_ids: list[int]
    booking_id: int
    subscription_id: int


def seed(db: Database, now: datetime | None = None) -> Seeded:
    """A subscriber watching one service at one office, two hours of checks, three slot episodes."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    with db.transaction() as s:
        s.add(User(id=USER_ID, language="de"))
        s.flush()
        s.add(BookingProfile(user_id=USER_ID, **PERSON))
        sub = Subscription(
            user_id=USER_ID,
            site=SITE,
            service_id=SERVICE_ID,
            office_ids=[OFFICE_ID],
            date_from=date.today(),
            date_to=date.today() + timedelta(days=60),
        )
        s.add(sub)
        target = Target(
            site=SITE,
            service_id=SERVICE_ID,
            office_key=office_key([OFFICE_ID]),
            state=TargetState.OK,
            last_check_at=now - timedelta(seconds=20),
            last_success_at=now - timedelta(seconds=20),
        )
        s.add(target)
        s.flush()
        for i in range(12):  # a check every 10 minutes, the newest 20 s ago
            started = now - timedelta(seconds=20) - timedelta(minutes=10 * (11 - i))
            s.add(
                Check(
                    target_id=target.id,
                    started_at=started,
                    duration_ms=120,
                    outcome=CheckOutcome.NO_SLOTS if i % 4 else CheckOutcome.OK,
                    slots_seen=0 if i % 4 else 1,
                    worker_id="testhost:1",
                )
            )
        s.add(
            Check(
                target_id=target.id,
                started_at=now - timedelta(hours=1, minutes=55),
                duration_ms=3000,
                outcome=CheckOutcome.RATE_LIMITED,
                error="RateLimited: 429",
                worker_id="testhost:1",
            )
        )
        slots = []
        for i, minutes_ago in enumerate((95, 45, 15)):  # first seen just after a check
            first_seen = (
                now - timedelta(seconds=20) - timedelta(minutes=minutes_ago - 5) + timedelta(seconds=1)
            )
            slot = Slot(
                site=SITE,
                office_id=OFFICE_ID,
                service_id=SERVICE_ID,
                start_at=(now + timedelta(days=3 + i)).replace(hour=8, minute=30, second=0),
                first_seen_at=first_seen,
                last_seen_at=now - timedelta(seconds=20),
                gone_at=None if i else now - timedelta(minutes=30),
            )
            s.add(slot)
            slots.append(slot)
        s.flush()
        alerts = []
        for slot, status in zip(
            slots,
            (NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.PENDING),
            strict=True,
        ):
            note = Notification(
                subscription_id=sub.id,
                user_id=USER_ID,
                chat_id=USER_ID,
                slot_id=slot.id,
                episode=1,
                kind=NotificationKind.SLOT,
                text=f"Hallo {PERSON['first_name']}, freier Termin!",
                status=status,
                attempts=1,
                created_at=slot.first_seen_at,
                sent_at=slot.first_seen_at + timedelta(seconds=2)
                if status == NotificationStatus.SENT
                else None,
                last_error="Forbidden: bot was blocked" if status == NotificationStatus.FAILED else None,
            )
            s.add(note)
            alerts.append(note)
        booking = Booking(
            user_id=USER_ID,
            subscription_id=sub.id,
            slot_id=slots[2].id,
            site=SITE,
            service_id=SERVICE_ID,
            office_id=OFFICE_ID,
            start_at=slots[2].start_at,
            status=BookingStatus.RESERVED,
            process_id="proc-secret-123",
            auth_key="auth-secret-xyz",
        )
        s.add(booking)
        s.flush()
        return Seeded(
            now=now,
            target_id=target.id,
            slot_ids=[sl.id for sl in slots],
            alert_ids=[a.id for a in alerts],
            booking_id=booking.id,
            subscription_id=sub.id,
        )


PERSONAL_STRINGS = (
    str(USER_ID),
    PERSON["first_name"],
    PERSON["last_name"],
    PERSON["email"],
    PERSON["phone"],
    "proc-secret-123",
    "auth-secret-xyz",
)
