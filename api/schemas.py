"""The JSON shapes of ``/api/v1``: public ones carry no personal data; ``Admin*`` ones may.

Public: no user or chat ids, no names, e-mails or phones, no message texts written for a person
(operator alerts excepted), no city process ids or keys. Admin shapes add the ids and texts an
operator needs to help someone; they are served only with the admin token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from shared.db.models import BookingStatus, NotificationKind, NotificationStatus, TargetState
from shared.domain import CheckOutcome

T = TypeVar("T")

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_OFFSET = 1_000_000


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; ask for the next with ``offset=next_offset``."""

    items: list[T]
    limit: int
    offset: int
    total: int
    next_offset: int | None = Field(description="null on the last page")


class Problem(BaseModel):
    """An error: ``detail`` says what was wrong and how to fix it."""

    detail: str


class TargetOut(BaseModel):
    id: int
    site: str
    service_id: int
    service_name: str | None
    service_count: int
    office_ids: list[int]
    office_names: list[str]
    active: bool
    state: TargetState
    state_text: str = Field(
        description="ok, backing off until …, captcha, layout changed, blocked; or stale: last check … ago"
    )
    stale: bool = Field(
        default=False,
        description="not checked for longer than its interval allows (no worker or scheduler, a wedged farm)",
    )
    backoff_until: datetime | None
    last_check_at: datetime | None
    last_check_outcome: CheckOutcome | None
    last_success_at: datetime | None
    consecutive_failures: int
    last_error: str | None
    open_slots: int
    slots_seen_today: int = Field(description="slot episodes first seen today (Europe/Berlin)")
    last_slot_at: datetime | None = Field(description="when the newest slot episode it covers was first seen")
    latency_p50_s: float | None = Field(description="detection latency median, last 24 h (upper bound)")
    latency_p95_s: float | None
    latency_samples: int


class SlotOut(BaseModel):
    id: int
    site: str
    office_id: int
    office_name: str | None
    service_id: int
    service_name: str | None
    service_count: int
    start_at: datetime
    episode: int
    first_seen_at: datetime
    last_seen_at: datetime
    gone_at: datetime | None


class CheckOut(BaseModel):
    id: int
    target_id: int
    started_at: datetime
    duration_ms: int
    outcome: CheckOutcome
    slots_seen: int
    worker_id: str | None
    error: str | None


class AlertSlot(BaseModel):
    site: str
    office_id: int
    office_name: str | None
    service_id: int
    service_name: str | None
    start_at: datetime


class AlertOut(BaseModel):
    """A notification as anyone may see it: what and when, never for whom."""

    id: int
    kind: NotificationKind
    status: NotificationStatus
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    slot: AlertSlot | None
    summary: str


class AdminAlertOut(AlertOut):
    subscription_id: int | None
    user_id: int | None
    chat_id: int | None
    text: str | None
    payload: dict[str, Any]
    last_error: str | None
    telegram_message_id: int | None
    next_attempt_at: datetime | None


class BookingOut(BaseModel):
    id: int
    status: BookingStatus
    site: str
    service_id: int
    service_name: str | None
    service_count: int
    office_id: int
    office_name: str | None
    start_at: datetime | None
    activation_deadline: datetime | None
    created_at: datetime
    updated_at: datetime


class AdminBookingOut(BookingOut):
    user_id: int
    subscription_id: int | None
    slot_id: int | None
    error: str | None


class HeartbeatOut(BaseModel):
    role: str
    identity: str
    at: datetime | None
    age_s: float | None
    fresh: bool
    info: dict[str, Any]


class QueueOut(BaseModel):
    name: str
    ready: int
    delayed: int
    in_progress: int
    dead: int


class BudgetOut(BaseModel):
    site: str
    egress: str
    used: int = Field(description="requests in the last 60 s")
    limit: int = Field(description="requests allowed per minute")
    streak: int = Field(description="requests since the last 60 s pause")
    pause_s: float = Field(description="seconds MTA still pauses so the city's counter resets; 0: none")
    pause_after: int = Field(description="requests in a streak before MTA pauses; 0: no pause")
    announced_limit: int | None = Field(
        description="the site's own X-RateLimit-Limit, as last seen; null: not seen in the last hour"
    )
    carried: int = Field(
        default=0, description="requests charged to the coming minutes (a walk's cost being paid back)"
    )


class PartStatus(BaseModel):
    """One part of the farm as ``/readyz`` sees it."""

    ok: bool
    required: bool
    detail: str


class ReadyOut(BaseModel):
    ready: bool
    parts: dict[str, PartStatus]


class EventOut(BaseModel):
    """Something that happened to the farm itself (a role restarted, an outage), newest first."""

    at: datetime
    kind: str
    text: str
    role: str | None
    duration_s: float | None = Field(description="how long it lasted; null while unknown or ongoing")


class PeopleOut(BaseModel):
    users: int
    active_subscriptions: int
    bookings: int = Field(description="bookings of every status still kept")
    active_bookings: int = Field(description="holding, reserved or preconfirmed")


class LatencyOut(BaseModel):
    p50_s: float | None
    p95_s: float | None
    samples: int
    definition: str


class StatusOut(BaseModel):
    generated_at: datetime
    database: PartStatus
    redis: PartStatus
    scheduler_leader: str | None
    heartbeats: list[HeartbeatOut]
    queue_consumers: int
    queues: list[QueueOut]
    budgets: list[BudgetOut]
    targets_by_state: dict[str, int]
    open_slots: int
    slots_seen_today: int
    checks_last_hour: dict[str, int]
    alerts_by_status: dict[str, int]
    bookings_by_status: dict[str, int]
    detection_latency: LatencyOut
    telegram_configured: bool
    alerts_mode: str = Field(description="'sending' with a Telegram token, else 'not sending (demo)'")
    workers_alive: int = Field(description="worker processes with a fresh heartbeat")
    targets_stale: int = Field(description="active targets not checked for longer than their interval allows")
    people: PeopleOut | None = Field(description="null when the database is unreadable")
    events: list[EventOut] = Field(description="the farm's own events, newest first")
    stopped_sites: list[SiteStopOut] = Field(
        default_factory=list, description="sites the operator's kill switch stops: no request goes there"
    )


class RetryOut(BaseModel):
    id: int
    status: NotificationStatus


class PurgeOut(BaseModel):
    checks_deleted: int
    slots_deleted: int
    slots_kept: int
    subscriptions_ended: int
    notifications_queued: int
    conversations_deleted: int
    users_warned: int = 0
    users_erased: int = 0
    bookings_deleted: int = 0


class SiteStopIn(BaseModel):
    reason: str = Field(default="", max_length=500, description="why, for the other operators")


class SiteStopOut(BaseModel):
    """The kill switch of one site: while ``stopped``, no request at all goes to it."""

    site: str
    stopped: bool
    reason: str = ""
    by: str = ""
    at: str = ""


class TargetActionOut(BaseModel):
    id: int
    state: TargetState
    backoff_until: datetime | None


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "AdminAlertOut",
    "AdminBookingOut",
    "AlertOut",
    "AlertSlot",
    "BookingOut",
    "BudgetOut",
    "CheckOut",
    "EventOut",
    "HeartbeatOut",
    "LatencyOut",
    "Page",
    "PartStatus",
    "PeopleOut",
    "Problem",
    "PurgeOut",
    "QueueOut",
    "ReadyOut",
    "RetryOut",
    "SiteStopIn",
    "SiteStopOut",
    "SlotOut",
    "StatusOut",
    "TargetActionOut",
    "TargetOut",
]
