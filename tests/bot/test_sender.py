"""The outbox sender against the fake Bot API: once each, fair order, retries, blocks, gone edits."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis as sync_redis
from sqlalchemy import select

from bot.outbox_store import Job, OutboxStore, SenderConfig
from bot.sender import rotated
from bot.testing import FakeBotApi
from bot.testing.outbox import add_slot, add_users, queue_gone, queue_slot_alerts, seed_slot_alerts, statuses
from bot.watchdog import queue_site_blocked_alerts
from shared.contracts import WAKE_CHANNEL
from shared.db.database import Database
from shared.db.models import (
    Notification,
    NotificationKind,
    NotificationStatus,
    Subscription,
    SubscriptionState,
    Target,
    TargetState,
)
from shared.db.outbox import enqueue_notification
from shared.domain import utcnow
from shared.settings import Settings
from tests.bot.conftest import run_bot, until


def _settled(db: Database, total: int) -> Callable[[], bool]:
    def check() -> bool:
        counts = statuses(db)
        return sum(counts.get(s, 0) for s in ("sent", "dead")) >= total

    return check


def test_alerts_arrive_once_with_their_message_ids(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Five subscribers of one slot: each chat gets exactly one alert; the outbox keeps its message id."""
    seeded = seed_slot_alerts(bot_db, 5)

    async def body(application: Any) -> None:
        await until(_settled(bot_db, 5))

    run_bot(bot_settings, bot_db, body)
    for user_id in seeded.user_ids:
        texts = fake_telegram.texts(user_id)
        assert len(texts) == 1 and "Personalausweis" in texts[0]
    with bot_db.transaction() as session:
        rows = session.scalars(select(Notification)).all()
        assert {r.status for r in rows} == {NotificationStatus.SENT}
        for row in rows:
            assert row.claim_token is None
            assert row.telegram_message_id == fake_telegram.sent(row.chat_id, "sendMessage")[0]["message_id"]


def test_a_wake_up_over_redis_starts_a_drain(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Sweeps an hour apart, so only the worker's publish can deliver a row queued later in time.

    Waited for, not slept: the sender's listener is subscribed (``PUBSUB NUMSUB``) and its loop is
    idle (first drain done, no drain or due-time read running, no wake pending: the wake it gives
    itself on subscribing is spent). Then two rows are queued and one message is published; asserted:
    both go out within 15 s. Tried: the listener ignoring messages (the rows wait for the hourly
    sweep, the wait times out) and no listener (the subscriber never shows)."""
    settings = bot_settings.model_copy(update={"outbox_sweep_s": 3600.0})

    async def body(application: Any) -> None:
        sender = application.bot_data["sender"]
        busy = 0  # drains and due-time reads running now
        drain, next_due = sender.drain, sender.store.next_due

        async def counted_drain() -> int:
            nonlocal busy
            busy += 1
            try:
                return int(await drain())
            finally:
                busy -= 1

        def counted_next_due() -> Any:
            nonlocal busy
            busy += 1
            try:
                return next_due()
            finally:
                busy -= 1

        sender.drain, sender.store.next_due = counted_drain, counted_next_due
        client = sync_redis.Redis.from_url(settings.redis_url)

        def idle() -> bool:
            subscribed = dict(client.pubsub_numsub(WAKE_CHANNEL)).get(WAKE_CHANNEL.encode(), 0) >= 1
            return subscribed and sender.stats.last_drain_at is not None

        try:
            await until(idle, timeout_s=15)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while busy or sender._wake.is_set():  # the loop's own state, read on its own thread
                assert loop.time() < deadline, "the sender never went idle"
                await asyncio.sleep(0.01)
            await asyncio.to_thread(seed_slot_alerts, bot_db, 2)
            client.publish(WAKE_CHANNEL, "1")
            await until(_settled(bot_db, 2), timeout_s=15)
        finally:
            client.close()

    run_bot(settings, bot_db, body)
    assert len(fake_telegram.sent(method="sendMessage")) == 2


def test_429_and_500_are_retried_and_delivered_once(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected: two 429s (retry_after 1 s) and two 500s on sendMessage. Asserted: every alert once."""
    fake_telegram.fail("sendMessage", status=429, retry_after=1, times=2)
    fake_telegram.fail("sendMessage", status=500, times=2)
    seeded = seed_slot_alerts(bot_db, 4)

    async def body(application: Any) -> None:
        await until(_settled(bot_db, 4))

    run_bot(bot_settings, bot_db, body)
    assert Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage")) == dict.fromkeys(
        seeded.user_ids, 1
    )
    refused = [a["status"] for a in fake_telegram.attempts("sendMessage") if a["status"] != 200]
    assert sorted(refused) == [429, 429, 500, 500]
    assert statuses(bot_db) == {"sent": 4}


def test_a_user_who_blocked_the_bot_has_subscriptions_paused(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected: 403 "bot was blocked by the user" for one chat. Asserted: that user's subscriptions are
    paused and their alert is dead; the others are delivered."""
    seeded = seed_slot_alerts(bot_db, 3)
    blocked = seeded.user_ids[1]
    fake_telegram.block(blocked)

    async def body(application: Any) -> None:
        await until(_settled(bot_db, 3))

    run_bot(bot_settings, bot_db, body)
    with bot_db.transaction() as session:
        states = {s.user_id: s.state for s in session.scalars(select(Subscription))}
        dead = session.scalars(
            select(Notification).where(Notification.status == NotificationStatus.DEAD)
        ).all()
    assert states[blocked] == SubscriptionState.PAUSED
    assert all(states[u] == SubscriptionState.ACTIVE for u in seeded.user_ids if u != blocked)
    assert [n.user_id for n in dead] == [blocked]
    assert fake_telegram.sent(blocked) == []


def test_gone_edits_the_original_alert(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """The slot vanishes after the alert: the same message is edited to say so, its button removed."""
    sub_ids = add_users(bot_db, [501], with_profile=True)
    slot_id = add_slot(bot_db, seen_at=utcnow() - timedelta(minutes=12))
    queue_slot_alerts(bot_db, slot_id, sub_ids)

    async def body(application: Any) -> None:
        await until(_settled(bot_db, 1))
        await asyncio.to_thread(queue_gone, bot_db, slot_id)
        application.bot_data["sender"].wake()
        await until(_settled(bot_db, 2))

    run_bot(bot_settings, bot_db, body)
    alert = fake_telegram.sent(501, "sendMessage")[0]
    buttons = [b for row in alert["params"]["reply_markup"]["inline_keyboard"] for b in row]
    assert {"callback_data": f"book:{slot_id}", "text": "Book this"} in buttons
    edit = fake_telegram.sent(501, "editMessageText")
    assert len(edit) == 1 and edit[0]["message_id"] == alert["message_id"]
    now_seen = fake_telegram.message(501, alert["message_id"])
    assert "Gone after 12 minutes" in now_seen["text"] and "reply_markup" not in now_seen


def test_operator_alerts_go_to_the_operator_chats(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Operator rows for a chat are sent there; one without a chat is logged and settled."""
    with bot_db.transaction() as session:
        for chat in (-100777, None):
            enqueue_notification(
                session,
                kind=NotificationKind.OPERATOR,
                chat_id=chat,
                text="the munich site looks changed <b>",
                payload={"reason": "layout_changed"},
                dedup_key=f"op:{chat}",
            )

    async def body(application: Any) -> None:
        await until(_settled(bot_db, 2))

    run_bot(bot_settings, bot_db, body)
    assert [t for t in fake_telegram.texts(-100777)] == ["🛠 the munich site looks changed &lt;b&gt;"]
    assert statuses(bot_db) == {"sent": 2}


def test_reconcile_after_a_crash_resends_nothing_that_may_have_left(bot_db: Database) -> None:
    """Rows a dead run left ``sending`` count as delivered; rows it had only claimed are released."""
    seeded = seed_slot_alerts(bot_db, 3)
    dead_run = OutboxStore(bot_db, SenderConfig(), token="dead-run")
    assert sorted(dead_run.claim(10)) == sorted(seeded.notification_ids)
    dead_run.mark_wire(seeded.notification_ids[0])
    released, assumed = OutboxStore(bot_db, SenderConfig()).reconcile()
    assert (released, assumed) == (2, 1)
    with bot_db.transaction() as session:
        rows = {n.id: n for n in session.scalars(select(Notification))}
    assert rows[seeded.notification_ids[0]].status == NotificationStatus.SENT
    assert all(
        rows[i].status == NotificationStatus.PENDING and rows[i].claim_token is None
        for i in seeded.notification_ids[1:]
    )


def test_rotation_moves_the_start_between_slots() -> None:
    """Many subscribers of many slots: nobody is always last; each is first about equally often."""
    subscribers = list(range(1, 11))
    firsts: Counter[int] = Counter()
    lasts: Counter[int] = Counter()
    for slot_id in range(1, 201):
        jobs = [
            Job(
                id=slot_id * 100 + s,
                kind="slot",
                chat_id=s,
                user_id=s,
                attempts=0,
                slot_id=slot_id,
                subscription_id=s,
            )
            for s in subscribers
        ]
        order = [j.subscription_id for j in rotated(jobs) if j.subscription_id is not None]
        assert sorted(order) == subscribers  # every one, once (a lost id would shorten the list)
        firsts[order[0]] += 1
        lasts[order[-1]] += 1
    assert set(firsts) == set(subscribers) and set(lasts) == set(subscribers)
    assert max(firsts.values()) <= 2 * min(firsts.values())


def test_a_site_blocked_for_long_alerts_the_operators_once(bot_db: Database) -> None:
    """Every target of the site backing off with no success for 2 h: one alert per operator chat,
    not repeated; a site with a target still fine raises none."""
    now = utcnow()
    with bot_db.transaction() as session:
        for office_key, state in (("1", TargetState.BACKING_OFF), ("2", TargetState.CAPTCHA)):
            session.add(
                Target(
                    site="munich",
                    service_id=1,
                    office_key=office_key,
                    state=state,
                    last_success_at=now - timedelta(hours=2),
                    last_error="RateLimited: 429",
                )
            )
        session.add(Target(site="other", service_id=1, office_key="3", state=TargetState.BACKING_OFF))
        session.add(Target(site="other", service_id=2, office_key="3", state=TargetState.OK))
    for _ in range(2):
        with bot_db.transaction() as session:
            queue_site_blocked_alerts(session, [5, 6], blocked_after=timedelta(minutes=30), now=now)
    with bot_db.transaction() as session:
        rows = session.scalars(select(Notification).order_by(Notification.chat_id)).all()
        assert [r.chat_id for r in rows] == [5, 6]
        assert all(r.kind == NotificationKind.OPERATOR and "munich" in (r.text or "") for r in rows)
        assert "120 minutes" in (rows[0].text or "")


def test_fan_out_within_telegrams_flood_limit(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """75 subscribers of one slot with the fake enforcing 30 messages/s: the rate limiter paces the
    sender, every alert arrives once (any 429 the fake answers is waited out and retried)."""
    seeded = seed_slot_alerts(bot_db, 75)

    async def body(application: Any) -> None:
        await until(_settled(bot_db, 75), timeout_s=60)

    run_bot(bot_settings, bot_db, body)
    per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
    assert per_chat == dict.fromkeys(seeded.user_ids, 1)
    assert statuses(bot_db) == {"sent": 75}


def test_a_clean_stop_mid_batch_releases_claims_and_a_restart_finishes(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """Injected: every sendMessage answered after 0.4 s; the Application is stopped cleanly after
    the first alerts. Asserted: no row is left claimed or ``sending``; a second run sends the rest;
    each subscriber got exactly one alert."""
    fake_telegram.fail("sendMessage", status=200, delay_s=0.4)
    seeded = seed_slot_alerts(bot_db, 30)

    async def first(application: Any) -> None:
        await asyncio.to_thread(fake_telegram.wait_until, lambda: len(fake_telegram.sent()) >= 4, 20)

    run_bot(bot_settings, bot_db, first)
    with bot_db.transaction() as session:
        rows = session.scalars(select(Notification)).all()
        assert all(r.claim_token is None for r in rows)
        assert {r.status for r in rows} <= {NotificationStatus.SENT, NotificationStatus.PENDING}
        assert any(r.status == NotificationStatus.PENDING for r in rows), "stopped mid-batch"
        assert not any(r.last_error for r in rows)
    fake_telegram.clear_faults()

    async def second(application: Any) -> None:
        await until(_settled(bot_db, 30))

    run_bot(bot_settings, bot_db, second)
    per_chat = Counter(r["chat_id"] for r in fake_telegram.sent(method="sendMessage"))
    assert per_chat == dict.fromkeys(seeded.user_ids, 1)
