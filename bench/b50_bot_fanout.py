"""Alert fan-out: N subscribers matching one slot, through the real bot to a fake Bot API at 30 msg/s.

Measures, from the moment the outbox rows are committed and the sender is woken: the time until
the first alert and until the last alert is accepted by the fake server (which answers 429 with
``retry_after`` beyond Telegram's 30 messages/s), beside the N/30 s that limit allows.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench._harness import Table
from bot.app import build_application, running
from bot.sender import Sender
from bot.testing import FakeBotApi
from bot.testing.outbox import seed_slot_alerts, statuses
from shared.db.database import open_database
from shared.settings import load_settings

TELEGRAM_RATE_PER_S = 30.0


def _fan_out(subscribers: int) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="mta-bench-bot-") as folder,
        FakeBotApi(flood_limit_per_s=TELEGRAM_RATE_PER_S) as api,
    ):
        settings = load_settings(
            data_dir=Path(folder),
            env="test",
            redis_url="",
            telegram_token=api.token,
            telegram_api_base_url=api.base_url,
            outbox_sweep_s=3600.0,
        )
        db = open_database(settings, migrate=True)

        async def main() -> float:
            application = build_application(settings, db=db)
            async with running(application):
                await asyncio.to_thread(seed_slot_alerts, db, subscribers)
                started = time.time()
                sender: Sender = application.bot_data["sender"]
                sender.wake()
                deadline = time.monotonic() + subscribers / TELEGRAM_RATE_PER_S * 4 + 60
                while (done := len(api.sent(method="sendMessage"))) < subscribers:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {done} of {subscribers} alerts accepted")
                    await asyncio.sleep(0.05)
                return started

        try:
            started = asyncio.run(main())
            counts = statuses(db)
        finally:
            db.close()
        accepted = sorted(r["at"] for r in api.sent(method="sendMessage"))
        per_chat = Counter(r["chat_id"] for r in api.sent(method="sendMessage"))
        refused = sum(1 for a in api.attempts("sendMessage") if a["status"] == 429)
        return {
            "first_s": accepted[0] - started,
            "last_s": accepted[-1] - started,
            "floor_s": subscribers / TELEGRAM_RATE_PER_S,
            "refused": float(refused),
            "doubles": float(sum(n - 1 for n in per_chat.values())),
            "sent_rows": float(counts.get("sent", 0)),
        }


def run(quick: bool) -> list[Table]:
    table = Table(
        "Alert fan-out: one slot, N subscribers, fake Bot API enforcing 30 messages/s",
        ["subscribers", "first alert (s)", "last alert (s)", "30 msg/s allows (s)", "429s", "doubles"],
    )
    for subscribers in (50,) if quick else (100, 1000):
        figures = _fan_out(subscribers)
        table.add(
            subscribers,
            figures["first_s"],
            figures["last_s"],
            figures["floor_s"],
            int(figures["refused"]),
            int(figures["doubles"]),
        )
    table.notes.append(
        "Real bot Application (AIORateLimiter, outbox sender, SQLite outbox) against bot/testing's fake "
        "Bot API over local HTTP; clock starts when the alerts are committed and the sender is woken."
    )
    return [table]
