"""The SQLite database locked by a long writer.

Another process opens the farm's database file and holds ``BEGIN IMMEDIATE`` (SQLite's write
lock) for a while, as a backup tool, a migration or a careless ``sqlite3`` shell would. Every MTA
transaction also starts with ``BEGIN IMMEDIATE`` (``shared.db.engine``), so each one waits for the
lock up to ``MTA_DB_BUSY_TIMEOUT_MS`` and then fails with "database is locked".
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.app import build_application, running
from bot.testing import FakeBotApi
from bot.testing.outbox import seed_slot_alerts, statuses
from shared.db.database import Database, open_database
from shared.settings import Settings, load_settings

_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
connection.close()
"""


@contextmanager
def write_lock(database_file: Path, hold_s: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holds SQLite's write lock on ``database_file`` for ``hold_s`` seconds
    (from when this returns); the block may wait for it with ``.wait()``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(database_file), str(hold_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None:
            holder.wait(hold_s + 30)


# --- the bot's outbox sender -----------------------------------------------------------------------
@pytest.fixture
def fake_telegram() -> Iterator[FakeBotApi]:
    with FakeBotApi() as api:
        yield api


def _sender_settings(tmp_path: Path, redis_url: str, api: FakeBotApi, busy_timeout_ms: int) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        env="test",
        pacer="none",
        telegram_token=api.token,
        telegram_api_base_url=api.base_url,
        telegram_timeout_s=5.0,
        outbox_sweep_s=0.5,
        db_busy_timeout_ms=busy_timeout_ms,
    )


def _settled(db: Database) -> int:
    counts = statuses(db)
    return counts.get("sent", 0) + counts.get("dead", 0)


@pytest.mark.parametrize(
    ("busy_timeout_ms", "hold_s"),
    [pytest.param(6000, 2.0, id="shorter-than-busy-timeout"), pytest.param(500, 3.0, id="longer")],
)
def test_sender_keeps_its_rows_while_the_database_is_locked(
    tmp_path: Path, redis_url: str, fake_telegram: FakeBotApi, busy_timeout_ms: int, hold_s: float
) -> None:
    """Injected: 40 alerts being sent (Telegram answers each after 0.5 s, so a batch is in flight)
    when another process takes the write lock for ``hold_s``: once for less than the busy timeout
    (the sender's writes wait), once for six times the busy timeout (its claims, "on the wire"
    marks and results fail with "database is locked").
    Asserted, without restarting the bot: after the lock is released every subscriber gets
    exactly one alert and every outbox row ends ``sent``."""
    settings = _sender_settings(tmp_path, redis_url, fake_telegram, busy_timeout_ms)
    db = open_database(settings, migrate=True)
    try:
        seeded = seed_slot_alerts(db, 40)
        fake_telegram.fail("sendMessage", status=200, delay_s=0.5)
        database_file = Path(db.engine.url.database or "")

        async def main() -> None:
            client = aioredis.Redis.from_url(settings.redis_url)
            application = build_application(settings, db=db, redis=client)
            try:
                async with running(application):
                    while len(fake_telegram.sent(method="sendMessage")) < 4:
                        await asyncio.sleep(0.05)
                    with write_lock(database_file, hold_s) as holder:
                        await asyncio.to_thread(holder.wait)
                    deadline = time.monotonic() + 45
                    while await asyncio.to_thread(_settled, db) < 40:
                        assert time.monotonic() < deadline, statuses(db)
                        await asyncio.sleep(0.1)
            finally:
                await client.aclose()

        asyncio.run(main())
        per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
        assert per_chat == dict.fromkeys(seeded.user_ids, 1)
        assert statuses(db) == {"sent": 40}
    finally:
        db.close()
