"""Reads of the farm's history for the dashboard and ``/api/v1`` (synchronous; run in a thread).

Detection latency (ARCHITECTURE §8) is "slot first visible on the site → alert accepted by
Telegram". When a slot became visible is not knowable on the real site, so the status service
reports an upper bound: from the last successful check of a target covering the slot that did
*not* see it, to the first alert about it accepted by Telegram (``sent_at``). A slot nobody was
alerted about (no subscriber matched, or no Telegram token) counts up to its ``first_seen_at``.
Slots seen by a target's first check have no earlier check and are left out: they were there
before MTA looked.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from api.schemas import (
    AdminAlertOut,
    AdminBookingOut,
    AlertOut,
    AlertSlot,
    BookingOut,
    CheckOut,
    PeopleOut,
    SlotOut,
    TargetOut,
)
from shared.catalog import Catalog, get_catalog
from shared.db.models import (
    ACTIVE_BOOKING_STATUSES,
    Booking,
    BookingStatus,
    Check,
    Notification,
    NotificationKind,
    NotificationStatus,
    Slot,
    Subscription,
    SubscriptionState,
    Target,
    TargetState,
    User,
)
from shared.domain import SITE_TIMEZONE, CheckOutcome
from shared.logging import scrub_text

SUCCESS_OUTCOMES = (CheckOutcome.OK, CheckOutcome.NO_SLOTS)
LATENCY_WINDOW = timedelta(hours=24)
HEATMAP_WINDOW = timedelta(days=28)
MAX_LATENCY_SLOTS = 5_000
MAX_HEATMAP_ROWS = 200_000
LATENCY_DEFINITION = (
    "Upper bound of ARCHITECTURE §8's detection latency (slot first visible → alert accepted by "
    "Telegram): from the last successful check that did not see the slot to the first alert sent "
    "about it, or to when MTA first saw it if no alert was sent. The moment a slot is released "
    "is not knowable on the real site."
)


# --- names -----------------------------------------------------------------------------------------


def _catalog(site: str) -> Catalog | None:
    try:
        return get_catalog(site)
    except KeyError:
        return None


def service_name(site: str, service_id: int) -> str | None:
    catalog = _catalog(site)
    service = catalog.service(service_id) if catalog else None
    return service.name if service else None


def office_name(site: str, office_id: int) -> str | None:
    catalog = _catalog(site)
    office = catalog.office(office_id) if catalog else None
    return (office.display_name or office.name) if office else None


# --- helpers ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def berlin_day_start(now: datetime) -> datetime:
    local = now.astimezone(SITE_TIMEZONE)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(now.tzinfo)


def count_and_page(session: Session, stmt: Select[Any], limit: int, offset: int) -> tuple[int, list[Any]]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = list(session.scalars(stmt.limit(limit).offset(offset)))
    return int(total), rows


def next_offset(total: int, limit: int, offset: int) -> int | None:
    return offset + limit if offset + limit < total else None


# --- staleness -------------------------------------------------------------------------------------
STALE_FACTOR = 3.0
STALE_GRACE_S = 60.0
"""A target is stale when its last check is older than ``STALE_FACTOR`` of its interval plus this
(the budget's own 60 s pause after a streak of requests must not make every target stale)."""


@dataclass(frozen=True)
class Cadence:
    """How often the scheduler checks each site's targets (``worker.scheduler.Scheduler.interval_s``
    from the same inputs), so the status service can tell a stale target from a quiet one."""

    min_interval_s: float
    budget_per_minute: int
    round_costs: Mapping[str, float] = field(default_factory=dict)
    paused_sites: frozenset[str] = frozenset()

    def interval_s(self, site: str, targets: Sequence[Target]) -> float:
        groups = {(t.site, t.service_id, t.service_count) for t in targets if t.site == site and t.active}
        cost = sum(self.round_costs.get(f"{g[0]}:{g[1]}:{g[2]}", 1.0) for g in groups)
        return max(self.min_interval_s, 60.0 * cost / max(1, self.budget_per_minute))

    def allowed_age_s(self, site: str, targets: Sequence[Target]) -> float:
        return STALE_FACTOR * self.interval_s(site, targets) + STALE_GRACE_S

    def stale_since(self, target: Target, targets: Sequence[Target], now: datetime) -> datetime | None:
        """When ``target`` should have been checked again at the latest, if that time has passed
        (None: not stale; a target backing off or of a paused site waits on purpose)."""
        if not target.active or target.site in self.paused_sites:
            return None
        if target.backoff_until is not None and target.backoff_until > now:
            return None
        last = target.last_check_at or target.created_at
        if last is None:
            return None
        due = last + timedelta(seconds=self.allowed_age_s(target.site, targets))
        return due if due < now else None


def state_text(target: Target, now: datetime, *, stale_since: datetime | None = None) -> str:
    if stale_since is not None:
        last = target.last_check_at
        if last is None:
            return "stale: never checked"
        return f"stale: last check {_ago(now - last)} ago"
    if target.state == TargetState.BACKING_OFF:
        if target.backoff_until is not None and target.backoff_until > now:
            local = target.backoff_until.astimezone(SITE_TIMEZONE)
            return f"backing off until {local:%H:%M:%S}"
        return "backing off (retrying now)"
    return {
        TargetState.OK: "ok",
        TargetState.CAPTCHA: "captcha",
        TargetState.CHANGED: "layout changed",
        TargetState.BLOCKED: "blocked",
    }.get(target.state, str(target.state))


def _ago(delta: timedelta) -> str:
    seconds = max(0.0, delta.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- detection latency -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySample:
    slot_id: int
    site: str
    service_id: int
    service_count: int
    office_id: int
    first_seen_at: datetime
    latency_s: float
    alerted: bool


def _covers(target: Target, site: str, service_id: int, count: int, office_id: int) -> bool:
    return (
        target.site == site
        and target.service_id == service_id
        and target.service_count == count
        and office_id in target.office_ids
    )


def latency_samples(session: Session, since: datetime, targets: Sequence[Target]) -> list[LatencySample]:
    """Detection latency (upper bound, see the module docstring) of slots first seen since ``since``."""
    slots = session.execute(
        select(Slot.id, Slot.site, Slot.service_id, Slot.service_count, Slot.office_id, Slot.first_seen_at)
        .where(Slot.first_seen_at >= since)
        .order_by(Slot.first_seen_at.desc())
        .limit(MAX_LATENCY_SLOTS)
    ).all()
    if not slots:
        return []
    earliest = min(s.first_seen_at for s in slots)
    check_times: dict[int, list[datetime]] = defaultdict(list)
    rows = session.execute(
        select(Check.target_id, Check.started_at)
        .where(Check.outcome.in_(SUCCESS_OUTCOMES), Check.started_at >= earliest - LATENCY_WINDOW)
        .order_by(Check.started_at)
    )
    for target_id, started_at in rows:
        check_times[target_id].append(started_at)
    sent: dict[int, datetime] = {}
    for slot_id, sent_at in session.execute(
        select(Notification.slot_id, func.min(Notification.sent_at))
        .where(
            Notification.kind == NotificationKind.SLOT,
            Notification.sent_at.is_not(None),
            Notification.payload["late"].as_boolean().is_(None),  # told a subscriber who came later
            Notification.slot_id.in_([s.id for s in slots]),
        )
        .group_by(Notification.slot_id)
    ):
        if slot_id is not None and sent_at is not None:
            sent[slot_id] = sent_at
    samples = []
    covering: dict[tuple[str, int, int, int], list[list[datetime]]] = {}
    for s in slots:
        where = (s.site, s.service_id, s.service_count, s.office_id)
        if where not in covering:
            covering[where] = [check_times.get(t.id, []) for t in targets if _covers(t, *where)]
        before: list[datetime] = []
        for times in covering[where]:  # each sorted: the last two checks before the sighting suffice
            index = bisect_left(times, s.first_seen_at)
            before.extend(times[max(0, index - 2) : index])
        if len(before) < 2:
            continue  # no check before the one that saw it: the slot predates our watching
        before.sort()
        previous_check = before[-2]  # before[-1] is the check that saw it first
        end = sent.get(s.id, s.first_seen_at)
        samples.append(
            LatencySample(
                slot_id=s.id,
                site=s.site,
                service_id=s.service_id,
                service_count=s.service_count,
                office_id=s.office_id,
                first_seen_at=s.first_seen_at,
                latency_s=max(0.0, (end - previous_check).total_seconds()),
                alerted=s.id in sent,
            )
        )
    return samples


# --- targets ---------------------------------------------------------------------------------------


def _last_outcomes(session: Session, target_ids: Iterable[int]) -> dict[int, CheckOutcome]:
    ids = list(target_ids)
    if not ids:
        return {}
    latest = (
        select(Check.target_id, func.max(Check.started_at).label("started_at"))
        .where(Check.target_id.in_(ids))
        .group_by(Check.target_id)
    ).subquery()
    rows = session.execute(
        select(Check.target_id, Check.outcome)
        .join(latest, (Check.target_id == latest.c.target_id) & (Check.started_at == latest.c.started_at))
        .order_by(Check.id)
    )
    return {target_id: outcome for target_id, outcome in rows}


def _count_covered(target: Target, rows: Sequence[Any]) -> int:
    """Sum the counts of (site, service, count, office, n) rows that ``target`` covers."""
    return sum(int(n) for site, sid, count, office, n in rows if _covers(target, site, sid, count, office))


def target_rows(
    session: Session, now: datetime, *, include_inactive: bool = False, cadence: Cadence | None = None
) -> tuple[list[TargetOut], list[LatencySample]]:
    """Every target with its state and figures, plus the latency samples they were computed from;
    with ``cadence``, a target not checked for longer than its interval allows is marked stale."""
    stmt = select(Target).order_by(Target.site, Target.service_id, Target.id)
    if not include_inactive:
        stmt = stmt.where(Target.active.is_(True))
    targets = list(session.scalars(stmt))
    all_targets = list(session.scalars(select(Target))) if not include_inactive else targets
    samples = latency_samples(session, now - LATENCY_WINDOW, all_targets)
    outcomes = _last_outcomes(session, (t.id for t in targets))
    day_start = berlin_day_start(now)
    where = (Slot.site, Slot.service_id, Slot.service_count, Slot.office_id)
    per_place = session.execute(
        select(
            *where,
            func.count(case((Slot.gone_at.is_(None), 1))),
            func.count(case((Slot.first_seen_at >= day_start, 1))),
            func.max(Slot.first_seen_at),
        ).group_by(*where)
    ).all()
    open_rows = [(site, sid, n, office, opened) for site, sid, n, office, opened, _, _ in per_place]
    today_rows = [(site, sid, n, office, today) for site, sid, n, office, _, today, _ in per_place]
    out = []
    for t in targets:
        mine = [
            s.latency_s for s in samples if _covers(t, s.site, s.service_id, s.service_count, s.office_id)
        ]
        stale_since = cadence.stale_since(t, all_targets, now) if cadence is not None else None
        out.append(
            TargetOut(
                id=t.id,
                site=t.site,
                service_id=t.service_id,
                service_name=service_name(t.site, t.service_id),
                service_count=t.service_count,
                office_ids=list(t.office_ids),
                office_names=[office_name(t.site, o) or str(o) for o in t.office_ids],
                active=t.active,
                state=t.state,
                state_text=state_text(t, now, stale_since=stale_since),
                stale=stale_since is not None,
                backoff_until=t.backoff_until,
                last_check_at=t.last_check_at,
                last_check_outcome=outcomes.get(t.id),
                last_success_at=t.last_success_at,
                consecutive_failures=t.consecutive_failures,
                last_error=scrub_text(t.last_error) if t.last_error else None,
                open_slots=_count_covered(t, open_rows),
                slots_seen_today=_count_covered(t, today_rows),
                last_slot_at=max(
                    (at for site, sid, n, office, _, _, at in per_place if _covers(t, site, sid, n, office)),
                    default=None,
                ),
                latency_p50_s=percentile(mine, 50),
                latency_p95_s=percentile(mine, 95),
                latency_samples=len(mine),
            )
        )
    return out, samples


# --- lists -----------------------------------------------------------------------------------------


def slot_out(s: Slot) -> SlotOut:
    return SlotOut(
        id=s.id,
        site=s.site,
        office_id=s.office_id,
        office_name=office_name(s.site, s.office_id),
        service_id=s.service_id,
        service_name=service_name(s.site, s.service_id),
        service_count=s.service_count,
        start_at=s.start_at,
        episode=s.episode,
        first_seen_at=s.first_seen_at,
        last_seen_at=s.last_seen_at,
        gone_at=s.gone_at,
    )


def check_out(c: Check) -> CheckOut:
    return CheckOut(
        id=c.id,
        target_id=c.target_id,
        started_at=c.started_at,
        duration_ms=c.duration_ms,
        outcome=c.outcome,
        slots_seen=c.slots_seen,
        worker_id=c.worker_id,
        error=scrub_text(c.error) if c.error else None,
    )


def _alert_slot(n: Notification, slots: dict[int, Slot]) -> AlertSlot | None:
    slot = slots.get(n.slot_id) if n.slot_id is not None else None
    if slot is None:
        return None
    return AlertSlot(
        site=slot.site,
        office_id=slot.office_id,
        office_name=office_name(slot.site, slot.office_id),
        service_id=slot.service_id,
        service_name=service_name(slot.site, slot.service_id),
        start_at=slot.start_at,
    )


def _summary(n: Notification, slot: AlertSlot | None) -> str:
    """A description of the alert that names no person (the texts sent to people may)."""
    if n.kind == NotificationKind.OPERATOR:
        return scrub_text(n.text or "operator alert")
    if slot is not None:
        where = slot.office_name or f"office {slot.office_id}"
        what = slot.service_name or f"service {slot.service_id}"
        when = slot.start_at.astimezone(SITE_TIMEZONE).strftime("%a %d.%m. %H:%M")
        verb = {NotificationKind.SLOT: "Free slot", NotificationKind.GONE: "Slot gone"}.get(n.kind, n.kind)
        return f"{verb}: {what} at {where}, {when}"
    reason = n.payload.get("reason") if isinstance(n.payload, dict) else None
    return f"{n.kind.value} notice" + (f" ({reason})" if isinstance(reason, str) else "")


def alert_rows(session: Session, notifications: Sequence[Notification], *, admin: bool) -> list[AlertOut]:
    slot_ids = {n.slot_id for n in notifications if n.slot_id is not None}
    slots = {s.id: s for s in session.scalars(select(Slot).where(Slot.id.in_(slot_ids)))} if slot_ids else {}
    out: list[AlertOut] = []
    for n in notifications:
        slot = _alert_slot(n, slots)
        base: dict[str, Any] = {
            "id": n.id,
            "kind": n.kind,
            "status": n.status,
            "created_at": n.created_at,
            "sent_at": n.sent_at,
            "attempts": n.attempts,
            "slot": slot,
            "summary": _summary(n, slot),
        }
        if admin:
            out.append(
                AdminAlertOut(
                    **base,
                    subscription_id=n.subscription_id,
                    user_id=n.user_id,
                    chat_id=n.chat_id,
                    text=n.text,
                    payload=n.payload or {},
                    last_error=n.last_error,
                    telegram_message_id=n.telegram_message_id,
                    next_attempt_at=n.next_attempt_at,
                )
            )
        else:
            out.append(AlertOut(**base))
    return out


def booking_out(b: Booking, *, admin: bool) -> BookingOut:
    base: dict[str, Any] = {
        "id": b.id,
        "status": b.status,
        "site": b.site,
        "service_id": b.service_id,
        "service_name": service_name(b.site, b.service_id),
        "service_count": b.service_count,
        "office_id": b.office_id,
        "office_name": office_name(b.site, b.office_id),
        "start_at": b.start_at,
        "activation_deadline": b.activation_deadline,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
    }
    if admin:
        return AdminBookingOut(
            **base,
            user_id=b.user_id,
            subscription_id=b.subscription_id,
            slot_id=b.slot_id,
            error=scrub_text(b.error) if b.error else None,
        )
    return BookingOut(**base)


# --- counts ----------------------------------------------------------------------------------------


def counts_by(session: Session, column: Any, *where: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(*where).group_by(column))
    return {str(getattr(key, "value", key)): int(n) for key, n in rows}


def bookings_by_status(session: Session) -> dict[str, int]:
    found = counts_by(session, Booking.status)
    return {s.value: found.get(s.value, 0) for s in BookingStatus}


def alerts_by_status(session: Session, since: datetime | None = None) -> dict[str, int]:
    where = [Notification.created_at >= since] if since is not None else []
    found = counts_by(session, Notification.status, *where)
    return {s.value: found.get(s.value, 0) for s in NotificationStatus}


def checks_by_outcome(session: Session, since: datetime) -> dict[str, int]:
    return counts_by(session, Check.outcome, Check.started_at >= since)


def people_counts(session: Session) -> PeopleOut:
    """How many people, active subscriptions and bookings the farm serves (counts only)."""

    def count(model: Any, *where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    return PeopleOut(
        users=count(User),
        active_subscriptions=count(Subscription, Subscription.state == SubscriptionState.ACTIVE),
        bookings=count(Booking),
        active_bookings=count(Booking, Booking.status.in_(ACTIVE_BOOKING_STATUSES)),
    )


# --- heat map --------------------------------------------------------------------------------------


def slot_heatmaps(session: Session, now: datetime) -> dict[tuple[str, int], list[list[int]]]:
    """Per (site, service): new slot episodes by local weekday (0 = Monday) × hour, last 28 days."""
    maps: dict[tuple[str, int], list[list[int]]] = {}
    counter: Counter[tuple[str, int, int, int]] = Counter()
    rows = session.execute(
        select(Slot.site, Slot.service_id, Slot.first_seen_at)
        .where(Slot.first_seen_at >= now - HEATMAP_WINDOW)
        .order_by(Slot.id.desc())
        .limit(MAX_HEATMAP_ROWS)
    )
    for site, service_id, first_seen in rows:
        local = first_seen.astimezone(SITE_TIMEZONE)
        counter[(site, service_id, local.weekday(), local.hour)] += 1
    for (site, service_id, weekday, hour), n in counter.items():
        grid = maps.setdefault((site, service_id), [[0] * 24 for _ in range(7)])
        grid[weekday][hour] += n
    return dict(sorted(maps.items()))


__all__ = [
    "LATENCY_DEFINITION",
    "STALE_GRACE_S",
    "Cadence",
    "LatencySample",
    "alert_rows",
    "alerts_by_status",
    "booking_out",
    "bookings_by_status",
    "check_out",
    "checks_by_outcome",
    "count_and_page",
    "latency_samples",
    "next_offset",
    "office_name",
    "people_counts",
    "percentile",
    "service_name",
    "slot_heatmaps",
    "slot_out",
    "target_rows",
]
