"""/list with pause, resume, edit and delete; /status; buttons that name someone else's subscription."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.handlers import store
from bot.handlers.common import signer_for
from bot.testing import FakeBotApi
from shared.db.database import Database
from shared.db.models import Check, Slot, Subscription, SubscriptionState, Target, TargetState
from shared.domain import CheckOutcome, utcnow
from tests.bot.conftest import RunningBot, UserChat

WOHNSITZ = 1063475
ORLEANSPLATZ = 102522


def _draft(**changes: object) -> store.SubscriptionDraft:
    values: dict[str, object] = {
        "service_id": WOHNSITZ,
        "service_count": 1,
        "office_ids": [ORLEANSPLATZ],
        "date_from": None,
        "date_to": None,
        "weekdays": [],
        "time_from": None,
        "time_to": None,
        "autobook": False,
    }
    values.update(changes)
    return store.SubscriptionDraft(**values)  # type: ignore[arg-type]


def _state(db: Database, sub_id: int) -> SubscriptionState | None:
    with db.transaction() as session:
        sub = session.get(Subscription, sub_id)
        return sub.state if sub else None


def _active_targets(db: Database) -> int:
    with db.transaction() as session:
        return len(list(session.scalars(select(Target).where(Target.active.is_(True)))))


def test_list_pause_resume_delete(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Pause, resume and delete through the /list buttons change the row and the watched targets."""
    store.ensure_user(bot_db, 2001, "en")
    sub_id = store.save_subscription(bot_db, 2001, _draft(), None)
    assert sub_id is not None and _active_targets(bot_db) == 1
    chat = UserChat(fake_telegram, 2001)

    chat.send("/list", expect=f"Subscription #{sub_id} (active)")
    chat.press("Pause", expect=f"Subscription #{sub_id} (paused)")
    assert _state(bot_db, sub_id) == SubscriptionState.PAUSED
    assert _active_targets(bot_db) == 0

    chat.press("Resume", expect=f"Subscription #{sub_id} (active)")
    assert _state(bot_db, sub_id) == SubscriptionState.ACTIVE
    assert _active_targets(bot_db) == 1

    chat.press("Delete", expect="Delete this subscription?")
    chat.press("Keep it", expect=f"Subscription #{sub_id} (active)")
    assert _state(bot_db, sub_id) == SubscriptionState.ACTIVE
    chat.press("Delete", expect="Delete this subscription?")
    chat.press("Yes, delete", expect=f"Subscription #{sub_id} deleted.")
    assert _state(bot_db, sub_id) is None
    assert _active_targets(bot_db) == 0
    chat.send("/list", expect="You have no subscriptions.")


def test_edit_from_list_updates_the_same_row(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Edit walks the steps with the old values kept ("Keep" buttons) and updates the row in place."""
    store.ensure_user(bot_db, 2002, "en")
    sub_id = store.save_subscription(bot_db, 2002, _draft(weekdays=[0]), None)
    chat = UserChat(fake_telegram, 2002)
    chat.send("/list", expect=f"Subscription #{sub_id}")
    chat.press("Edit", expect="For how many people?")
    chat.press("3", expect="Which offices?")
    chat.press("Done", expect="Which dates?")
    chat.press("Keep: any date", expect="Which weekdays?")
    chat.press("Fri", expect_button="✅ Fri")
    chat.press("Done", expect="Which time of day?")
    chat.press("Keep: any time", expect="may MTA book it")
    chat.press("Yes, book for me", expect="You have no booking profile yet")
    chat.press("Save", expect="Saved ✅")
    with bot_db.transaction() as session:
        subs = list(session.scalars(select(Subscription).where(Subscription.user_id == 2002)))
    assert [s.id for s in subs] == [sub_id]
    assert subs[0].service_count == 3 and sorted(subs[0].weekdays) == [0, 4] and subs[0].autobook is True
    assert subs[0].office_ids == [ORLEANSPLATZ]


def test_button_naming_another_users_subscription_is_refused(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """Injected: correctly signed pause/delete buttons for user A that name user B's subscription, and
    B's own signed button pressed by A. Asserted: both refused with a clear notice, B's row untouched."""
    store.ensure_user(bot_db, 2003, "en")
    store.ensure_user(bot_db, 2004, "en")
    theirs = store.save_subscription(bot_db, 2004, _draft(), None)
    assert theirs is not None
    chat = UserChat(fake_telegram, 2003)
    chat.send("/list", expect="You have no subscriptions.")
    signer = signer_for(conversation_bot.application.bot_data)
    message_id = fake_telegram.sent(2003, "sendMessage")[-1]["message_id"]

    mark = fake_telegram.mark()
    chat.press_data(signer.sign(2003, "ldk", theirs), message_id)
    chat.popup("does not exist (any more) or is not yours", since=mark)
    mark = fake_telegram.mark()
    chat.press_data(signer.sign(2004, "lp", theirs), message_id)  # B's button, pressed by A
    chat.popup("This button is not valid", since=mark)
    assert _state(bot_db, theirs) == SubscriptionState.ACTIVE
    chat.send("/help", expect="What I can do")  # the bot still answers


def test_status_reports_checks_state_and_recent_slots(
    fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """/status shows, per subscription, the target's state, last successful check and slots seen."""
    store.ensure_user(bot_db, 2005, "en")
    store.save_subscription(bot_db, 2005, _draft(), None)
    now = utcnow()
    with bot_db.transaction() as session:
        target = session.scalars(select(Target).where(Target.service_id == WOHNSITZ)).one()
        target.last_check_at = target.last_success_at = now - timedelta(minutes=3)
        target.state = TargetState.BACKING_OFF
        target.backoff_until = now + timedelta(minutes=5)
        session.add(Check(target_id=target.id, started_at=now, outcome=CheckOutcome.OK, slots_seen=1))
        session.add(
            Slot(
                site="munich",
                office_id=ORLEANSPLATZ,
                service_id=WOHNSITZ,
                service_count=1,
                start_at=now + timedelta(days=2),
                first_seen_at=now - timedelta(minutes=10),
                last_seen_at=now - timedelta(minutes=4),
            )
        )
    chat = UserChat(fake_telegram, 2005)
    record = chat.send("/status", expect="Last successful check")
    assert record is not None
    text = record["params"]["text"]
    assert "Wohnsitzanmeldung" in text
    assert "backing off" in text
    assert "3 min ago" in text
    assert "Slots seen in the last 24 h: 1" in text
    assert "Bürgerbüro Orleansplatz" in text
