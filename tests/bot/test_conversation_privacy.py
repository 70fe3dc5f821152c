"""/export sends every row about the user; /delete erases every row about the user, and only theirs."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import inspect, text

from bot.handlers import store
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.db.models import Booking, BookingStatus, Notification, NotificationKind, Slot
from shared.domain import utcnow
from tests.bot.conftest import RunningBot, UserChat

WOHNSITZ = 1063475
ORLEANSPLATZ = 102522


def _seed(db: Database, user_id: int) -> dict[str, Any]:
    """A user with a profile, two subscriptions, a booking and an alert."""
    store.ensure_user(db, user_id, "en")
    draft = store.SubscriptionDraft(WOHNSITZ, 1, [ORLEANSPLATZ], None, None, [], None, None, False)
    first = store.save_subscription(db, user_id, draft, None)
    second = store.save_subscription(db, user_id, draft, None)
    store.save_profile(
        db, user_id, store.ProfileData("Erika", "Muster", f"erika{user_id}@example.org", None, {})
    )
    now = utcnow()
    with db.transaction() as session:
        slot = Slot(
            site="munich",
            office_id=ORLEANSPLATZ,
            service_id=WOHNSITZ,
            service_count=1,
            start_at=now + timedelta(days=1, hours=user_id % 7),
            first_seen_at=now,
            last_seen_at=now,
        )
        session.add(slot)
        session.flush()
        session.add(
            Notification(
                subscription_id=first,
                user_id=user_id,
                slot_id=slot.id,
                episode=1,
                kind=NotificationKind.SLOT,
                chat_id=user_id,
                text="slot!",
            )
        )
        session.add(
            Booking(
                user_id=user_id,
                subscription_id=first,
                slot_id=slot.id,
                service_id=WOHNSITZ,
                office_id=ORLEANSPLATZ,
                status=BookingStatus.RESERVED,
                process_id="101002",
            )
        )
    return {"subscriptions": [first, second]}


def test_export_contains_every_row_of_the_user(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """/export sends one JSON document (sendDocument) with the user, the decrypted profile, both
    subscriptions, the booking and the alert; nothing of another user."""
    seeded = _seed(bot_db, 4001)
    _seed(bot_db, 4002)
    chat = UserChat(fake_telegram, 4001)
    chat.send("/export")
    record = fake_telegram.wait_for(lambda r: r["method"] == "sendDocument" and r["chat_id"] == 4001, 20)
    document = record["params"]["document"]
    assert document["file_name"].endswith(".json")
    data = json.loads(document["content"])
    assert data["user"]["id"] == 4001 and data["user"]["language"] == "en"
    assert [p["email"] for p in data["booking_profiles"]] == ["erika4001@example.org"]
    assert [s["id"] for s in data["subscriptions"]] == seeded["subscriptions"]
    assert len(data["bookings"]) == 1 and data["bookings"][0]["status"] == "reserved"
    assert len(data["notifications"]) == 1 and data["notifications"][0]["text"] == "slot!"
    assert "erika4002" not in document["content"].decode()
    counts = store.count_rows_of(bot_db, 4001)
    assert counts == {
        "users": 1,
        "booking_profiles": 1,
        "subscriptions": len(data["subscriptions"]),
        "bookings": len(data["bookings"]),
        "notifications": len(data["notifications"]),
        "conversations": 0 if data["conversation"] is None else 1,
    }


def _rows_mentioning(db: Database, user_id: int) -> dict[str, int]:
    """Rows in any table with a user id column (or the users table) that name ``user_id``."""
    found: dict[str, int] = {}
    with db.engine.connect() as conn:
        inspector = inspect(conn)
        for table in inspector.get_table_names():
            columns = {c["name"] for c in inspector.get_columns(table)}
            column = "id" if table == "users" else "user_id" if "user_id" in columns else None
            if column is None:
                continue
            count = conn.execute(
                text(f'SELECT COUNT(*) FROM "{table}" WHERE "{column}" = :u'), {"u": user_id}
            ).scalar()
            if count:
                found[table] = int(count)
    return found


def test_delete_erases_every_row_of_the_user_after_confirmation(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """/delete asks first, warning that the reserved appointment stays held at the city (Cancel
    keeps everything); confirming removes every row of the user — profile, subscriptions,
    bookings, alerts, the user — and leaves another user's rows alone."""
    _seed(bot_db, 4003)
    _seed(bot_db, 4004)
    before_other = _rows_mentioning(bot_db, 4004)
    chat = UserChat(fake_telegram, 4003)
    asked = chat.send("/delete", expect="This cannot be undone.")
    assert asked is not None and "1 appointment(s) held at the city" in asked["params"]["text"]
    chat.press("Cancel", expect="Cancelled.")
    assert _rows_mentioning(bot_db, 4003)["subscriptions"] == 2
    chat.send("/delete", expect="This cannot be undone.")
    chat.press("Yes, erase everything", expect="everything about you is erased")
    assert _rows_mentioning(bot_db, 4003) == {}
    assert store.count_rows_of(bot_db, 4003) == dict.fromkeys(
        ("users", "booking_profiles", "subscriptions", "bookings", "notifications", "conversations"), 0
    )
    assert _rows_mentioning(bot_db, 4004) == before_other
