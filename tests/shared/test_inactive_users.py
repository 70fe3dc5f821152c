"""Retention of people who stopped using MTA: warned once, erased with their profile later, kept
if they act in between or still have something running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from shared.db.database import open_database
from shared.db.models import (
    BookingProfile,
    Notification,
    Subscription,
    SubscriptionState,
    User,
)
from shared.retention import INACTIVE_REASON, purge
from shared.settings import load_settings

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=400)


def test_inactive_people_are_warned_then_erased_with_their_profile(tmp_path: Path) -> None:
    """Arranged: four people. 1: joined long ago, an ended subscription, a profile, nothing since.
    2: the same, but with an active subscription. 3: joined recently. 4: like 1, but sets up (and
    pauses) a watch after the warning. Injected: purge runs now (365 days, 14 days' warning),
    again at once, then 15 days later. Asserted: 1 and 4 are warned once (a second run warns
    nobody); 15 days later 1 is gone with profile and subscription, 4 (active since) stays, and
    2 and 3 were never warned. (Tried: with the warning step switched off nobody is warned and
    this fails.)"""
    settings = load_settings(data_dir=tmp_path, env="test")
    db = open_database(settings, migrate=True)
    try:
        with db.transaction() as s:
            s.add_all(
                [
                    User(id=1, created_at=LONG_AGO),
                    User(id=2, created_at=LONG_AGO),
                    User(id=3, created_at=NOW - timedelta(days=10)),
                    User(id=4, created_at=LONG_AGO),
                ]
            )
            s.flush()
            s.add(BookingProfile(user_id=1, first_name="Erika"))
            for user, state in (
                (1, SubscriptionState.DONE),
                (2, SubscriptionState.ACTIVE),
                (4, SubscriptionState.DONE),
            ):
                s.add(
                    Subscription(
                        user_id=user,
                        service_id=1063475,
                        office_ids=[102522],
                        state=state,
                        updated_at=LONG_AGO,
                    )
                )
        with db.transaction() as s:
            first = purge(s, NOW, 30, inactive_user_days=365, inactive_warning_days=14)
        with db.transaction() as s:
            again = purge(s, NOW + timedelta(hours=1), 30, inactive_user_days=365, inactive_warning_days=14)
            warned = sorted(
                n.user_id or 0
                for n in s.scalars(select(Notification))
                if (n.payload or {}).get("reason") == INACTIVE_REASON
            )
        assert (first.users_warned, first.users_erased) == (2, 0)
        assert (again.users_warned, again.users_erased) == (0, 0)
        assert warned == [1, 4]
        with db.transaction() as s:  # person 4 sets up a watch after the warning, and pauses it
            sub = Subscription(
                user_id=4, service_id=1063475, office_ids=[102522], state=SubscriptionState.PAUSED
            )
            sub.updated_at = NOW + timedelta(days=3)
            s.add(sub)
        with db.transaction() as s:
            later = purge(s, NOW + timedelta(days=15), 30, inactive_user_days=365, inactive_warning_days=14)
        assert later.users_erased == 1
        with db.transaction() as s:
            assert sorted(s.scalars(select(User.id))) == [2, 3, 4]
            assert s.scalars(select(BookingProfile)).all() == []
            assert sorted(s.scalars(select(Subscription.user_id))) == [2, 4, 4]
    finally:
        db.close()
