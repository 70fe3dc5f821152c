"""The SQLite database locked by a long writer.

Another process opens the farm's database file and holds ``BEGIN IMMEDIATE`` (SQLite's write
lock) for a while, as a backup tool, a migration or a careless ``sqlite3`` shell would. Every MTA
transaction also starts with ``BEGIN IMMEDIATE`` (``shared.db.engine``), so each one waits for the
lock up to ``MTA_DB_BUSY_TIMEOUT_MS`` and then fails with "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.app import build_application, running
from bot.testing import FakeBotApi
from bot.testing.outbox import seed_slot_alerts, statuses
from shared.db.database import Database, open_database
from shared.settings import Settings, load_settings
from tests.support.farm import Farm, wait_until
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    Replica,
    berlin_slot,
)
from worker.broker import CHECKS_QUEUE

FS_OFFICE = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE

_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
if sys.argv[3] == "until-told":
    sys.stdin.readline()
connection.execute("COMMIT")
connection.close()
"""


@contextmanager
def write_lock(
    database_file: Path, hold_s: float, *, until_block_ends: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """Another process holds SQLite's write lock on ``database_file`` for ``hold_s`` seconds (from
    when this returns); the block may wait for it with ``.wait()``. With ``until_block_ends`` it
    holds at least ``hold_s`` and until the block has ended (so the block can wait for an effect)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _HOLDER,
            str(database_file),
            str(hold_s),
            "until-told" if until_block_ends else "timed",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.stdin is not None:
            with contextlib.suppress(OSError):
                holder.stdin.close()  # "until-told": end of input releases it
        if holder.poll() is None:
            holder.wait(hold_s + 30)


# --- the bot's outbox sender -----------------------------------------------------------------------
@pytest.fixture
def json_logs() -> Iterator[None]:
    """Log as ``mta bot`` does in production (JSON lines). structlog's development default renders
    each exception with rich, locals and all, on the event loop: seconds per "database is locked"
    on this machine, which would stall the very sender under test."""
    import structlog

    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


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


class SenderStalled(AssertionError):
    """The running sender did not deliver everything after the lock was released."""


async def _send_all(
    settings: Settings, db: Database, api: FakeBotApi, lock: tuple[Path, float] | None
) -> None:
    """Run the bot's Application until all 40 rows are settled; with ``lock`` (file, seconds),
    take the write lock once a few alerts went out. Raises ``SenderStalled`` when the rows are
    not settled within 20 s after the lock (the Application is stopped cleanly either way; the
    40 answers take 0.5 s each, 8 at a time, so about 3 s of it is the fake's)."""
    client = aioredis.Redis.from_url(settings.redis_url)
    application = build_application(settings, db=db, redis=client)
    try:
        async with running(application):
            if lock is not None:
                await asyncio.to_thread(
                    wait_until, lambda: len(api.sent(method="sendMessage")) >= 4, 30, "4 alerts", 0.05
                )
                with write_lock(*lock) as holder:
                    await asyncio.to_thread(holder.wait)
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(_settled, db) < 40:
                if time.monotonic() > deadline:
                    raise SenderStalled(f"rows after the lock: {statuses(db)}")
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()


def test_sender_waits_out_a_lock_shorter_than_the_busy_timeout(
    tmp_path: Path, redis_url: str, fake_telegram: FakeBotApi, json_logs: None
) -> None:
    """Injected: 40 alerts being sent (Telegram answers each after 0.5 s, so a batch is in flight)
    when another process holds the write lock for 2 s, less than the busy timeout (6 s).
    Asserted: the sender's writes wait; every subscriber gets exactly one alert and every row
    ends ``sent``, without a restart."""
    settings = _sender_settings(tmp_path, redis_url, fake_telegram, 6000)
    db = open_database(settings, migrate=True)
    try:
        seeded = seed_slot_alerts(db, 40)
        fake_telegram.fail("sendMessage", status=200, delay_s=0.5)
        asyncio.run(_send_all(settings, db, fake_telegram, (Path(db.engine.url.database or ""), 2.0)))
        per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
        assert per_chat == dict.fromkeys(seeded.user_ids, 1)
        assert statuses(db) == {"sent": 40}
    finally:
        db.close()


def test_sender_resumes_after_a_lock_longer_than_the_busy_timeout(
    tmp_path: Path, redis_url: str, fake_telegram: FakeBotApi, json_logs: None
) -> None:
    """Injected: as above, but the lock is held 3 s with a busy timeout of 0.5 s: the sender's
    claims, "on the wire" marks and results fail with "database is locked".
    Asserted first: nothing is lost or doubled across a restart of the bot —
    after stopping it cleanly and starting it again every subscriber has exactly one alert and
    every row is ``sent``. Asserted last: the running sender itself
    delivers everything within 20 s of the lock's release, without a restart."""
    settings = _sender_settings(tmp_path, redis_url, fake_telegram, 500)
    db = open_database(settings, migrate=True)
    try:
        seeded = seed_slot_alerts(db, 40)
        fake_telegram.fail("sendMessage", status=200, delay_s=0.5)
        stalled: SenderStalled | None = None
        try:
            asyncio.run(_send_all(settings, db, fake_telegram, (Path(db.engine.url.database or ""), 3.0)))
        except SenderStalled as exc:
            stalled = exc
        fake_telegram.clear_faults()
        asyncio.run(_send_all(settings, db, fake_telegram, None))  # a restart: reconcile, drain
        per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
        assert per_chat == dict.fromkeys(seeded.user_ids, 1)
        assert statuses(db) == {"sent": 40}
        if stalled is not None:
            raise stalled
    finally:
        db.close()


# --- the worker farm's checks ----------------------------------------------------------------------
def _dead_lettered(farm: Farm) -> list[str]:
    """Dispatch ids of the check messages in the dead-letter queue."""
    bodies = farm.redis.hvals(f"mta:{CHECKS_QUEUE}.XQ.msgs")
    return [str(json.loads(body)["args"][1]) for body in bodies]


@pytest.mark.browser
@pytest.mark.slow
def test_checks_wait_out_a_short_lock_and_fail_visibly_on_a_long_one(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected, into a running ``mta scheduler`` + ``mta worker`` (busy timeout 2.5 s): a slot
    released and the write lock held 1 s (longer than a check, shorter than the busy timeout);
    then a second slot released during a lock held at least 4 s and until a scheduler tick has
    failed on it (longer than the busy timeout).
    Asserted: the short lock only delays: the first slot is recorded once and alerted once. During
    the long lock the scheduler's ticks fail with "database is locked" (so it dispatches nothing);
    a check that was under way when the lock came also fails: its message goes to the dead-letter
    queue (``max_retries=0``) and it has no check row; the scheduler and the worker keep running,
    and after the release the next checks record the second slot once with one alert. Every check
    the worker finished has exactly one row (none doubled)."""
    farm = make_farm(MTA_DB_BUSY_TIMEOUT_MS="2500")
    sub = farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FS_OFFICE])
    worker, scheduler = farm.start()
    wait_until(lambda: len(farm.checks()) >= 2, 90, "two checks before the lock")
    database_file = farm.root / "mta.db"

    first = berlin_slot(days_ahead=2, hour=9)
    replica.add_slots(FS_OFFICE, [first, first + 900])
    with write_lock(database_file, 1.0) as holder:
        holder.wait()
    wait_until(farm.alerts, 60, "the first slot's alert")
    assert farm.slots() == [(FS_OFFICE, first, 1)]
    assert _dead_lettered(farm) == [], "a lock within the busy timeout fails nothing"

    second = berlin_slot(days_ahead=3, hour=9)

    def locked_ticks() -> list[dict[str, Any]]:
        return [e for e in scheduler.events("scheduler_tick_failed") if "locked" in e["error"]]

    # held at least 4 s and until a scheduler tick has met it (the scheduler writes only when it
    # re-reads the targets, every 5 s: a fixed 4 s lock could fall between two such writes)
    with write_lock(database_file, 4.0, until_block_ends=True):
        replica.add_slots(FS_OFFICE, [second, second + 900])
        wait_until(locked_ticks, 30, "a scheduler tick to meet the lock")
    released_at = datetime.now(UTC)
    wait_until(lambda: len(farm.slots()) == 2, 60, "the second slot after the release")
    seen = len(farm.checks())
    wait_until(lambda: len(farm.checks()) >= seen + 2, 60, "two more checks")

    assert worker.popen.poll() is None and scheduler.popen.poll() is None, farm.report()
    assert farm.slots() == sorted([(FS_OFFICE, first, 1), (FS_OFFICE, second, 1)])
    assert sorted((s, ep) for s, _slot, ep in farm.alerts()) == [(sub, 1), (sub, 1)]
    assert len({slot for _s, slot, _ep in farm.alerts()}) == 2
    assert locked_ticks(), "the scheduler met the long lock (and kept running)"
    failed = _dead_lettered(farm)  # a check dispatched just before the lock: timing decides
    keys = {c.check_key for c in farm.checks()}
    assert not keys & set(failed), "a failed check left no row"
    assert any(c.started_at > released_at for c in farm.checks())
    assert scheduler.stop() == 0  # no more dispatches: the worker's log and the rows settle
    wait_until(
        lambda: len(worker.events("check_done")) == len(farm.checks()),
        20,
        "every finished check to have exactly one row",
    )
    assert not any(event["duplicate"] for event in worker.events("check_done"))
