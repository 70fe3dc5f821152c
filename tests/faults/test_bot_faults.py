"""The bot under Telegram trouble and sudden death: every alert arrives, none twice.

The real ``mta bot`` process (or the real Application) talks to the fake Bot API over HTTP; the
faults are injected in that server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from bot.app import build_application, running
from bot.outbox_store import UNCONFIRMED
from bot.testing import FakeBotApi
from bot.testing.outbox import seed_slot_alerts, statuses
from shared.db.database import Database
from shared.db.models import Notification
from shared.settings import Settings, load_settings
from tests.conftest import free_port
from tests.support.databases import MigratedTemplates, open_migrated


@pytest.fixture
def fake_telegram() -> Iterator[FakeBotApi]:
    with FakeBotApi() as api:
        yield api


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, fake_telegram: FakeBotApi) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        env="test",
        pacer="none",
        telegram_token=fake_telegram.token,
        telegram_api_base_url=fake_telegram.base_url,
        telegram_timeout_s=3.0,
        outbox_sweep_s=0.5,
    )


@pytest.fixture
def db(settings: Settings, migrated_templates: MigratedTemplates) -> Iterator[Database]:
    database = open_migrated(settings, migrated_templates)
    yield database
    database.close()


def _settled(db: Database) -> int:
    counts = statuses(db)
    return counts.get("sent", 0) + counts.get("dead", 0)


def test_a_fifth_of_calls_failing_still_delivers_everything_once(
    settings: Settings, db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected on sendMessage, each for ~7% of calls (20% together): 429 with retry_after 1 s, 500,
    and a timeout (the answer held 4 s, past the bot's 3 s read timeout, then 504 — not performed).
    Asserted: each of 30 subscribers gets exactly one alert, and every outbox row ends ``sent``."""
    fake_telegram.fail("sendMessage", status=429, retry_after=1, ratio=0.07, seed=1)
    fake_telegram.fail("sendMessage", status=500, ratio=0.075, seed=2)
    fake_telegram.fail("sendMessage", status=504, delay_s=4.0, ratio=0.08, seed=3)
    seeded = seed_slot_alerts(db, 30)

    async def main() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        application = build_application(settings, db=db, redis=client)
        try:
            async with running(application):
                deadline = time.monotonic() + 60
                while await asyncio.to_thread(_settled, db) < 30:
                    assert time.monotonic() < deadline, statuses(db)
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    asyncio.run(main())
    per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
    assert per_chat == dict.fromkeys(seeded.user_ids, 1)
    assert statuses(db) == {"sent": 30}
    refused = Counter(a["status"] for a in fake_telegram.attempts("sendMessage") if a["status"] != 200)
    assert refused, "the faults should have fired"


def _start_bot(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MTA_ENV": "test",
        "MTA_DATA_DIR": str(settings.data_dir),
        "MTA_REDIS_URL": settings.redis_url,
        "MTA_TELEGRAM_TOKEN": settings.telegram_token.get_secret_value() if settings.telegram_token else "",
        "MTA_TELEGRAM_API_BASE_URL": settings.telegram_api_base_url,
        "MTA_TELEGRAM_TIMEOUT_S": "5",
        "MTA_OUTBOX_SWEEP_S": "0.5",
        "MTA_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mta", "bot"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(settings.data_dir / "bot.log", "ab"),
    )


HOLD_S = 8.0
"""How long the fake holds the kill test's requests: the kill comes while they are held."""


def _after(delay_s: float, condition: Callable[[], object]) -> object:
    time.sleep(delay_s)
    return condition()


def _wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_killed_mid_batch_and_restarted_sends_nothing_twice_and_loses_nothing(
    settings: Settings, db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected: the first 8 sendMessage calls answered after 0.3 s, every later one held by the
    fake for 8 s (slow, but performed even if the client hangs up, as Telegram does), and SIGKILL
    of the `mta bot` process once 8 alerts were accepted and every row the sender marked
    ``sending`` has its request held by the fake, i.e. with requests in flight. Asserted after a
    restart of the Application: each subscriber got exactly one alert, every outbox row ends
    ``sent``, and some rows were settled as "delivery unconfirmed" (in flight at the kill, not
    resent).

    Not covered (documented in bot/sender.py): a kill in the millisecond between marking a row
    ``sending`` and its request reaching Telegram loses that alert rather than risk a double; the
    kill waits for a state where no row is in that millisecond (a timer could hit it)."""
    fake_telegram.fail("sendMessage", status=200, delay_s=0.3, times=8)
    fake_telegram.fail("sendMessage", status=200, delay_s=HOLD_S)
    seeded = seed_slot_alerts(db, 40)
    bot = _start_bot(settings)

    def on_the_wire() -> int:
        """Rows marked ``sending`` when each has its request held by the fake, else 0."""
        sending = statuses(db).get("sending", 0)
        return sending if sending == fake_telegram.in_flight("sendMessage") else 0

    try:
        _wait(lambda: len(fake_telegram.sent(method="sendMessage")) >= 8, 30, "the first alerts")
        _wait(lambda: on_the_wire() and _after(0.3, on_the_wire), 30, "requests on the wire, settled")
        bot.send_signal(signal.SIGKILL)
        bot.wait(timeout=10)
    finally:
        if bot.poll() is None:
            bot.kill()
    # requests still held by the fake when the bot died are performed now
    _wait(lambda: fake_telegram.in_flight("sendMessage") == 0, HOLD_S + 10, "the held requests")
    delivered_before = len(fake_telegram.sent(method="sendMessage"))
    assert 8 < delivered_before < 40, "killed mid-batch, with requests in flight"
    fake_telegram.clear_faults()

    async def restart() -> None:  # the real Application again, in this process (one import less)
        client = aioredis.Redis.from_url(settings.redis_url)
        application = build_application(settings, db=db, redis=client)
        try:
            async with running(application):
                deadline = time.monotonic() + 45
                while await asyncio.to_thread(_settled, db) < 40:
                    assert time.monotonic() < deadline, statuses(db)
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    asyncio.run(restart())
    per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
    missing = [u for u in seeded.user_ids if u not in per_chat]
    tried = [
        (a["chat_id"], a["status"]) for a in fake_telegram.attempts("sendMessage") if a["chat_id"] in missing
    ]
    assert per_chat == dict.fromkeys(seeded.user_ids, 1), f"{delivered_before} before the kill; {tried=}"
    assert statuses(db) == {"sent": 40}
    with db.transaction() as session:
        unconfirmed = session.scalar(
            select(func.count()).select_from(Notification).where(Notification.last_error == UNCONFIRMED)
        )
    assert unconfirmed, "some alerts were in flight at the kill (and were not resent)"


def test_without_redis_the_sweep_still_delivers(
    settings: Settings, db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected: Redis unreachable (a closed port) for the wake-ups, heartbeat and captcha relay.
    Asserted: the periodic sweep still delivers every alert once and the bot keeps running."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    seeded = seed_slot_alerts(db, 5)

    async def main() -> None:
        client = aioredis.Redis.from_url(dead_redis, socket_connect_timeout=0.5)
        application = build_application(settings, db=db, redis=client)
        try:
            async with running(application):
                deadline = time.monotonic() + 30
                while await asyncio.to_thread(_settled, db) < 5:
                    assert time.monotonic() < deadline, statuses(db)
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    asyncio.run(main())
    per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
    assert per_chat == dict.fromkeys(seeded.user_ids, 1)
