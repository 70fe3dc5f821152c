"""Turning check results into rows: ARCHITECTURE §3 steps 4 and 5.

``record_observation`` records one successful check in the caller's transaction: the check row,
the slot episodes (new / still there / gone / back), one outbox row per person with a matching
subscription for each new episode (and for an open one, to a person not yet told of it: their
subscription is new, resumed or changed) and a "gone" row for each alerted episode that ended.
``record_failure`` records a failed check and moves the target's state and back-off.
``sync_targets`` derives the watched targets from the active subscriptions.

Call each inside one ``session_scope`` (one transaction); they flush but do not commit. Everything
is idempotent: the same observation recorded twice adds no slot and no outbox row, and concurrent
recorders on PostgreSQL meet at the unique keys (``ON CONFLICT DO NOTHING``), not at an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from shared.catalog import Catalog, get_catalog
from shared.db.models import (
    Check,
    Notification,
    NotificationChannel,
    NotificationKind,
    SiteState,
    Slot,
    Subscription,
    SubscriptionState,
    Target,
    TargetState,
    User,
)
from shared.db.outbox import enqueue_notifications, insert_ignoring_duplicates
from shared.domain import (
    SITE_TIMEZONE,
    CaptchaRequired,
    CheckFailure,
    CheckOutcome,
    CheckTimeout,
    LayoutChanged,
    Observation,
    RateLimited,
    SiteUnavailable,
    ensure_utc,
    office_key,
    utcnow,
)
from shared.logging import get_logger, scrub_text

log = get_logger(__name__)
T = TypeVar("T")

RATE_LIMIT_DEFAULT_BACKOFF = timedelta(seconds=60)
RATE_LIMIT_MAX_BACKOFF = timedelta(hours=1)
"""A reset time further out than this is treated as a clock problem, not obeyed."""
ERROR_BASE_BACKOFF = timedelta(seconds=30)
ERROR_MAX_BACKOFF = timedelta(minutes=30)
MAX_ERROR_TEXT = 2000


@dataclass(frozen=True)
class RecordResult:
    check_id: int | None
    new_slot_ids: list[int] = field(default_factory=list)
    gone_slot_ids: list[int] = field(default_factory=list)
    notifications_inserted: int = 0
    duplicate: bool = False
    """The observation had been recorded before; nothing was written."""


@dataclass(frozen=True)
class FailureResult:
    check_id: int | None
    state: TargetState
    backoff_until: datetime | None
    operator_alerts_inserted: int = 0
    duplicate: bool = False


# --- matching ------------------------------------------------------------------------------------


def subscription_matches(subscription: Subscription, office_id: int, start: datetime) -> bool:
    """Whether a free slot (office, aware start time) is one this subscription wants.

    Site, service and count are matched by the caller's query; here: offices (empty = any), the
    date window, weekdays (0 = Monday; empty = any) and the time-of-day window, all inclusive and
    in Europe/Berlin time; and for an earlier date, a start strictly before ``start_before``.
    """
    if subscription.office_ids and office_id not in {int(i) for i in subscription.office_ids}:
        return False
    if subscription.start_before is not None and ensure_utc(start) >= ensure_utc(subscription.start_before):
        return False  # an earlier date (shared.swaps): strictly before the held appointment
    local = ensure_utc(start).astimezone(SITE_TIMEZONE)
    day = local.date()
    if subscription.date_from is not None and day < subscription.date_from:
        return False
    if subscription.date_to is not None and day > subscription.date_to:
        return False
    if subscription.weekdays and local.weekday() not in {int(d) for d in subscription.weekdays}:
        return False
    clock = local.time().replace(tzinfo=None)
    if subscription.time_from is not None and clock < subscription.time_from:
        return False
    return not (subscription.time_to is not None and clock > subscription.time_to)


def find_open_slot(
    session: Session,
    *,
    site: str,
    office_id: int,
    service_id: int,
    start_at: datetime,
    service_count: int = 1,
) -> Slot | None:
    """The current (not gone) episode of a slot, if any; at most one exists (partial unique index)."""
    return session.scalars(
        select(Slot).where(
            Slot.site == site,
            Slot.office_id == office_id,
            Slot.service_id == service_id,
            Slot.service_count == service_count,
            Slot.start_at == ensure_utc(start_at),
            Slot.gone_at.is_(None),
        )
    ).one_or_none()


# --- observations --------------------------------------------------------------------------------


def _lock_target(session: Session, target_id: int) -> Target:
    # FOR UPDATE serialises recorders of one target on PostgreSQL; SQLite's BEGIN IMMEDIATE already does
    target = session.get(Target, target_id, with_for_update=True, populate_existing=True)
    if target is None:
        raise LookupError(f"no target {target_id}")
    return target


def _insert_check(
    session: Session,
    *,
    target_id: int,
    started_at: datetime,
    duration_ms: int,
    outcome: CheckOutcome,
    slots_seen: int,
    worker_id: str | None,
    error: str | None,
    check_key: str | None,
) -> int | None:
    """The check row's id, or None when a check with this key was recorded before."""
    stmt = (
        insert_ignoring_duplicates(session, Check)
        .values(
            target_id=target_id,
            started_at=started_at,
            duration_ms=max(0, int(duration_ms)),
            outcome=outcome,
            slots_seen=slots_seen,
            worker_id=worker_id,
            error=error,
            check_key=check_key,
        )
        .returning(Check.id)
    )
    return session.execute(stmt).scalar_one_or_none()


def _slot_payload(target: Target, slot: Slot, observation: Observation) -> dict[str, Any]:
    return {
        "site": slot.site,
        "target_id": target.id,
        "office_id": slot.office_id,
        "service_id": slot.service_id,
        "service_count": slot.service_count,
        "start": slot.start_at.isoformat(),
        "episode": slot.episode,
        "observed_at": observation.observed_at.isoformat(),
        "source": observation.source,
    }


def record_observation(
    session: Session,
    target_id: int,
    observation: Observation,
    *,
    worker_id: str | None,
    duration_ms: int,
    started_at: datetime | None = None,
) -> RecordResult:
    """Record a successful check of ``target_id`` and queue the alerts it calls for."""
    target = _lock_target(session, target_id)
    if (observation.site, observation.service_id, observation.service_count, observation.office_ids) != (
        target.site,
        target.service_id,
        target.service_count,
        target.office_ids,
    ):
        raise ValueError(f"observation {observation.key} does not belong to target {target_id}")
    now = observation.observed_at
    offices = set(target.office_ids)

    seen: dict[tuple[int, datetime], None] = {}
    for slot_seen in observation.slots:
        if slot_seen.service_id != target.service_id or slot_seen.office_id not in offices:
            log.warning("slot_outside_target", target_id=target_id, office_id=slot_seen.office_id)
            continue
        seen[(slot_seen.office_id, slot_seen.start)] = None

    check_id = _insert_check(
        session,
        target_id=target.id,
        started_at=ensure_utc(started_at) if started_at else now - timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        outcome=CheckOutcome.OK if seen else CheckOutcome.NO_SLOTS,
        slots_seen=len(seen),
        worker_id=worker_id,
        error=None,
        check_key=observation.observation_id,
    )
    if check_id is None:
        return RecordResult(check_id=None, duplicate=True)

    scope = and_(
        Slot.site == target.site,
        Slot.service_id == target.service_id,
        Slot.service_count == target.service_count,
        Slot.office_id.in_(offices),
    )
    open_slots = {
        (s.office_id, s.start_at): s
        for s in session.scalars(select(Slot).where(scope, Slot.gone_at.is_(None)))
    }

    # still there
    still_ids = [open_slots[key].id for key in seen if key in open_slots]
    for chunk in _chunks(still_ids):
        session.execute(
            update(Slot)
            .where(Slot.id.in_(chunk), Slot.gone_at.is_(None), Slot.last_seen_at < now)
            .values(last_seen_at=now)
        )

    # new, or back after being gone: a new episode
    new_slots = _open_episodes(session, target, [key for key in seen if key not in open_slots], now)

    # gone: open, not seen, and either on a day this observation covered or already in the past
    gone_candidates = [
        s.id
        for key, s in open_slots.items()
        if key not in seen and s.last_seen_at <= now and (observation.covers(s.start_at) or s.start_at <= now)
    ]
    gone_ids: list[int] = []
    for chunk in _chunks(gone_candidates):
        gone_ids.extend(
            session.scalars(
                update(Slot)
                .where(Slot.id.in_(chunk), Slot.gone_at.is_(None))
                .values(gone_at=now)
                .returning(Slot.id)
            ).all()
        )

    # alerts: every new episode, and every open one a person whose subscription fits it has not
    # been told of (their subscription is new, resumed or changed since it appeared)
    still_slots = [open_slots[key] for key in seen if key in open_slots]
    inserted = _queue_slot_alerts(session, target, observation, new_slots, still_slots)
    inserted += _queue_gone_notices(session, gone_ids, now)

    if target.last_check_at is None or target.last_check_at < now:
        target.last_check_at = now
    if target.last_success_at is None or target.last_success_at < now:
        target.last_success_at = now
    target.consecutive_failures = 0
    target.consecutive_layout_changes = 0
    target.state = TargetState.OK
    target.backoff_until = None
    target.last_error = None
    # the site works again: the next layout trouble is a new episode with its own operator alert
    session.execute(
        update(SiteState)
        .where(SiteState.site == target.site, SiteState.layout_trouble.is_(True))
        .values(layout_trouble=False, layout_episode=SiteState.layout_episode + 1, updated_at=now)
    )
    session.flush()
    return RecordResult(
        check_id=check_id,
        new_slot_ids=[s.id for s in new_slots],
        gone_slot_ids=sorted(gone_ids),
        notifications_inserted=inserted,
    )


def _open_episodes(
    session: Session, target: Target, keys: Sequence[tuple[int, datetime]], now: datetime
) -> list[Slot]:
    """Insert a new episode for each (office, start); skip those a concurrent recorder opened first."""
    if not keys:
        return []
    last_episode: dict[tuple[int, datetime], int] = {}
    starts = sorted({start for _, start in keys})
    for chunk in _chunks(starts):
        rows = session.execute(
            select(Slot.office_id, Slot.start_at, func.max(Slot.episode))
            .where(
                Slot.site == target.site,
                Slot.service_id == target.service_id,
                Slot.service_count == target.service_count,
                Slot.office_id.in_({office for office, _ in keys}),
                Slot.start_at.in_(chunk),
            )
            .group_by(Slot.office_id, Slot.start_at)
        ).all()
        last_episode.update({(office, start): episode for office, start, episode in rows})
    created: list[Slot] = []
    for office_id, start in keys:
        slot_id = session.execute(
            insert_ignoring_duplicates(session, Slot)
            .values(
                site=target.site,
                office_id=office_id,
                service_id=target.service_id,
                service_count=target.service_count,
                start_at=start,
                episode=last_episode.get((office_id, start), 0) + 1,
                first_seen_at=now,
                last_seen_at=now,
            )
            .returning(Slot.id)
        ).scalar_one_or_none()
        if slot_id is not None:
            slot = session.get(Slot, slot_id)
            assert slot is not None
            created.append(slot)
    return created


def _queue_slot_alerts(
    session: Session,
    target: Target,
    observation: Observation,
    new_slots: Sequence[Slot],
    still_slots: Sequence[Slot],
) -> int:
    """One alert per person whose active subscription fits a slot episode and who has not been
    alerted to that episode yet: everyone for a new episode; for one still open, whoever was not
    told (their subscription is new, resumed or changed). Those are marked ``late``, and
    detection latency leaves them out: they measure when someone subscribed."""
    if not new_slots and not still_slots:
        return 0
    subscriptions = session.scalars(
        select(Subscription)
        .where(
            Subscription.site == target.site,
            Subscription.service_id == target.service_id,
            Subscription.service_count == target.service_count,
            Subscription.state == SubscriptionState.ACTIVE,
        )
        .order_by(Subscription.id)
    ).all()
    if not subscriptions:
        return 0
    told = _told(session, still_slots)  # a new episode has no alerts yet
    by_mail = _with_alert_email(session, {sub.user_id for sub in subscriptions})
    rows = []
    for slot, late in [*((s, False) for s in new_slots), *((s, True) for s in still_slots)]:
        matching = [
            sub
            for sub in subscriptions
            if (slot.id, sub.user_id) not in told and subscription_matches(sub, slot.office_id, slot.start_at)
        ]
        if not matching:
            continue
        payload = _slot_payload(target, slot, observation)
        if late:
            payload["late"] = True
        # one alert per person and slot, even when several of their subscriptions fit it: the one
        # that may book it if any may (one for an earlier date first: it may book beside a held
        # appointment), else the oldest
        chosen: dict[int, Subscription] = {}
        for sub in sorted(matching, key=lambda s: (not s.autobook, s.replaces_booking_id is None, s.id)):
            chosen.setdefault(sub.user_id, sub)
        for sub in sorted(chosen.values(), key=lambda s: s.id):
            rows.append(
                {
                    "subscription_id": sub.id,
                    "user_id": sub.user_id,
                    "chat_id": sub.user_id,
                    "slot_id": slot.id,
                    "episode": slot.episode,
                    "kind": NotificationKind.SLOT,
                    "payload": {**payload, "autobook": sub.autobook},
                    "next_attempt_at": observation.observed_at,
                }
            )
            if sub.user_id in by_mail:  # the same alert by e-mail too: one per person, slot and channel
                rows.append({**rows[-1], "chat_id": None, "channel": NotificationChannel.EMAIL})
    return len(enqueue_notifications(session, rows)) if rows else 0


def _with_alert_email(session: Session, user_ids: set[int]) -> set[int]:
    """Those of ``user_ids`` who also want slot alerts by e-mail (a verified address, ``/email``)."""
    found: set[int] = set()
    for chunk in _chunks(sorted(user_ids)):
        query = select(User.id).where(User.id.in_(chunk), User.alert_email.is_not(None))
        found.update(session.scalars(query))
    return found


def _told(session: Session, slots: Sequence[Slot]) -> set[tuple[int, int]]:
    """(slot id, user id) of every slot alert already queued for these episodes."""
    told: set[tuple[int, int]] = set()
    for chunk in _chunks([s.id for s in slots]):
        rows = session.execute(
            select(Notification.slot_id, Notification.user_id).where(
                Notification.slot_id.in_(chunk), Notification.kind == NotificationKind.SLOT
            )
        )
        told.update((slot_id, user_id) for slot_id, user_id in rows if slot_id and user_id)
    return told


def _queue_gone_notices(session: Session, gone_ids: Sequence[int], now: datetime) -> int:
    """A "gone" row for every alert about an episode that just ended (the bot edits that message)."""
    if not gone_ids:
        return 0
    rows = []
    for chunk in _chunks(list(gone_ids)):
        alerts = session.execute(
            select(Notification, Slot)
            .join(Slot, Slot.id == Notification.slot_id)
            .where(
                Notification.slot_id.in_(chunk),
                Notification.kind == NotificationKind.SLOT,
                Notification.subscription_id.is_not(None),
                Notification.channel == NotificationChannel.TELEGRAM,  # a mail cannot be edited: none
            )
        ).all()
        for alert, slot in alerts:
            rows.append(
                {
                    "subscription_id": alert.subscription_id,
                    "user_id": alert.user_id,
                    "chat_id": alert.chat_id,
                    "slot_id": slot.id,
                    "episode": slot.episode,
                    "kind": NotificationKind.GONE,
                    "payload": {
                        **alert.payload,
                        "alert_notification_id": alert.id,
                        "gone_at": now.isoformat(),
                    },
                    "next_attempt_at": now,
                }
            )
    return len(enqueue_notifications(session, rows))


def _chunks(items: Sequence[T], size: int = 500) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- failures ------------------------------------------------------------------------------------


def backoff_for(failure: CheckFailure, consecutive_failures: int, now: datetime) -> datetime | None:
    """When the target may be checked again after ``failure``; None: no back-off.

    429: the site's reset time (or a minute). 503, errors, timeouts: 30 s doubling per consecutive
    failure, at most 30 min. Captcha and layout trouble: none here (the worker takes a fresh
    session; the operator is alerted).
    """
    if isinstance(failure, RateLimited):
        if failure.reset_at is not None and failure.reset_at > now:
            return min(failure.reset_at, now + RATE_LIMIT_MAX_BACKOFF)
        return now + RATE_LIMIT_DEFAULT_BACKOFF
    if isinstance(failure, CaptchaRequired | LayoutChanged):
        return None
    exponent = max(0, min(consecutive_failures - 1, 16))
    return now + min(ERROR_BASE_BACKOFF * (2**exponent), ERROR_MAX_BACKOFF)


def _state_for(failure: CheckFailure) -> TargetState:
    if isinstance(failure, CaptchaRequired):
        return TargetState.CAPTCHA
    if isinstance(failure, LayoutChanged):
        return TargetState.CHANGED
    return TargetState.BACKING_OFF  # RateLimited, SiteUnavailable, CheckTimeout, others


def _describe(failure: CheckFailure) -> str:
    text = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
    return scrub_text(text)[:MAX_ERROR_TEXT]


def record_failure(
    session: Session,
    target_id: int,
    failure: CheckFailure,
    *,
    worker_id: str | None,
    duration_ms: int,
    layout_alert_after: int,
    operator_chat_ids: Sequence[int],
    now: datetime | None = None,
    check_key: str | None = None,
) -> FailureResult:
    """Record a failed check and move the target's state; alert operators once per layout trouble."""
    now = ensure_utc(now) if now is not None else utcnow()
    target = _lock_target(session, target_id)
    error = _describe(failure)
    check_id = _insert_check(
        session,
        target_id=target.id,
        started_at=now - timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        outcome=failure.outcome,
        slots_seen=0,
        worker_id=worker_id,
        error=error,
        check_key=check_key,
    )
    if check_id is None:
        return FailureResult(None, target.state, target.backoff_until, duplicate=True)

    if target.last_check_at is None or target.last_check_at < now:
        target.last_check_at = now
    target.consecutive_failures += 1
    target.last_error = error
    target.state = _state_for(failure)
    backoff = backoff_for(failure, target.consecutive_failures, now)
    # a shorter back-off never overrides a longer one already promised (e.g. a 429 reset time)
    if backoff is not None and (target.backoff_until is None or target.backoff_until < backoff):
        target.backoff_until = backoff

    alerts = 0
    if isinstance(failure, LayoutChanged):
        target.consecutive_layout_changes += 1
        if target.consecutive_layout_changes >= layout_alert_after:
            alerts = _alert_layout_changed(session, target, error, operator_chat_ids, now)
    elif not isinstance(failure, RateLimited | SiteUnavailable | CheckTimeout | CaptchaRequired):
        log.warning("unclassified_check_failure", target_id=target_id, failure=type(failure).__name__)
    session.flush()
    return FailureResult(check_id, target.state, target.backoff_until, operator_alerts_inserted=alerts)


def _alert_layout_changed(
    session: Session, target: Target, error: str, operator_chat_ids: Sequence[int], now: datetime
) -> int:
    """One operator alert per chat for this site's current layout-trouble episode (deduplicated)."""
    text = (
        f"MTA operator alert: the {target.site} site looks changed. {target.consecutive_layout_changes} "
        f"checks in a row of target {target.id} (service {target.service_id}) failed with a layout "
        f"error; the site adapter probably needs an update. Last error: {error}"
    )
    details = {"target_id": target.id, "consecutive_layout_changes": target.consecutive_layout_changes}
    return _layout_alert(session, target.site, text, details, operator_chat_ids, now)


def alert_booking_layout_changed(
    session: Session,
    site: str,
    booking_id: int,
    error: str,
    operator_chat_ids: Sequence[int],
    now: datetime | None = None,
) -> int:
    """A booking walk that could not find or read the page: the operator alert at once.

    Checks raise it only after several layout errors in a row, because they run every few seconds
    and one odd answer heals by itself. A booking goes through steps no check sees (the contact
    form, the overview), and each such failure has cost a subscriber a booking, so one is enough.
    Deduplicated with the checks' alert: one per site and layout-trouble episode.
    """
    now = now or utcnow()
    text = (
        f"MTA operator alert: the {site} site looks changed. Booking {booking_id} failed with a "
        f"layout error (the booking walk could not find or read the page); the site adapter "
        f"probably needs an update. Error: {error}"
    )
    return _layout_alert(session, site, text, {"booking_id": booking_id}, operator_chat_ids, now)


def _layout_alert(
    session: Session,
    site: str,
    text: str,
    details: dict[str, Any],
    operator_chat_ids: Sequence[int],
    now: datetime,
) -> int:
    session.execute(insert_ignoring_duplicates(session, SiteState).values(site=site, updated_at=now))
    site_state = session.get(SiteState, site, with_for_update=True, populate_existing=True)
    assert site_state is not None
    if not site_state.layout_trouble:
        site_state.layout_trouble = True
        site_state.updated_at = now
    episode = site_state.layout_episode
    payload = {"reason": "layout_changed", "site": site, "layout_episode": episode, **details}
    dedup_prefix = f"operator:layout_changed:{site}:{episode}"
    chats: list[int | None] = list(operator_chat_ids) or [None]  # None: console and dashboard only
    rows = [
        {
            "kind": NotificationKind.OPERATOR,
            "chat_id": chat,
            "text": text,
            "payload": payload,
            "next_attempt_at": now,
            "dedup_key": f"{dedup_prefix}:{'console' if chat is None else chat}",
        }
        for chat in chats
    ]
    inserted = len(enqueue_notifications(session, rows))
    if inserted:
        log.warning("layout_changed_alert", site=site, episode=episode, **details)
    return inserted


# --- targets -------------------------------------------------------------------------------------


def target_offices(
    subscription: Subscription, catalog_for: Callable[[str], Catalog] = get_catalog
) -> tuple[int, ...]:
    """The office set a subscription is watched at: its own list (limited to offices offering the
    service, since the site refuses other combinations), or every office offering the service."""
    try:
        catalog: Catalog | None = catalog_for(subscription.site)
    except KeyError:
        catalog = None
    offering: set[int] | None = None
    if catalog is not None and catalog.service(subscription.service_id) is not None:
        offering = {o.id for o in catalog.offices_for_service(subscription.service_id)}
    chosen = {int(i) for i in subscription.office_ids}
    if not chosen:
        return tuple(sorted(offering or ()))
    if offering is None:
        return tuple(sorted(chosen))
    return tuple(sorted(chosen & offering))


def sync_targets(session: Session, *, catalog_for: Callable[[str], Catalog] = get_catalog) -> list[Target]:
    """Make the targets match the active subscriptions; returns the active targets, by id.

    Subscriptions asking the same (site, service, count, office set) share one target. Targets
    nobody needs any more are marked inactive (kept, with their history), and come back active
    when someone subscribes again.
    """
    wanted: set[tuple[str, int, int, str]] = set()
    for sub in session.scalars(select(Subscription).where(Subscription.state == SubscriptionState.ACTIVE)):
        offices = target_offices(sub, catalog_for)
        if not offices:
            log.warning("subscription_without_offices", subscription_id=sub.id, service_id=sub.service_id)
            continue
        wanted.add((sub.site, sub.service_id, sub.service_count, office_key(offices)))

    existing = {
        (t.site, t.service_id, t.service_count, t.office_key): t
        for t in session.scalars(select(Target).with_for_update())
    }
    for key in wanted - existing.keys():
        site, service_id, service_count, key_text = key
        session.execute(
            insert_ignoring_duplicates(session, Target).values(
                site=site,
                service_id=service_id,
                service_count=service_count,
                office_key=key_text,
                active=True,
            )
        )
    for key, target in existing.items():
        target.active = key in wanted
    session.flush()
    return list(session.scalars(select(Target).where(Target.active.is_(True)).order_by(Target.id)))


__all__ = [
    "FailureResult",
    "RecordResult",
    "alert_booking_layout_changed",
    "backoff_for",
    "find_open_slot",
    "record_failure",
    "record_observation",
    "subscription_matches",
    "sync_targets",
    "target_offices",
]
