"""The console of ``mta up`` behind the ``Notifier`` seam: one line per alert (what, where, when, no
markup, no person), and the outbox drain settling the rows it printed."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import select

from bot.testing.outbox import add_slot, add_users, queue_slot_alerts
from mta.notify import ConsoleAlerts, ConsoleNotifier
from shared.db.database import open_database
from shared.db.models import Notification, NotificationKind, NotificationStatus
from shared.db.outbox import enqueue_notification
from shared.domain import utcnow
from shared.notify import Notifier, Outgoing, WireHook
from shared.settings import load_settings
from tests.support.farm import wait_until


def test_the_console_notifier_prints_one_plain_line_after_marking_the_wire() -> None:
    """Through the Protocol's type: the wire is marked before the line is printed, the HTML tags and
    entities are gone, the first lines (what, where, when) are kept and the rest is not. Tried:
    printing the raw text (tags show) and skipping ``on_wire`` (the order check fails)."""
    events: list[str] = []

    async def on_wire() -> None:
        events.append("wire")

    async def on_refused() -> None:
        events.append("refused")

    notifier: Notifier = ConsoleNotifier(lambda line: events.append(line))
    message = Outgoing(
        notification_id=1,
        recipient="4711",
        subject="",
        text="🔔 <b>Free appointment!</b>\n🏛 <b>Reisepass</b>\n📍 Bürgerbüro Pasing\n🕒 Mon 7 Dec, 09:00\n"
        "✅ Matches &amp; more\n👉 <a href='x'>Open the booking page</a>",
    )
    delivered = asyncio.run(notifier.send(message, WireHook(on_wire, on_refused)))
    assert delivered.ref is None  # nothing a later "gone" could edit
    assert events[0] == "wire" and len(events) == 2
    line = events[1]
    assert line.endswith("🔔 Free appointment! — 🏛 Reisepass — 📍 Bürgerbüro Pasing — 🕒 Mon 7 Dec, 09:00")
    assert "<" not in line and "Matches" not in line and "4711" not in line


def test_mta_up_without_a_token_drains_the_outbox_to_the_console(tmp_path: Path) -> None:
    """A slot alert and an operator alert without a chat, queued in a real SQLite outbox: the
    console's drain prints both once and settles the rows ``sent``. Tried: operator rows left to
    the log only (no operator line) and the drain without the console as its Telegram channel (the
    slot row is skipped, nothing printed)."""
    settings = load_settings(data_dir=tmp_path, env="test")
    db = open_database(settings, migrate=True)
    try:
        sub_ids = add_users(db, [4711])
        queue_slot_alerts(db, add_slot(db), sub_ids)
        with db.transaction() as session:
            enqueue_notification(
                session,
                kind=NotificationKind.OPERATOR,
                text="MTA operator alert: the munich site looks changed",
                payload={},
                next_attempt_at=utcnow(),
                dedup_key="operator:test:console",
            )
        lines: list[str] = []
        lock = threading.Lock()

        def echo(line: str) -> None:
            with lock:
                lines.append(line)

        console = ConsoleAlerts(settings, echo, poll_s=0.2)
        console.start()
        try:
            wait_until(lambda: len(lines) >= 2, 15, "two console lines")
        finally:
            console.stop()
        with db.transaction() as session:
            statuses = set(session.scalars(select(Notification.status)))
        assert statuses == {NotificationStatus.SENT}
        assert sum("Free appointment!" in line for line in lines) == 1
        assert sum("operator alert" in line for line in lines) == 1
        assert len(lines) == 2 and console.printed == 2
    finally:
        db.close()
