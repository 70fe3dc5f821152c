"""Retention: old checks and slot history go, referenced slots stay, expired subscriptions end once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from shared.db.database import Database
from shared.db.models import (
    Booking,
    BookingStatus,
    Check,
    Conversation,
    Notification,
    NotificationKind,
    NotificationStatus,
    Slot,
    Subscription,
    SubscriptionState,
    Target,
    User,
)
from shared.domain import CheckOutcome
from shared.retention import ENDED_REASON, purge

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=45)
RECENT = NOW - timedelta(days=2)


def _slot(start_offset_days: int, *, seen: datetime, gone: datetime | None) -> Slot:
    return Slot(
        site="munich",
        office_id=102522,
        service_id=1063475,
        start_at=NOW + timedelta(days=start_offset_days),
        first_seen_at=seen,
        last_seen_at=seen,
        gone_at=gone,
    )


def test_purge_deletes_old_history_and_keeps_referenced_rows(db: Database) -> None:
    with db.transaction() as s:
        s.add(User(id=7, language="en"))
        target = Target(site="munich", service_id=1063475, office_key="102522")
        s.add(target)
        s.flush()
        sub = Subscription(user_id=7, service_id=1063475)
        s.add(sub)
        s.flush()
        for started in (OLD, OLD + timedelta(hours=1), RECENT):
            s.add(Check(target_id=target.id, started_at=started, outcome=CheckOutcome.NO_SLOTS))
        old_settled = _slot(-40, seen=OLD, gone=OLD + timedelta(minutes=5))
        old_pending = _slot(-41, seen=OLD, gone=OLD + timedelta(minutes=5))
        old_booked = _slot(-42, seen=OLD, gone=OLD + timedelta(minutes=5))
        old_open = _slot(-43, seen=OLD, gone=None)  # never marked gone, not seen for 45 days
        recent = _slot(3, seen=RECENT, gone=None)
        s.add_all([old_settled, old_pending, old_booked, old_open, recent])
        s.flush()
        s.add(
            Notification(
                subscription_id=sub.id,
                user_id=7,
                slot_id=old_settled.id,
                episode=1,
                kind=NotificationKind.SLOT,
                status=NotificationStatus.SENT,
            )
        )
        s.add(
            Notification(
                subscription_id=sub.id,
                user_id=7,
                slot_id=old_pending.id,
                episode=1,
                kind=NotificationKind.SLOT,
                status=NotificationStatus.FAILED,
            )
        )
        s.add(
            Booking(
                user_id=7,
                slot_id=old_booked.id,
                service_id=1063475,
                office_id=102522,
                status=BookingStatus.PRECONFIRMED,
            )
        )
        ids = {
            "settled": old_settled.id,
            "pending": old_pending.id,
            "booked": old_booked.id,
            "open": old_open.id,
            "recent": recent.id,
        }

    with db.transaction() as s:
        report = purge(s, NOW, retention_days=30)
    assert (report.checks_deleted, report.slots_deleted, report.slots_kept) == (2, 2, 2)

    with db.transaction() as s:
        assert [c.started_at for c in s.scalars(select(Check))] == [RECENT]
        left = set(s.scalars(select(Slot.id)))
        assert left == {ids["pending"], ids["booked"], ids["recent"]}
        # the settled alert went with its slot; the unsent one is still there to be sent
        assert [n.status for n in s.scalars(select(Notification))] == [NotificationStatus.FAILED]

    with db.transaction() as s:  # a second run finds nothing more
        again = purge(s, NOW, retention_days=30)
    assert (again.checks_deleted, again.slots_deleted) == (0, 0)


def test_expired_subscriptions_end_and_their_owner_is_told_once(db: Database) -> None:
    with db.transaction() as s:
        s.add_all([User(id=1, language="de"), User(id=2, language="en")])
        s.flush()
        expired_de = Subscription(user_id=1, service_id=1063475, date_to=date(2026, 11, 20))
        expired_en = Subscription(user_id=2, service_id=1063475, date_to=date(2026, 11, 28))
        ends_today = Subscription(user_id=2, service_id=1063475, date_to=date(2026, 11, 29))
        open_ended = Subscription(user_id=1, service_id=1063475)
        paused = Subscription(
            user_id=1, service_id=1063475, date_to=date(2026, 1, 1), state=SubscriptionState.PAUSED
        )
        s.add_all([expired_de, expired_en, ends_today, open_ended, paused])
        s.flush()
        ids = [expired_de.id, expired_en.id, ends_today.id, open_ended.id, paused.id]

    with db.transaction() as s:
        report = purge(s, NOW, retention_days=30)
    assert (report.subscriptions_ended, report.notifications_queued) == (2, 2)

    with db.transaction() as s:
        states = {sub.id: sub.state for sub in s.scalars(select(Subscription))}
        assert [states[i] for i in ids] == [
            SubscriptionState.DONE,
            SubscriptionState.DONE,
            SubscriptionState.ACTIVE,  # its last day is today (Berlin): still useful
            SubscriptionState.ACTIVE,
            SubscriptionState.PAUSED,
        ]
        notes = {n.subscription_id: n for n in s.scalars(select(Notification))}
        assert set(notes) == {ids[0], ids[1]}
        de, en = notes[ids[0]], notes[ids[1]]
        assert de.kind == NotificationKind.REMINDER and de.payload["reason"] == ENDED_REASON
        assert de.chat_id == 1 and de.status == NotificationStatus.PENDING
        assert "Wohnsitzanmeldung" in (de.text or "") and "20.11.2026" in (de.text or "")
        assert (de.text or "").startswith("Ihr Abo") and (en.text or "").startswith("Your watch")

    with db.transaction() as s:  # nothing twice, even if the state were reset by hand
        s.get(Subscription, ids[0]).state = SubscriptionState.ACTIVE  # type: ignore[union-attr]
    with db.transaction() as s:
        again = purge(s, NOW, retention_days=30)
    assert (again.subscriptions_ended, again.notifications_queued) == (1, 0)


def test_abandoned_conversations_go_and_recent_ones_stay(db: Database) -> None:
    """Kept conversations: one last written two days ago (abandoned), one an hour ago. Asserted: the
    purge deletes only the abandoned one, and says so."""
    with db.transaction() as s:
        s.add_all([User(id=1), User(id=2)])
        s.flush()
        s.add_all(
            [
                Conversation(user_id=1, state={"flow": {}}, updated_at=NOW - timedelta(days=2)),
                Conversation(user_id=2, state={"flow": {}}, updated_at=NOW - timedelta(hours=1)),
            ]
        )
    with db.transaction() as s:
        report = purge(s, NOW, retention_days=30)
    assert report.conversations_deleted == 1
    with db.transaction() as s:
        assert list(s.scalars(select(Conversation.user_id))) == [2]


def test_bookings_long_past_go_and_live_ones_stay(db: Database) -> None:
    """Bookings of one person: confirmed for an appointment 45 days ago (settled long ago), failed
    45 days ago, confirmed for an appointment next week (changed long ago, still to come),
    preconfirmed and left alone since 45 days (active: the poll decides), failed two days ago.
    Asserted: the purge deletes exactly the first two, and says so."""
    with db.transaction() as s:
        s.add(User(id=1))
        s.flush()
        rows = {
            "past confirmed": (BookingStatus.CONFIRMED, OLD, OLD),
            "old failed": (BookingStatus.FAILED, OLD, None),
            "future confirmed": (BookingStatus.CONFIRMED, OLD, NOW + timedelta(days=7)),
            "stuck preconfirmed": (BookingStatus.PRECONFIRMED, OLD, OLD),
            "recent failed": (BookingStatus.FAILED, RECENT, None),
        }
        for name, (status, changed, start) in rows.items():
            s.add(
                Booking(
                    user_id=1,
                    service_id=1063475,
                    office_id=102522,
                    status=status,
                    start_at=start,
                    error=name,
                    created_at=changed,
                    updated_at=changed,
                )
            )
    with db.transaction() as s:
        report = purge(s, NOW, retention_days=30)
    assert report.bookings_deleted == 2
    with db.transaction() as s:
        left = sorted(str(error) for error in s.scalars(select(Booking.error)))
    assert left == ["future confirmed", "recent failed", "stuck preconfirmed"]
