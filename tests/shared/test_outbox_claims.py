"""Outbox claims (migration 0002, bot/sender.py's OutboxStore) on SQLite and PostgreSQL.

Claims are what make a crash of the bot mid-batch safe: a row is claimed before it is rendered,
turns ``sending`` just before its request leaves, and a restart releases claims while counting
``sending`` rows as delivered.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from bot.outbox_store import UNCONFIRMED, UNCONFIRMED_UNREADABLE, OutboxStore, SenderConfig
from bot.testing.outbox import seed_slot_alerts
from shared.db.database import Database as AppDatabase
from shared.db.models import Notification, NotificationStatus

from .conftest import Database


def _app_db(db: Database) -> AppDatabase:
    return AppDatabase(engine=db.engine, sessions=db.sessions)


def test_claims_are_disjoint_across_concurrent_senders(db: Database) -> None:
    """Four runs claiming at once from 60 due rows: every row is claimed by exactly one."""
    app_db = _app_db(db)
    seed_slot_alerts(app_db, 60)
    stores = [OutboxStore(app_db, SenderConfig(), token=f"run-{i}") for i in range(4)]
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(len(stores))

    def claim(store: OutboxStore) -> None:
        barrier.wait()
        got: list[int] = []
        while batch := store.claim(7):
            got.extend(batch)
        claimed[store.token] = got

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == len(set(every)) == 60
    with db.sessions() as session:
        tokens = {n.id: n.claim_token for n in session.scalars(select(Notification))}
    for token, ids in claimed.items():
        assert all(tokens[i] == token for i in ids)


def test_reconcile_and_settling_guarded_by_the_claim(db: Database) -> None:
    """A dead run's ``sending`` row counts as delivered, its other claims are released; a stale run
    cannot settle a row it no longer holds."""
    app_db = _app_db(db)
    ids = seed_slot_alerts(app_db, 3).notification_ids
    dead = OutboxStore(app_db, SenderConfig(), token="dead")
    assert sorted(dead.claim(10)) == sorted(ids)
    dead.mark_wire(ids[0])
    fresh = OutboxStore(app_db, SenderConfig(), token="fresh")
    assert fresh.reconcile() == (2, 1)
    assert sorted(fresh.claim(10)) == sorted(ids[1:])
    dead.mark_sent(ids[1], 99)  # the old run's late answer: ignored
    fresh.mark_sent(ids[2], 7)
    with db.sessions() as session:
        rows = {n.id: n for n in session.scalars(select(Notification))}
    assert rows[ids[0]].status == NotificationStatus.SENT and rows[ids[0]].last_error == UNCONFIRMED
    assert rows[ids[1]].status == NotificationStatus.PENDING and rows[ids[1]].claim_token == "fresh"
    assert rows[ids[2]].status == NotificationStatus.SENT and rows[ids[2]].telegram_message_id == 7


def test_an_unexpected_error_settles_by_whether_the_row_left(db: Database) -> None:
    """A row already ``sending`` counts as delivered; one that never left waits for a retry."""
    app_db = _app_db(db)
    ids = seed_slot_alerts(app_db, 2).notification_ids
    store = OutboxStore(app_db, SenderConfig(), token="run")
    store.claim(10)
    store.mark_wire(ids[0])
    for notification_id in ids:
        store.settle_after_error(notification_id, "ValueError: unreadable answer")
    with db.sessions() as session:
        rows = {n.id: n for n in session.scalars(select(Notification))}
    assert rows[ids[0]].status == NotificationStatus.SENT and UNCONFIRMED_UNREADABLE in (
        rows[ids[0]].last_error or ""
    )
    assert rows[ids[1]].status == NotificationStatus.FAILED and rows[ids[1]].attempts == 1
    assert rows[ids[0]].claim_token is None and rows[ids[1]].claim_token is None
