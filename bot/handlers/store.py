"""The bot's database work, as plain synchronous functions taking a ``Database`` first.

Handlers call these through ``Turn.run`` (a worker thread). Every function that reads or changes a
subscription filters by the Telegram user id as well as the row id, so a button naming someone
else's subscription finds nothing. Changes to subscriptions re-derive the watch targets
(``sync_targets``) in the same transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared.db.database import Database
from shared.db.models import (
    ACTIVE_BOOKING_STATUSES,
    Booking,
    BookingProfile,
    Conversation,
    Notification,
    SiteState,
    Slot,
    Subscription,
    SubscriptionState,
    Target,
    TargetState,
    User,
)
from shared.domain import DEFAULT_SITE, office_key, utcnow
from shared.recording import sync_targets, target_offices

MAX_SUBSCRIPTIONS_PER_USER = 10
MAX_PROFILES_PER_USER = 6
"""Booking profiles one person may keep (themself, a partner, children)."""
RECENT_SLOTS_WINDOW = timedelta(hours=24)


class SubscriptionLimitError(Exception):
    pass


class ProfileLimitError(Exception):
    pass


def ensure_user(db: Database, user_id: int, language: str) -> str:
    """The user's language; creates their row (with ``language``) at first contact."""
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None:
            session.add(User(id=user_id, language=language))
            return language
        return user.language


def set_language(db: Database, user_id: int, language: str) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None:
            session.add(User(id=user_id, language=language))
        else:
            user.language = language


@dataclass(frozen=True)
class SubscriptionDraft:
    service_id: int
    service_count: int
    office_ids: list[int]
    date_from: date | None
    date_to: date | None
    weekdays: list[int]
    time_from: time | None
    time_to: time | None
    autobook: bool
    profile_id: int | None = None
    """For whom MTA books; None: the user's default (oldest) profile."""


def save_subscription(
    db: Database, user_id: int, draft: SubscriptionDraft, editing_id: int | None
) -> int | None:
    """Insert (or update the user's own ``editing_id``) and re-derive targets; None if not theirs."""
    with db.transaction() as session:
        if editing_id is not None:
            sub = _own_subscription(session, user_id, editing_id)
            if sub is None:
                return None
        else:
            count = session.scalar(
                select(func.count()).select_from(Subscription).where(Subscription.user_id == user_id)
            )
            if (count or 0) >= MAX_SUBSCRIPTIONS_PER_USER:
                raise SubscriptionLimitError
            if session.get(User, user_id) is None:
                session.add(User(id=user_id))
                session.flush()
            sub = Subscription(user_id=user_id, site=DEFAULT_SITE)
            session.add(sub)
        if sub.replaces_booking_id is None:  # a swap's watch keeps what it replaces (shared.swaps)
            sub.service_id = draft.service_id
            sub.service_count = draft.service_count
            sub.profile_id = _own_profile_id(session, user_id, draft.profile_id)
        sub.office_ids = sorted(draft.office_ids)
        sub.date_from, sub.date_to = draft.date_from, draft.date_to
        sub.weekdays = sorted(draft.weekdays)
        sub.time_from, sub.time_to = draft.time_from, draft.time_to
        sub.autobook = draft.autobook
        sub.state = SubscriptionState.ACTIVE
        session.flush()
        sync_targets(session)
        return sub.id


def _own_profile_id(session: Session, user_id: int, profile_id: int | None) -> int | None:
    if profile_id is None:
        return None
    return session.scalar(
        select(BookingProfile.id).where(BookingProfile.id == profile_id, BookingProfile.user_id == user_id)
    )


def _own_subscription(session: Session, user_id: int, sub_id: int) -> Subscription | None:
    return session.scalar(
        select(Subscription).where(Subscription.id == sub_id, Subscription.user_id == user_id)
    )


def subscriptions_of(db: Database, user_id: int) -> list[Subscription]:
    with db.transaction() as session:
        return list(
            session.scalars(
                select(Subscription)
                .where(Subscription.user_id == user_id, Subscription.state != SubscriptionState.DONE)
                .order_by(Subscription.id)
            )
        )


def subscription_of(db: Database, user_id: int, sub_id: int) -> Subscription | None:
    with db.transaction() as session:
        return _own_subscription(session, user_id, sub_id)


def set_subscription_state(
    db: Database, user_id: int, sub_id: int, state: SubscriptionState
) -> Subscription | None:
    with db.transaction() as session:
        sub = _own_subscription(session, user_id, sub_id)
        if sub is None:
            return None
        sub.state = state
        session.flush()
        sync_targets(session)
        return sub


def delete_subscription(db: Database, user_id: int, sub_id: int) -> bool:
    with db.transaction() as session:
        sub = _own_subscription(session, user_id, sub_id)
        if sub is None:
            return False
        session.delete(sub)
        session.flush()
        sync_targets(session)
        return True


def count_active_bookings(db: Database, user_id: int) -> int:
    """Bookings still held at the city (holding, reserved, preconfirmed)."""
    with db.transaction() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Booking)
                .where(Booking.user_id == user_id, Booking.status.in_(ACTIVE_BOOKING_STATUSES))
            )
            or 0
        )


def has_profile(db: Database, user_id: int) -> bool:
    with db.transaction() as session:
        return session.scalar(select(BookingProfile.id).where(BookingProfile.user_id == user_id)) is not None


@dataclass(frozen=True)
class ProfileData:
    first_name: str
    last_name: str
    email: str
    phone: str | None
    custom_fields: dict[str, str]
    label: str | None = None
    """The short name the user chose; None: the user themself."""
    id: int | None = None


def _profile_data(row: BookingProfile) -> ProfileData:
    return ProfileData(
        first_name=row.first_name or "",
        last_name=row.last_name or "",
        email=row.email or "",
        phone=row.phone,
        custom_fields=dict(row.custom_fields or {}),
        label=row.label,
        id=row.id,
    )


def list_profiles(db: Database, user_id: int) -> list[ProfileData]:
    """The user's booking profiles, oldest (the default) first."""
    with db.transaction() as session:
        rows = session.scalars(
            select(BookingProfile).where(BookingProfile.user_id == user_id).order_by(BookingProfile.id)
        )
        return [_profile_data(row) for row in rows]


def load_profile(db: Database, user_id: int, profile_id: int | None = None) -> ProfileData | None:
    """The user's profile ``profile_id`` (None: their default, the oldest); None if not theirs."""
    with db.transaction() as session:
        query = select(BookingProfile).where(BookingProfile.user_id == user_id)
        if profile_id is not None:
            query = query.where(BookingProfile.id == profile_id)
        row = session.scalar(query.order_by(BookingProfile.id).limit(1))
        return _profile_data(row) if row is not None else None


def save_profile(
    db: Database, user_id: int, profile: ProfileData, profile_id: int | None = None
) -> int | None:
    """Add a profile (``profile_id`` None) or change the user's own ``profile_id``; returns its id,
    None if ``profile_id`` is not theirs. Raises ``ProfileLimitError`` past the limit."""
    with db.transaction() as session:
        if session.get(User, user_id) is None:
            session.add(User(id=user_id))
            session.flush()
        if profile_id is None:
            count = session.scalar(
                select(func.count()).select_from(BookingProfile).where(BookingProfile.user_id == user_id)
            )
            if (count or 0) >= MAX_PROFILES_PER_USER:
                raise ProfileLimitError
            row = BookingProfile(user_id=user_id)
            session.add(row)
        else:
            found = session.scalar(
                select(BookingProfile).where(
                    BookingProfile.id == profile_id, BookingProfile.user_id == user_id
                )
            )
            if found is None:
                return None
            row = found
        row.label = profile.label
        row.first_name = profile.first_name
        row.last_name = profile.last_name
        row.email = profile.email
        row.phone = profile.phone
        row.custom_fields = dict(profile.custom_fields) or None
        session.flush()
        return row.id


def delete_profile(db: Database, user_id: int, profile_id: int) -> bool:
    """Remove one of the user's profiles; with the last one goes the consent (a new one asks again).
    Subscriptions that booked for it fall back to the default profile (``profile_id`` SET NULL)."""
    with db.transaction() as session:
        result = session.execute(
            delete(BookingProfile).where(BookingProfile.id == profile_id, BookingProfile.user_id == user_id)
        )
        left = session.scalar(
            select(func.count()).select_from(BookingProfile).where(BookingProfile.user_id == user_id)
        )
        user = session.get(User, user_id)
        if user is not None and not left:
            user.consented_at = None
        return bool(getattr(result, "rowcount", 0))


# --- consent and quiet hours ----------------------------------------------------------------------


def has_consented(db: Database, user_id: int) -> bool:
    with db.transaction() as session:
        user = session.get(User, user_id)
        return user is not None and user.consented_at is not None


def record_consent(db: Database, user_id: int) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None:
            session.add(User(id=user_id, consented_at=utcnow()))
        else:
            user.consented_at = utcnow()


def quiet_hours(db: Database, user_id: int) -> tuple[time, time] | None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None or user.quiet_start is None or user.quiet_end is None:
            return None
        return user.quiet_start, user.quiet_end


def set_quiet_hours(db: Database, user_id: int, hours: tuple[time, time] | None) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None:
            user = User(id=user_id)
            session.add(user)
        user.quiet_start, user.quiet_end = hours if hours is not None else (None, None)


# --- /status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetStatus:
    subscription_id: int
    service_id: int
    service_count: int
    office_count: int
    watched: bool
    """False when the subscription is paused or no target exists yet."""
    state: TargetState | None
    last_success_at: datetime | None
    last_check_at: datetime | None
    backoff_until: datetime | None
    site_layout_trouble: bool
    recent_slots: int
    latest_slot: tuple[datetime, int] | None
    """(start, office id) of the most recently seen slot."""


def status_of(db: Database, user_id: int) -> list[TargetStatus]:
    since = utcnow() - RECENT_SLOTS_WINDOW
    result: list[TargetStatus] = []
    with db.transaction() as session:
        subs = session.scalars(
            select(Subscription)
            .where(Subscription.user_id == user_id, Subscription.state != SubscriptionState.DONE)
            .order_by(Subscription.id)
        ).all()
        for sub in subs:
            offices = target_offices(sub)
            target = session.scalar(
                select(Target).where(
                    Target.site == sub.site,
                    Target.service_id == sub.service_id,
                    Target.service_count == sub.service_count,
                    Target.office_key == office_key(offices),
                )
            )
            site_state = session.get(SiteState, sub.site)
            slot_filter = (
                Slot.site == sub.site,
                Slot.service_id == sub.service_id,
                Slot.service_count == sub.service_count,
                Slot.office_id.in_(offices),
                Slot.last_seen_at >= since,
            )
            recent = session.scalar(select(func.count()).select_from(Slot).where(*slot_filter)) or 0
            latest = session.execute(
                select(Slot.start_at, Slot.office_id)
                .where(*slot_filter)
                .order_by(Slot.last_seen_at.desc())
                .limit(1)
            ).first()
            result.append(
                TargetStatus(
                    subscription_id=sub.id,
                    service_id=sub.service_id,
                    service_count=sub.service_count,
                    office_count=len(offices),
                    watched=bool(
                        target is not None and target.active and sub.state == SubscriptionState.ACTIVE
                    ),
                    state=target.state if target else None,
                    last_success_at=target.last_success_at if target else None,
                    last_check_at=target.last_check_at if target else None,
                    backoff_until=target.backoff_until if target else None,
                    site_layout_trouble=bool(site_state and site_state.layout_trouble),
                    recent_slots=int(recent),
                    latest_slot=(latest[0], int(latest[1])) if latest else None,
                )
            )
    return result


# --- /export and /delete -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: _plain(getattr(obj, c.key)) for c in obj.__mapper__.column_attrs if c.key not in skip}


def export_user(db: Database, user_id: int) -> dict[str, Any]:
    """Every row about the user, decrypted: the user, every booking profile, subscriptions, bookings,
    messages and the conversation in progress, if the bot has kept one."""
    with db.transaction() as session:
        user = session.get(User, user_id)
        profiles = session.scalars(
            select(BookingProfile).where(BookingProfile.user_id == user_id).order_by(BookingProfile.id)
        )
        subs = session.scalars(
            select(Subscription).where(Subscription.user_id == user_id).order_by(Subscription.id)
        )
        bookings = session.scalars(select(Booking).where(Booking.user_id == user_id).order_by(Booking.id))
        conversation = session.get(Conversation, user_id)
        sub_ids = select(Subscription.id).where(Subscription.user_id == user_id)
        notes = session.scalars(
            select(Notification)
            .where((Notification.user_id == user_id) | Notification.subscription_id.in_(sub_ids))
            .order_by(Notification.id)
        )
        return {
            "format": "mta-export/1",
            "exported_at": utcnow().isoformat(),
            "user": _row(user) if user else None,
            "booking_profiles": [_row(p) for p in profiles],
            "subscriptions": [_row(s) for s in subs],
            "bookings": [_row(b) for b in bookings],
            "notifications": [_row(n) for n in notes],
            "conversation": conversation.state if conversation else None,
        }


def erase_user(db: Database, user_id: int) -> None:
    """Delete the user and, through ON DELETE CASCADE, everything of theirs; then re-derive targets."""
    with db.transaction() as session:
        sub_ids = select(Subscription.id).where(Subscription.user_id == user_id)
        session.execute(delete(Notification).where(Notification.subscription_id.in_(sub_ids)))
        session.execute(delete(Notification).where(Notification.user_id == user_id))
        session.execute(delete(Booking).where(Booking.user_id == user_id))
        session.execute(delete(BookingProfile).where(BookingProfile.user_id == user_id))
        session.execute(delete(Subscription).where(Subscription.user_id == user_id))
        session.execute(delete(Conversation).where(Conversation.user_id == user_id))
        session.execute(delete(User).where(User.id == user_id))
        session.flush()
        sync_targets(session)


def count_rows_of(db: Database, user_id: int) -> dict[str, int]:
    """How many rows mention the user, per table (tests and the export check)."""
    with db.transaction() as session:
        sub_ids = select(Subscription.id).where(Subscription.user_id == user_id)
        return {
            "users": session.scalar(select(func.count()).select_from(User).where(User.id == user_id)) or 0,
            "booking_profiles": session.scalar(
                select(func.count()).select_from(BookingProfile).where(BookingProfile.user_id == user_id)
            )
            or 0,
            "subscriptions": session.scalar(
                select(func.count()).select_from(Subscription).where(Subscription.user_id == user_id)
            )
            or 0,
            "bookings": session.scalar(
                select(func.count()).select_from(Booking).where(Booking.user_id == user_id)
            )
            or 0,
            "conversations": session.scalar(
                select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id)
            )
            or 0,
            "notifications": session.scalar(
                select(func.count())
                .select_from(Notification)
                .where((Notification.user_id == user_id) | Notification.subscription_id.in_(sub_ids))
            )
            or 0,
        }
