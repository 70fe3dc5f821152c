"""The dashboard and /readyz tell the truth: stale targets, live counts, outages, demo mode.

Each test arranges a real state (rows in SQLite, keys in the test's Redis, Redis itself stopped)
and reads what the running app says about it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from shared.contracts import LEADER_KEY
from shared.db.database import Database
from shared.db.models import (
    Notification,
    NotificationKind,
    Slot,
    Subscription,
    Target,
    TargetState,
    User,
)
from shared.domain import office_key
from shared.events import EVENTS_KEY, FarmEvent, write
from shared.settings import Settings
from tests.api.conftest import OFFICE_ID, SERVICE_ID, SITE, farm_alive, seed
from tests.conftest import RedisServer
from tests.support.farm import wait_until
from worker import heartbeat


def _target(db: Database, *, checked_ago_s: float | None, backoff_s: float = 0.0, service_id: int) -> int:
    now = datetime.now(UTC)
    with db.transaction() as s:
        target = Target(
            site=SITE,
            service_id=service_id,
            office_key=office_key([OFFICE_ID]),
            last_check_at=None if checked_ago_s is None else now - timedelta(seconds=checked_ago_s),
            created_at=now - timedelta(hours=1),
            backoff_until=now + timedelta(seconds=backoff_s) if backoff_s else None,
            state=TargetState.BACKING_OFF if backoff_s else TargetState.OK,
        )
        s.add(target)
        s.flush()
        return target.id


def test_targets_go_stale_while_no_worker_runs(client: TestClient, db: Database, redis_url: str) -> None:
    """Arranged: a scheduler and the leader lease in Redis but no worker; one target last checked
    10 min ago, one never checked (created an hour ago), one checked 5 s ago, one backing off
    for another 10 min (last checked 10 min ago). Asserted: the first two are "stale" in
    /api/v1/targets, /api/v1/status and on the dashboard, /readyz is not ready and names them;
    the fresh and the backing-off target are not stale. (Tried: with the staleness check removed
    from ``Cadence.stale_since`` every target reads "ok" and this test fails.)"""
    farm_alive(redis_url, bot=False)
    client_r = redis.Redis.from_url(redis_url)
    client_r.delete(heartbeat.key("worker", "testhost:101"))
    client_r.zrem(heartbeat.index_key("worker"), "testhost:101")
    old = _target(db, checked_ago_s=600, service_id=SERVICE_ID)
    never = _target(db, checked_ago_s=None, service_id=1063441)
    fresh = _target(db, checked_ago_s=5, service_id=10339027)
    waiting = _target(db, checked_ago_s=600, backoff_s=600, service_id=1064361)

    rows = {t["id"]: t for t in client.get("/api/v1/targets").json()["items"]}
    assert rows[old]["stale"] and rows[old]["state_text"].startswith("stale: last check 10 min ago")
    assert rows[never]["stale"] and rows[never]["state_text"] == "stale: never checked"
    assert not rows[fresh]["stale"] and rows[fresh]["state_text"] == "ok"
    assert not rows[waiting]["stale"] and rows[waiting]["state_text"].startswith("backing off")

    status = client.get("/api/v1/status").json()
    assert status["targets_stale"] == 2
    assert status["workers_alive"] == 0

    ready = client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["parts"]["checks"]
    assert not checks["ok"] and checks["detail"].startswith("2 of 4 target(s) stale")
    assert ready.json()["parts"]["worker"]["detail"] == "no heartbeat"

    page = client.get("/").text
    assert f'data-target="{old}"' in page and "stale: last check 10 min ago" in page
    assert "2 target(s) not checked for longer than their interval allows" in page
    assert "workers 0" in page


def test_worker_and_consumer_counts_come_from_live_heartbeats(
    client: TestClient, db: Database, redis_url: str
) -> None:
    """Arranged: one live worker (heartbeat naming broker A), a dead one (heartbeat two minutes
    old), and Dramatiq broker heartbeats of A, of the dead worker's broker B and of the
    scheduler's enqueuing broker C. Asserted: one worker alive, one consumer (C and B do not count);
    the dashboard says "workers 1". (Tried: counting every broker heartbeat gives 3.)"""
    r = redis.Redis.from_url(redis_url)
    heartbeat.beat(r, "worker", "host:1", {"broker_id": "A", "browser": "ready"}, ttl_s=600)
    dead = {"id": "host:2", "at": time.time() - 120, "broker_id": "B", "browser": "ready"}
    r.set(heartbeat.key("worker", "host:2"), json.dumps(dead), ex=600)
    now_ms = int(time.time() * 1000)
    r.zadd("mta:__heartbeats__", {"A": now_ms, "B": now_ms, "C": now_ms})
    status = client.get("/api/v1/status").json()
    assert status["workers_alive"] == 1
    assert status["queue_consumers"] == 1
    assert "workers 1</li>" in client.get("/").text


def test_demo_mode_says_not_sending_instead_of_bot_down(client: TestClient, db: Database) -> None:
    """Arranged: no Telegram token, a pending alert. Asserted: the dashboard says "not sending
    (demo)" and neither "bot down" nor a bare "pending"; /readyz's bot part says so too and is not
    required; /api/v1/status's alerts_mode says it."""
    seed(db)
    page = client.get("/").text
    assert "not sending (demo)" in page
    assert "bot down" not in page
    alerts = page[page.index("<h3>Recent alerts</h3>") :]
    assert 'class="status status-demo">not sending (demo)</span>' in alerts
    assert ">pending<" not in alerts
    bot = client.get("/readyz").json()["parts"]["bot"]
    assert bot == {"ok": False, "required": False, "detail": "not sending (demo): no MTA_TELEGRAM_TOKEN"}
    assert client.get("/api/v1/status").json()["alerts_mode"] == "not sending (demo)"


def test_recent_alerts_list_a_slot_once_however_many_people_were_told(
    client: TestClient, db: Database
) -> None:
    """Arranged: one slot episode alerted to two people (two outbox rows). Asserted: the
    dashboard's Recent alerts shows it once, "to 2 people". (Tried: listing rows as they are
    shows the slot twice.)"""
    now = datetime.now(UTC)
    with db.transaction() as s:
        for user in (11, 12):
            s.add(User(id=user, language="de"))
        s.flush()
        subs = [Subscription(user_id=u, service_id=SERVICE_ID, office_ids=[OFFICE_ID]) for u in (11, 12)]
        s.add_all(subs)
        slot = Slot(
            site=SITE,
            office_id=OFFICE_ID,
            service_id=SERVICE_ID,
            start_at=now + timedelta(days=2),
            first_seen_at=now,
            last_seen_at=now,
        )
        s.add(slot)
        s.flush()
        for sub in subs:
            s.add(
                Notification(
                    subscription_id=sub.id,
                    user_id=sub.user_id,
                    chat_id=sub.user_id,
                    slot_id=slot.id,
                    episode=1,
                    kind=NotificationKind.SLOT,
                )
            )
    page = client.get("/").text
    alerts = page[page.index('data-section="alerts"') :]
    assert alerts.count("Free slot: ") == 1, alerts
    assert "to 2 people" in alerts


def test_user_subscription_and_booking_counts(client: TestClient, db: Database) -> None:
    """The seeded farm: one user, one active subscription, one reserved booking; counted in
    /api/v1/status and on the dashboard."""
    seed(db)
    people = client.get("/api/v1/status").json()["people"]
    assert people == {"users": 1, "active_subscriptions": 1, "bookings": 1, "active_bookings": 1}
    assert "users <b>1</b> · subscriptions <b>1</b> · bookings <b>1</b>" in client.get("/").text


@pytest.fixture
def restartable_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, running again after the test whatever happened (others share it)."""
    yield redis_server
    if redis_server.process.poll() is not None:
        redis_server.start()


def test_a_redis_outage_leaves_a_dated_event(
    api_settings: Settings, db: Database, restartable_redis: RedisServer
) -> None:
    """Injected: the farm's Redis stopped for a few seconds under a running status service, then
    started again (empty). Asserted: while it is down the dashboard says since when; afterwards
    /api/v1/status and the dashboard's Events list "Redis did not answer the status service" with
    its start and how long it lasted. An event written by another role (a restart) shows too."""
    with TestClient(create_app(api_settings, refresh_s=0.2)) as client:
        state = client.app.state.mta  # type: ignore[attr-defined]
        assert state.outages is not None
        state.outages.interval_s = 0.2
        write(
            redis.Redis.from_url(api_settings.redis_url),
            FarmEvent(at=datetime.now(UTC), kind="role_restarted", text="worker restarted", role="worker"),
        )
        assert "worker restarted" in client.get("/").text
        stopped_at = datetime.now(UTC)
        restartable_redis.stop()
        wait_until(lambda: "redis" in state.outages.down_since, 20, "the outage to be noticed")
        # the page is a ready answer of the last refresh: the next refresh says it
        wait_until(lambda: "Redis down since" in client.get("/").text, 5, "the outage on the dashboard")
        restartable_redis.start()
        events = wait_until(
            lambda: [e for e in client.get("/api/v1/status").json()["events"] if e["kind"] == "redis_down"],
            20,
            "the redis_down event",
        )
        assert len(events) == 1
        event = events[0]
        assert event["text"] == "Redis did not answer the status service"
        began = datetime.fromisoformat(event["at"])
        assert stopped_at - timedelta(seconds=1) <= began <= stopped_at + timedelta(seconds=5)
        assert event["duration_s"] > 0

        def page_with_event() -> str:
            text = client.get("/").text
            return text if "did not answer" in text else ""

        page = wait_until(page_with_event, 10, "the event on the dashboard")
        assert "Redis did not answer the status service" in page and "lasted" in page
        assert redis.Redis.from_url(api_settings.redis_url).llen(EVENTS_KEY) == 1


def test_the_dashboard_shows_the_leaders_release_plan(
    client: TestClient, db: Database, redis_url: str
) -> None:
    """Arranged: the leading scheduler's heartbeat with its release plan (one hot group, one cold
    one holding its streak before a window), as ``Scheduler.status`` writes it. Asserted: the
    dashboard's farm section lists both with their state and round interval, and the lapsing streak.
    (Tried: the template without the plan table: failed.)"""
    r = redis.Redis.from_url(redis_url)
    plan = [
        {"site": "munich", "service_id": 1063475, "service_count": 1, "state": "hot",
         "interval_s": 10.0, "holding_for_window": False},
        {"site": "munich", "service_id": 1071896, "service_count": 1, "state": "cold",
         "interval_s": 80.0, "holding_for_window": True},
    ]  # fmt: skip
    heartbeat.beat(r, "scheduler", "host:9", {"leader": True, "release_plan": plan}, ttl_s=600)
    r.set(LEADER_KEY, "host:9", ex=600)
    page = client.get("/").text
    assert "Release plan" in page
    assert '<td class="plan-hot">hot</td><td class="num">10.0</td>' in page
    assert '<td class="plan-cold">cold</td><td class="num">80.0</td>' in page
    assert "streak lapsing before a window" in page
