"""The MTA schema (ARCHITECTURE §2) as SQLAlchemy 2 typed declarative models.

Conventions: every timestamp is an aware UTC ``datetime`` (``UTCDateTime``); enums are stored as
their lower-case values in VARCHAR columns; personal data is encrypted (``EncryptedString``).
Deleting a ``User`` deletes everything of theirs through ``ON DELETE CASCADE`` (SQLite enforces it
because every connection turns foreign keys on). Schema changes go through Alembic
(``shared/db/migrations``), never ``create_all`` outside tests.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.crypto import EncryptedJSON, EncryptedString
from shared.db.types import UTCDateTime, str_enum
from shared.domain import DEFAULT_SITE, CheckOutcome, parse_office_key, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# autoincrement ids: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012  (SQLAlchemy reads it once)


class SubscriptionState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DONE = "done"


class TargetState(enum.StrEnum):
    OK = "ok"
    BACKING_OFF = "backing_off"
    BLOCKED = "blocked"
    CAPTCHA = "captcha"
    CHANGED = "changed"


class NotificationKind(enum.StrEnum):
    SLOT = "slot"
    GONE = "gone"
    BOOKING = "booking"
    REMINDER = "reminder"
    OPERATOR = "operator"


class NotificationChannel(enum.StrEnum):
    """Where an outbox row goes; each has its ``Notifier`` (``shared.notify``)."""

    TELEGRAM = "telegram"
    EMAIL = "email"


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    """Handed to Telegram, answer not yet recorded; after a crash it counts as delivered (never resent)."""
    SENT = "sent"
    FAILED = "failed"
    """Failed for now; retried at ``next_attempt_at``."""
    DEAD = "dead"
    """Given up."""


class BookingStatus(enum.StrEnum):
    HOLDING = "holding"
    RESERVED = "reserved"
    PRECONFIRMED = "preconfirmed"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_BOOKING_STATUSES = (BookingStatus.HOLDING, BookingStatus.RESERVED, BookingStatus.PRECONFIRMED)
_ACTIVE_BOOKING_SQL = "status IN ('holding', 'reserved', 'preconfirmed')"
_ORDINARY_ACTIVE_SQL = f"{_ACTIVE_BOOKING_SQL} AND replaces_booking_id IS NULL"
_SWAP_HOLD_SQL = f"{_ACTIVE_BOOKING_SQL} AND replaces_booking_id IS NOT NULL"


class User(Base):
    """A Telegram user; the id is Telegram's, which is also their private chat id."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    language: Mapped[str] = mapped_column(String(8), default="de")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consented_at: Mapped[datetime | None] = mapped_column(default=None)
    """When they agreed to MTA keeping their booking details (/profile asks first); None: not asked
    or withdrawn."""
    quiet_start: Mapped[time | None] = mapped_column(Time, default=None)
    quiet_end: Mapped[time | None] = mapped_column(Time, default=None)
    """Berlin wall-clock hours without slot alerts (may wrap midnight); both None: no quiet hours."""
    alert_email: Mapped[str | None] = mapped_column(EncryptedString(), default=None)
    """The verified address slot alerts also go to (``/email``); None: Telegram only."""
    alert_email_pending: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON(), default=None)
    """An address being verified: {"address", "code_hash", "expires_at", "tries"}; None: none."""

    profiles: Mapped[list[BookingProfile]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="BookingProfile.id",
    )
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    bookings: Mapped[list[Booking]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class BookingProfile(Base):
    """What the booking form asks for, for one person a Telegram user books for (themself, a partner,
    a child); every field encrypted at rest. A user may keep several; the oldest is the default."""

    __tablename__ = "booking_profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str | None] = mapped_column(EncryptedString())
    """The short name the user chose ("Anna", "my son"); None: the user themself."""
    first_name: Mapped[str | None] = mapped_column(EncryptedString())
    last_name: Mapped[str | None] = mapped_column(EncryptedString())
    email: Mapped[str | None] = mapped_column(EncryptedString())
    phone: Mapped[str | None] = mapped_column(EncryptedString())
    custom_fields: Mapped[dict[str, str] | None] = mapped_column(EncryptedJSON())
    """The office's extra form fields (customTextfield, customTextfield2), by field name."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="profiles")

    def __repr__(self) -> str:  # never show personal data
        return f"BookingProfile(id={self.id!r}, user_id={self.user_id!r})"


class Conversation(Base):
    """A conversation in progress with the bot (what ``/subscribe`` or ``/profile`` has asked so far),
    kept so that a restarted bot carries on where the person left off. It may hold the booking
    profile being typed, so the whole state is one encrypted value."""

    __tablename__ = "conversations"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    state: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:  # never show personal data
        return f"Conversation(user_id={self.user_id!r})"


class Subscription(Base):
    """One person's wish: a service at some offices, with date/weekday/time-of-day filters.

    ``office_ids`` empty means any office offering the service; ``weekdays`` (0 = Monday) empty
    means any day; date and time windows are inclusive and evaluated in Europe/Berlin time.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_match", "site", "service_id", "service_count", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    site: Mapped[str] = mapped_column(String(64), default=DEFAULT_SITE)
    service_id: Mapped[int] = mapped_column(BigInteger)
    service_count: Mapped[int] = mapped_column(Integer, default=1)
    office_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    date_from: Mapped[date | None] = mapped_column(Date)
    date_to: Mapped[date | None] = mapped_column(Date)
    weekdays: Mapped[list[int]] = mapped_column(JSON, default=list)
    time_from: Mapped[time | None] = mapped_column(Time)
    time_to: Mapped[time | None] = mapped_column(Time)
    autobook: Mapped[bool] = mapped_column(Boolean, default=False)
    profile_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("booking_profiles.id", ondelete="SET NULL"), index=True, default=None
    )
    """For whom MTA books (``shared.booking.profile_for``); None: the user's default profile."""
    replaces_booking_id: Mapped[int | None] = mapped_column(
        Integer,
        # bookings point at subscriptions too: created after both tables (a cycle otherwise)
        ForeignKey("bookings.id", ondelete="CASCADE", use_alter=True),
        index=True,
        default=None,
    )
    """An earlier date for this held booking (``shared.swaps``); None: an ordinary subscription."""
    start_before: Mapped[datetime | None] = mapped_column(default=None)
    """Only slots starting strictly before this fit (the held appointment's start)."""
    state: Mapped[SubscriptionState] = mapped_column(
        str_enum(SubscriptionState, "subscription_state"), default=SubscriptionState.ACTIVE
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="subscriptions")
    notifications: Mapped[list[Notification]] = relationship(
        back_populates="subscription", cascade="all, delete-orphan", passive_deletes=True
    )


class Target(Base):
    """A distinct (site, service, count, office set) being watched; derived from subscriptions."""

    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("site", "service_id", "service_count", "office_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64), default=DEFAULT_SITE)
    service_id: Mapped[int] = mapped_column(BigInteger)
    service_count: Mapped[int] = mapped_column(Integer, default=1)
    office_key: Mapped[str] = mapped_column(String(2000))
    """Sorted, comma-separated office ids (``shared.domain.office_key``)."""
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    state: Mapped[TargetState] = mapped_column(str_enum(TargetState, "target_state"), default=TargetState.OK)
    last_check_at: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_layout_changes: Mapped[int] = mapped_column(Integer, default=0)
    backoff_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def office_ids(self) -> tuple[int, ...]:
        return parse_office_key(self.office_key)


class Check(Base):
    """One check of one target, successful or not."""

    __tablename__ = "checks"
    __table_args__ = (Index("ix_checks_target_started", "target_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    target_id: Mapped[int] = mapped_column(Integer, ForeignKey("targets.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(index=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[CheckOutcome] = mapped_column(str_enum(CheckOutcome, "check_outcome"))
    slots_seen: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    check_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The observation id: a redelivered result is recorded once."""


class Slot(Base):
    """One episode of a free appointment start: a slot that vanishes and returns is a new row.

    The open episode of (site, office, service, count, start) is the one with ``gone_at`` NULL; a
    partial unique index guarantees there is at most one. ``service_count`` is part of the identity
    because the site answers differently per count (a 3-person slot needs consecutive time).
    """

    __tablename__ = "slots"
    __table_args__ = (
        UniqueConstraint(
            "site", "office_id", "service_id", "service_count", "start_at", "episode", name="uq_slots_episode"
        ),
        Index(
            "uq_slots_open_episode",
            "site",
            "office_id",
            "service_id",
            "service_count",
            "start_at",
            unique=True,
            sqlite_where=text("gone_at IS NULL"),
            postgresql_where=text("gone_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    office_id: Mapped[int] = mapped_column(BigInteger)
    service_id: Mapped[int] = mapped_column(BigInteger)
    service_count: Mapped[int] = mapped_column(Integer, default=1)
    start_at: Mapped[datetime] = mapped_column()
    episode: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    gone_at: Mapped[datetime | None] = mapped_column()

    @property
    def is_open(self) -> bool:
        return self.gone_at is None


class Notification(Base):
    """The outbox: one message to send (or edit) in one chat or to one e-mail address.

    Unique (subscription_id, slot_id, episode, kind, channel) makes a slot alert insert-once per
    channel; rows that
    leave one of those NULL (operator alerts, reminders) deduplicate through ``dedup_key``. Insert
    through ``shared.db.outbox.enqueue_notification`` so a duplicate is a silent no-op.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("subscription_id", "slot_id", "episode", "kind", "channel"),
        Index("ix_notifications_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    subscription_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    """The person the message is for (NULL for operator alerts); their deletion removes it."""
    slot_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("slots.id", ondelete="CASCADE"), index=True
    )
    booking_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    episode: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[NotificationKind] = mapped_column(str_enum(NotificationKind, "notification_kind"))
    channel: Mapped[str] = mapped_column(
        String(16), default=NotificationChannel.TELEGRAM, server_default=NotificationChannel.TELEGRAM.value
    )
    """``NotificationChannel``: an e-mail row goes to its user's ``alert_email``."""
    text: Mapped[str | None] = mapped_column(Text)
    """Rendered message; NULL leaves rendering (in the user's language) to the sender."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[NotificationStatus] = mapped_column(
        str_enum(NotificationStatus, "notification_status"), default=NotificationStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    claim_token: Mapped[str | None] = mapped_column(String(64), index=True)
    """The bot sender run holding this row (bot/sender.py); NULL when nobody does."""
    claimed_at: Mapped[datetime | None] = mapped_column()

    subscription: Mapped[Subscription | None] = relationship(back_populates="notifications")


class Booking(Base):
    """One attempt to book a slot for a person; at most one active per (profile, service), plus
    during a swap (an earlier date, ``shared.swaps``) one hold that replaces it, never two."""

    __tablename__ = "bookings"
    __table_args__ = (
        Index(
            "uq_bookings_one_active_per_profile_service",
            "profile_id",
            "service_id",
            unique=True,
            sqlite_where=text(_ORDINARY_ACTIVE_SQL),
            postgresql_where=text(_ORDINARY_ACTIVE_SQL),
        ),
        Index(
            "uq_bookings_one_swap_hold_per_profile_service",
            "profile_id",
            "service_id",
            unique=True,
            sqlite_where=text(_SWAP_HOLD_SQL),
            postgresql_where=text(_SWAP_HOLD_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("subscriptions.id", ondelete="SET NULL"), index=True
    )
    profile_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("booking_profiles.id", ondelete="SET NULL"), index=True, default=None
    )
    """The person booked for (whose details went into the city's form)."""
    replaces_booking_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("bookings.id", ondelete="SET NULL"), default=None
    )
    """A swap's new hold: the booking it replaces once it is confirmed (``shared.swaps``)."""
    slot_id: Mapped[int | None] = mapped_column(BigIntId, ForeignKey("slots.id", ondelete="SET NULL"))
    site: Mapped[str] = mapped_column(String(64), default=DEFAULT_SITE)
    service_id: Mapped[int] = mapped_column(BigInteger)
    service_count: Mapped[int] = mapped_column(Integer, default=1)
    office_id: Mapped[int] = mapped_column(BigInteger)
    start_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[BookingStatus] = mapped_column(
        str_enum(BookingStatus, "booking_status"), default=BookingStatus.HOLDING
    )
    process_id: Mapped[str | None] = mapped_column(EncryptedString())
    auth_key: Mapped[str | None] = mapped_column(EncryptedString())
    activation_deadline: Mapped[datetime | None] = mapped_column()
    reservation_deadline: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="bookings")

    def __repr__(self) -> str:
        return f"Booking(id={self.id!r}, user_id={self.user_id!r}, status={self.status!r})"


class SiteState(Base):
    """Per-site trouble bookkeeping, so one broken layout raises one operator alert, not one per target.

    ``layout_episode`` numbers the site's layout-trouble episodes; it advances when a check of the
    site succeeds again after trouble, so the next trouble gets its own alert.
    """

    __tablename__ = "site_states"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    layout_episode: Mapped[int] = mapped_column(Integer, default=1)
    layout_trouble: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


__all__ = [
    "ACTIVE_BOOKING_STATUSES",
    "Base",
    "Booking",
    "BookingProfile",
    "BookingStatus",
    "Check",
    "CheckOutcome",
    "Conversation",
    "Notification",
    "NotificationChannel",
    "NotificationKind",
    "NotificationStatus",
    "SiteState",
    "Slot",
    "Subscription",
    "SubscriptionState",
    "Target",
    "TargetState",
    "User",
]
