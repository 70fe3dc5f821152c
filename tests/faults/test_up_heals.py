"""`mta up` heals itself: each role SIGKILLed in turn comes back, and no alert is lost or doubled.

The real command runs (`mta up --replica <an empty scenario>`) with a Telegram token pointed at
the repo's fake Bot API, so every role runs: its own redis-server, the replica, scheduler, a
worker with Chromium, the bot and the api. The test subscribes one person, then for each role:
SIGKILL its process (found in `mta up`'s pid registry), release one new slot at once (the role
may still be down), and wait until that slot's alert reached the fake Telegram. Nobody restarts
anything by hand. At the end every released slot was sent exactly once, and `/api/v1/status`
lists a dated restart event for every role.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.testing import FakeBotApi
from mta import procs
from shared.db.database import open_database
from shared.db.models import Notification, NotificationKind, NotificationStatus, Slot, Subscription, User
from shared.domain import SITE_TIMEZONE
from shared.settings import load_settings
from tests.conftest import free_port
from tests.ops.test_up import Output
from tests.support.farm import wait_until
from tests.support.replica import FUEHRERSCHEIN_UMSCHREIBUNG, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

CHAT = 5_001
OFFICE = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE
ROLES = ("redis", "worker", "scheduler", "bot", "api", "replica")
"""Redis first: the farm's events live in it, and it comes back empty (no persistence)."""


Up = tuple[subprocess.Popen[str], Output, dict[str, str]]


@pytest.fixture
def telegram() -> Iterator[FakeBotApi]:
    with FakeBotApi() as api:
        yield api


@pytest.fixture
def up(
    tmp_path: Path, telegram: FakeBotApi
) -> Iterator[tuple[subprocess.Popen[str], Output, dict[str, str]]]:
    scenario = tmp_path / "empty.yaml"
    scenario.write_text("name: empty\ndescription: nothing happens by itself\nevents: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTA_", "dramatiq_"))}
    env.update(
        MTA_DATA_DIR=str(tmp_path / "data"),
        MTA_ENV="test",
        MTA_LOG_FORMAT="json",
        MTA_PACER="none",
        MTA_TRACE_ON_FAILURE="false",
        MTA_API_PORT=str(free_port()),
        MTA_REPLICA_PORT=str(free_port()),
        MTA_REPLICA_CAPTCHA_COST="50",
        MTA_SITE_BUDGET_PER_MINUTE="120",
        MTA_SITE_REQUESTS_BEFORE_PAUSE="0",
        MTA_CHECK_JITTER_S="0",
        MTA_CHECK_MIN_INTERVAL_S="1",
        MTA_WORKER_HEARTBEAT_TIMEOUT_MS="3000",
        MTA_SCHEDULER_LEASE_MS="2000",
        MTA_TELEGRAM_TOKEN=telegram.token,
        MTA_TELEGRAM_API_BASE_URL=telegram.base_url,
        MTA_TELEGRAM_TIMEOUT_S="5",
        MTA_OUTBOX_SWEEP_S="0.5",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mta", "up", "--replica", str(scenario)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process.stdout)
    try:
        yield process, output, env
    finally:
        if process.poll() is None:
            tree = procs.descendants(process.pid)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            procs.end_all(tree, grace_s=1)
        print(output.text())


def _registry(data: Path) -> dict[str, int]:
    try:
        entries: list[dict[str, Any]] = json.loads((data / "up.pids.json").read_text())
    except (OSError, ValueError):
        return {}
    return {e["role"]: int(e["pid"]) for e in entries}


def _role_pid(data: Path, role: str) -> int:
    """The pid `mta up` registered for ``role`` (0 while none)."""
    return _registry(data).get(role, 0)


def _release(replica_url: str, slot_at: datetime) -> bool:
    """One free slot at the Führerscheinstelle (the service takes two 15-minute units); False
    while the replica does not answer."""
    local = slot_at.astimezone(SITE_TIMEZONE)
    times = [local.strftime("%H:%M"), (local + timedelta(minutes=15)).strftime("%H:%M")]
    body = {"office": OFFICE, "date": local.date().isoformat(), "times": times}
    try:
        response = httpx.post(replica_url + "/_replica/slots", json=body, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and bool(response.json()["added"])


def test_every_role_killed_in_turn_comes_back_and_each_slot_is_alerted_once(
    tmp_path: Path,
    telegram: FakeBotApi,
    up: tuple[subprocess.Popen[str], Output, dict[str, str]],
) -> None:
    """Injected: SIGKILL of redis-server, the worker, the scheduler, the bot, the api and the
    replica, one after the other, each followed at once by a new slot. Asserted: `mta up` says it
    restarts each (console), every slot is alerted exactly once (one outbox row, sent, and one
    sendMessage per slot at the fake Telegram; none lost, none doubled), and /api/v1/status lists
    a role_restarted event for every role. (Tried: with the supervisor's restart switched off,
    the first kill already fails the wait for the alert.)"""
    process, output, env = up
    assert output.wait_for("Press Ctrl-C", 180, process), output.text()
    data = Path(env["MTA_DATA_DIR"])
    replica_url = f"http://127.0.0.1:{env['MTA_REPLICA_PORT']}"
    api_url = f"http://127.0.0.1:{env['MTA_API_PORT']}"
    settings = load_settings(data_dir=data)
    db = open_database(settings)
    try:
        with db.transaction() as session:
            session.add(User(id=CHAT, language="de"))
            session.flush()
            session.add(
                Subscription(user_id=CHAT, service_id=FUEHRERSCHEIN_UMSCHREIBUNG, office_ids=[OFFICE])
            )

        def alerts_for(slot_at: datetime) -> list[Notification]:
            with db.transaction() as session:
                rows = session.execute(
                    select(Notification, Slot.start_at)
                    .join(Slot, Slot.id == Notification.slot_id)
                    .where(Notification.kind == NotificationKind.SLOT)
                ).all()
                session.expunge_all()
                return [n for n, start in rows if start.timestamp() == slot_at.timestamp()]

        day = datetime.now(SITE_TIMEZONE).date() + timedelta(days=14)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        released: list[datetime] = []
        for index, role in enumerate(ROLES):
            pid = wait_until(partial(_role_pid, data, role), 60, f"{role} in the registry")
            os.kill(pid, signal.SIGKILL)
            # an hour apart: the service takes two units, so adjacent releases would form extra slots
            slot_at = datetime(day.year, day.month, day.day, 8, 0, tzinfo=SITE_TIMEZONE) + timedelta(
                minutes=60 * index
            )
            what = f"the replica to take a slot after {role}"
            wait_until(partial(_release, replica_url, slot_at), 90, what)
            released.append(slot_at)

            def sent_alerts(at: datetime) -> list[Notification]:
                return [n for n in alerts_for(at) if n.status == NotificationStatus.SENT]

            sent = wait_until(
                partial(sent_alerts, slot_at), 120, f"the alert of the slot released after killing {role}"
            )
            assert len(sent) == 1, sent
            said = f"  {role:<10} exited with code -9; restarting in"
            assert output.wait_for(said, 30, process), output.text()

        for slot_at in released:
            rows = alerts_for(slot_at)
            assert len(rows) == 1 and rows[0].status == NotificationStatus.SENT, (slot_at, rows)
        texts = [str(m["params"].get("text", "")) for m in telegram.sent(chat_id=CHAT, method="sendMessage")]
        alerts = [t for t in texts if "Freier Termin!" in t]
        assert len(alerts) == len(ROLES), "\n\n".join(texts)
        assert len(set(alerts)) == len(alerts), "an alert was sent twice"

        def restarted_roles() -> set[str]:
            try:
                status = httpx.get(api_url + "/api/v1/status", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return set()
            return {e["role"] for e in status["events"] if e["kind"] == "role_restarted"}

        wait_until(lambda: restarted_roles() >= set(ROLES), 60, "a restart event for every role")
        page = httpx.get(api_url + "/", timeout=5).text
        assert "restarted by mta up, healthy again" in page
    finally:
        db.close()
    process.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        assert process.wait(120) == 0, output.text()
