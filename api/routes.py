"""``/api/v1``: the farm's state as JSON. Public reads carry no personal data; ``/admin`` needs the token."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar, cast

import redis
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import queries
from api.etag import send_cached
from api.schemas import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    AdminAlertOut,
    AdminBookingOut,
    AlertOut,
    BookingOut,
    BudgetOut,
    CheckOut,
    EventOut,
    HeartbeatOut,
    LatencyOut,
    Page,
    PartStatus,
    Problem,
    PurgeOut,
    QueueOut,
    RetryOut,
    SiteStopIn,
    SiteStopOut,
    SlotOut,
    StatusOut,
    TargetActionOut,
    TargetOut,
)
from api.state import AppState, get_state, require_admin
from shared import killswitch
from shared.contracts import WAKE_CHANNEL
from shared.db.engine import session_scope
from shared.db.models import (
    Booking,
    BookingStatus,
    Check,
    Notification,
    NotificationKind,
    NotificationStatus,
    Slot,
    Target,
    TargetState,
)
from shared.domain import CheckOutcome, utcnow
from shared.logging import get_logger

R = TypeVar("R")
log = get_logger("mta.api")
MAX_ID = 2**53
"""Ids and catalogue numbers are well below this; larger input is refused, not overflowed."""


def _sane_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None
    if not datetime(1970, 1, 1, tzinfo=UTC) <= utc <= datetime(2200, 1, 1, tzinfo=UTC):
        raise ValueError("time must be between 1970 and 2200")
    return utc


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, 1..{MAX_LIMIT}")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip (newest first)")]
Since = Annotated[
    AwareDatetime | None,
    AfterValidator(_sane_time),
    Query(description="only rows at or after this time (ISO 8601 with a time zone)"),
]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Site = Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,64}$", description="site name, e.g. munich")]

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a request body that cannot be read (JSON that is not UTF-8)"},
    401: {"model": Problem, "description": "no or wrong admin token"},
    403: {"model": Problem, "description": "admin API disabled (MTA_ADMIN_TOKEN unset)"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such row"}}

router = APIRouter(prefix="/api/v1")
admin = APIRouter(
    prefix="/api/v1/admin", dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS, tags=["admin"]
)


async def _read(state: AppState, work: Callable[[Session], R]) -> R:
    """Run ``work`` in a read-only transaction, in a worker thread (SQLAlchemy here is synchronous)."""

    def run() -> R:
        with session_scope(state.reader) as session:
            return work(session)

    return await run_in_threadpool(run)


READ_CACHE_S = 1.0
"""Whole-farm summaries (status, targets) cost ~0.1 s of CPU to compute: concurrent requests share
one computation, and its result serves for this long (the dashboard itself refreshes every second)."""


async def _read_shared(state: AppState, key: str, work: Callable[[Session], R]) -> R:
    """``_read`` for the expensive summaries: one computation at a time per key, reused briefly."""
    lock = state.cache_locks.setdefault(key, asyncio.Lock())
    async with lock:
        hit = state.cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < READ_CACHE_S:
            return cast(R, hit[1])
        value = await _read(state, work)
        state.cache[key] = (time.monotonic(), value)
        return value


async def _write(state: AppState, work: Callable[[Session], R]) -> R:
    state.cache.clear()
    state.answers.clear()

    def run() -> R:
        with state.db.transaction() as session:
            return work(session)

    return await run_in_threadpool(run)


async def _ready(
    request: Request, state: AppState, key: str, adapter: TypeAdapter[Any], produce: Callable[[], Any]
) -> Response:
    """A public read as ready bytes (``api.snapshot``): built once per refresh per ``key`` (which
    names every parameter), shared by all requests meanwhile, sent with its ETag."""
    return await send_cached(request, state.answers, key, adapter, produce, max_age_s=state.feed.interval_s)


STATUS_OUT = TypeAdapter(StatusOut)
TARGET_OUT = TypeAdapter(TargetOut)
TARGETS_PAGE = TypeAdapter(Page[TargetOut])
SLOTS_PAGE = TypeAdapter(Page[SlotOut])
CHECKS_PAGE = TypeAdapter(Page[CheckOut])
ALERTS_PAGE = TypeAdapter(Page[AlertOut])
BOOKINGS_PAGE = TypeAdapter(Page[BookingOut])


def _page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {
        "items": items,
        "limit": limit,
        "offset": offset,
        "total": total,
        "next_offset": queries.next_offset(total, limit, offset),
    }


# --- status ----------------------------------------------------------------------------------------


def _db_summary(session: Session, now: datetime, cadence: queries.Cadence) -> dict[str, Any]:
    targets, samples = queries.target_rows(session, now, cadence=cadence)
    latencies = [s.latency_s for s in samples]
    by_state = {s.value: 0 for s in TargetState}
    for t in targets:
        by_state[t.state.value] += 1
    return {
        "targets_by_state": by_state,
        "targets_stale": sum(1 for t in targets if t.stale),
        "people": queries.people_counts(session),
        "open_slots": sum(t.open_slots for t in targets),
        "slots_seen_today": sum(t.slots_seen_today for t in targets),
        "checks_last_hour": queries.checks_by_outcome(session, now - timedelta(hours=1)),
        "alerts_by_status": queries.alerts_by_status(session),
        "bookings_by_status": queries.bookings_by_status(session),
        "detection_latency": LatencyOut(
            p50_s=queries.percentile(latencies, 50),
            p95_s=queries.percentile(latencies, 95),
            samples=len(latencies),
            definition=queries.LATENCY_DEFINITION,
        ),
    }


@router.get("/status", response_model=StatusOut, summary="The farm at a glance")
async def get_status(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Response:
    return await _ready(request, state, "status", STATUS_OUT, lambda: status_now(state))


async def status_now(state: AppState) -> StatusOut:
    """The farm at a glance, read now."""
    now = utcnow()
    farm = await state.farm()
    cadence = state.cadence(farm)
    try:
        summary = await _read_shared(state, "status", lambda s: _db_summary(s, now, cadence))
        database = PartStatus(ok=True, required=True, detail="readable")
    except Exception as exc:  # reported, not raised: the status page must work when the DB does not
        summary = {
            "targets_by_state": {},
            "targets_stale": 0,
            "people": None,
            "open_slots": 0,
            "slots_seen_today": 0,
            "checks_last_hour": {},
            "alerts_by_status": {},
            "bookings_by_status": {},
            "detection_latency": LatencyOut(
                p50_s=None, p95_s=None, samples=0, definition=queries.LATENCY_DEFINITION
            ),
        }
        database = PartStatus(ok=False, required=True, detail=f"{type(exc).__name__}: {exc}"[:300])
    return StatusOut(
        generated_at=now,
        database=database,
        redis=PartStatus(ok=farm.ok, required=True, detail=farm.error or "reachable"),
        scheduler_leader=farm.leader,
        heartbeats=[
            HeartbeatOut(
                role=h.role, identity=h.identity, at=h.at, age_s=h.age_s(now), fresh=h.fresh(now), info=h.info
            )
            for h in farm.heartbeats
        ],
        queue_consumers=farm.consumers,
        queues=[QueueOut(**vars(q)) for q in farm.queues],
        budgets=[BudgetOut(**vars(b)) for b in farm.budgets],
        telegram_configured=state.settings.telegram_token is not None,
        alerts_mode="sending" if state.settings.telegram_token is not None else "not sending (demo)",
        workers_alive=len(farm.live("worker", now)),
        events=[EventOut(**vars(e)) for e in farm.events],
        stopped_sites=[
            SiteStopOut(site=site, stopped=True, **info) for site, info in farm.stopped_sites.items()
        ],
        **summary,
    )


# --- targets ---------------------------------------------------------------------------------------


@router.get("/targets", response_model=Page[TargetOut], summary="Watched targets with state and figures")
async def list_targets(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    include_inactive: Annotated[bool, Query(description="also targets nobody watches any more")] = False,
) -> Response:
    key = f"targets:{limit}:{offset}:{include_inactive}"
    return await _ready(
        request, state, key, TARGETS_PAGE, lambda: _targets_page(state, limit, offset, include_inactive)
    )


async def _targets_page(state: AppState, limit: int, offset: int, include_inactive: bool) -> dict[str, Any]:
    now = utcnow()
    cadence = state.cadence(await state.farm())
    rows, _ = await _read_shared(
        state,
        f"targets:{include_inactive}",
        lambda s: queries.target_rows(s, now, include_inactive=include_inactive, cadence=cadence),
    )
    return _page(rows[offset : offset + limit], len(rows), limit, offset)


@router.get("/targets/{target_id}", response_model=TargetOut, responses=NOT_FOUND, summary="One target")
async def get_target(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    target_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    return await _ready(request, state, f"target:{target_id}", TARGET_OUT, lambda: _target(state, target_id))


async def _target(state: AppState, target_id: int) -> TargetOut:
    now = utcnow()
    cadence = state.cadence(await state.farm())
    rows, _ = await _read_shared(
        state, "targets:True", lambda s: queries.target_rows(s, now, include_inactive=True, cadence=cadence)
    )
    for row in rows:
        if row.id == target_id:
            return row
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no target {target_id}")


# --- slots, checks ---------------------------------------------------------------------------------


@router.get("/slots", response_model=Page[SlotOut], summary="Slot episodes, newest first")
async def list_slots(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    open: Annotated[bool | None, Query(description="true: still free; false: gone")] = None,
    site: Site = None,
    service_id: IdQuery = None,
    office_id: IdQuery = None,
    since: Since = None,
) -> Response:
    key = f"slots:{limit}:{offset}:{open}:{site}:{service_id}:{office_id}:{since}"
    return await _ready(
        request,
        state,
        key,
        SLOTS_PAGE,
        lambda: _slots_page(state, limit, offset, open, site, service_id, office_id, since),
    )


async def _slots_page(
    state: AppState,
    limit: int,
    offset: int,
    open: bool | None,
    site: str | None,
    service_id: int | None,
    office_id: int | None,
    since: datetime | None,
) -> dict[str, Any]:
    stmt = select(Slot).order_by(Slot.id.desc())
    if open is not None:
        stmt = stmt.where(Slot.gone_at.is_(None) if open else Slot.gone_at.is_not(None))
    if site is not None:
        stmt = stmt.where(Slot.site == site)
    if service_id is not None:
        stmt = stmt.where(Slot.service_id == service_id)
    if office_id is not None:
        stmt = stmt.where(Slot.office_id == office_id)
    if since is not None:
        stmt = stmt.where(Slot.first_seen_at >= since)

    def work(session: Session) -> dict[str, Any]:
        total, rows = queries.count_and_page(session, stmt, limit, offset)
        return _page([queries.slot_out(s) for s in rows], total, limit, offset)

    return await _read(state, work)


@router.get("/checks", response_model=Page[CheckOut], summary="Checks, newest first")
async def list_checks(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    target_id: IdQuery = None,
    outcome: CheckOutcome | None = None,
    since: Since = None,
) -> Response:
    key = f"checks:{limit}:{offset}:{target_id}:{outcome}:{since}"
    return await _ready(
        request,
        state,
        key,
        CHECKS_PAGE,
        lambda: _checks_page(state, limit, offset, target_id, outcome, since),
    )


async def _checks_page(
    state: AppState,
    limit: int,
    offset: int,
    target_id: int | None,
    outcome: CheckOutcome | None,
    since: datetime | None,
) -> dict[str, Any]:
    stmt = select(Check).order_by(Check.id.desc())
    if target_id is not None:
        stmt = stmt.where(Check.target_id == target_id)
    if outcome is not None:
        stmt = stmt.where(Check.outcome == outcome)
    if since is not None:
        stmt = stmt.where(Check.started_at >= since)

    def work(session: Session) -> dict[str, Any]:
        total, rows = queries.count_and_page(session, stmt, limit, offset)
        return _page([queries.check_out(c) for c in rows], total, limit, offset)

    return await _read(state, work)


# --- alerts, bookings ------------------------------------------------------------------------------


def _alerts_stmt(
    status_: NotificationStatus | None, kind: NotificationKind | None, since: datetime | None
) -> Any:
    stmt = select(Notification).order_by(Notification.id.desc())
    if status_ is not None:
        stmt = stmt.where(Notification.status == status_)
    if kind is not None:
        stmt = stmt.where(Notification.kind == kind)
    if since is not None:
        stmt = stmt.where(Notification.created_at >= since)
    return stmt


async def _alerts_page(state: AppState, stmt: Any, limit: int, offset: int, *, admin: bool) -> dict[str, Any]:
    """One page of notifications; ``admin`` adds recipients and texts."""

    def work(session: Session) -> dict[str, Any]:
        total, rows = queries.count_and_page(session, stmt, limit, offset)
        return _page(queries.alert_rows(session, rows, admin=admin), total, limit, offset)

    return await _read(state, work)


async def _bookings_page(
    state: AppState, status_: BookingStatus | None, limit: int, offset: int, *, admin: bool
) -> dict[str, Any]:
    """One page of bookings, newest first; ``admin`` adds the people."""
    stmt = select(Booking).order_by(Booking.id.desc())
    if status_ is not None:
        stmt = stmt.where(Booking.status == status_)

    def work(session: Session) -> dict[str, Any]:
        total, rows = queries.count_and_page(session, stmt, limit, offset)
        return _page([queries.booking_out(b, admin=admin) for b in rows], total, limit, offset)

    return await _read(state, work)


@router.get(
    "/alerts", response_model=Page[AlertOut], summary="Notifications, newest first (no personal data)"
)
async def list_alerts(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    status_: Annotated[NotificationStatus | None, Query(alias="status")] = None,
    kind: NotificationKind | None = None,
    since: Since = None,
) -> Response:
    key = f"alerts:{limit}:{offset}:{status_}:{kind}:{since}"
    return await _ready(
        request,
        state,
        key,
        ALERTS_PAGE,
        lambda: _alerts_page(state, _alerts_stmt(status_, kind, since), limit, offset, admin=False),
    )


@router.get("/bookings", response_model=Page[BookingOut], summary="Bookings, newest first (no personal data)")
async def list_bookings(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    status_: Annotated[BookingStatus | None, Query(alias="status")] = None,
) -> Response:
    key = f"bookings:{limit}:{offset}:{status_}"
    return await _ready(
        request, state, key, BOOKINGS_PAGE, lambda: _bookings_page(state, status_, limit, offset, admin=False)
    )


# --- admin: personal data and actions --------------------------------------------------------------


@admin.get("/alerts", response_model=Page[AdminAlertOut], summary="Notifications with recipients and texts")
async def admin_alerts(
    state: Annotated[AppState, Depends(get_state)],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    status_: Annotated[NotificationStatus | None, Query(alias="status")] = None,
    kind: NotificationKind | None = None,
    since: Since = None,
) -> dict[str, Any]:
    return await _alerts_page(state, _alerts_stmt(status_, kind, since), limit, offset, admin=True)


@admin.get("/bookings", response_model=Page[AdminBookingOut], summary="Bookings with their people")
async def admin_bookings(
    state: Annotated[AppState, Depends(get_state)],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    status_: Annotated[BookingStatus | None, Query(alias="status")] = None,
) -> dict[str, Any]:
    return await _bookings_page(state, status_, limit, offset, admin=True)


@admin.post(
    "/alerts/{alert_id}/retry",
    response_model=RetryOut,
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "already sent or pending"}},
    summary="Send a failed or dead notification again",
)
async def retry_alert(
    state: Annotated[AppState, Depends(get_state)],
    alert_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> RetryOut:
    def work(session: Session) -> RetryOut:
        note = session.get(Notification, alert_id)
        if note is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
        if note.status not in (NotificationStatus.FAILED, NotificationStatus.DEAD):
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"alert {alert_id} is {note.status.value}: only failed or dead ones retry",
            )
        session.execute(
            update(Notification)
            .where(Notification.id == alert_id)
            .values(status=NotificationStatus.PENDING, next_attempt_at=utcnow())
        )
        return RetryOut(id=alert_id, status=NotificationStatus.PENDING)

    return await _write(state, work)


@admin.post(
    "/targets/{target_id}/clear-backoff",
    response_model=TargetActionOut,
    responses=NOT_FOUND,
    summary="Let the scheduler check a backing-off target again now",
)
async def clear_backoff(
    state: Annotated[AppState, Depends(get_state)],
    target_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> TargetActionOut:
    def work(session: Session) -> TargetActionOut:
        target = session.get(Target, target_id)
        if target is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no target {target_id}")
        target.backoff_until = None
        session.flush()
        return TargetActionOut(id=target.id, state=target.state, backoff_until=target.backoff_until)

    return await _write(state, work)


SitePath = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}$", description="site name, e.g. munich")]
NO_REDIS: dict[int | str, dict[str, Any]] = {503: {"model": Problem, "description": "Redis unreachable"}}


async def _switch(state: AppState, site: str, value: str | None) -> SiteStopOut:
    """Set (``value``) or clear the kill switch of ``site``; it lives in Redis (``shared.killswitch``)."""
    if state.redis is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "MTA_REDIS_URL is not set")
    try:
        if value is None:
            await state.redis.delete(killswitch.key(site))
        else:
            await state.redis.set(killswitch.key(site), value)
    except (redis.RedisError, OSError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Redis: {type(exc).__name__}") from None
    log.warning("site_kill_switch", site=site, stopped=value is not None)
    info = killswitch.decode(value) if value is not None else {}
    return SiteStopOut(site=site, stopped=value is not None, **info)


@admin.post(
    "/sites/{site}/stop",
    response_model=SiteStopOut,
    responses=NO_REDIS,
    summary="Kill switch: stop every request to a site at once (until resumed)",
)
async def stop_site(
    state: Annotated[AppState, Depends(get_state)], site: SitePath, body: SiteStopIn | None = None
) -> SiteStopOut:
    reason = body.reason if body is not None else ""
    return await _switch(state, site, killswitch.encode(reason, by="admin API"))


@admin.post(
    "/sites/{site}/resume",
    response_model=SiteStopOut,
    responses=NO_REDIS,
    summary="Lift the kill switch: the site is checked again",
)
async def resume_site(state: Annotated[AppState, Depends(get_state)], site: SitePath) -> SiteStopOut:
    return await _switch(state, site, None)


class NoticeIn(BaseModel):
    text: str = Field(
        min_length=1, max_length=4000, description="the message, plain text, as every user reads it"
    )


class NoticeOut(BaseModel):
    notice_id: str
    queued: int = Field(description="outbox rows queued now (0 when the same notice was queued this minute)")


@admin.post("/notice", response_model=NoticeOut, summary="Send a notice (a maintenance) to every user")
async def send_notice(state: Annotated[AppState, Depends(get_state)], body: NoticeIn) -> NoticeOut:
    from api.notices import queue_notice

    now = utcnow()
    notice_id, queued = await _write(state, lambda session: queue_notice(session, body.text, now))
    log.info("notice_queued", notice_id=notice_id, queued=queued)
    if queued and state.redis is not None:
        with contextlib.suppress(redis.RedisError, OSError):  # else the sender's next sweep finds them
            await state.redis.publish(WAKE_CHANNEL, "notice")
    return NoticeOut(notice_id=notice_id, queued=queued)


@admin.post("/retention/purge", response_model=PurgeOut, summary="Run the retention purge now")
async def run_purge(state: Annotated[AppState, Depends(get_state)]) -> PurgeOut:
    from shared.retention import purge

    cfg = state.settings
    report = await _write(
        state,
        lambda session: purge(
            session,
            utcnow(),
            cfg.retention_days,
            inactive_user_days=cfg.inactive_user_days,
            inactive_warning_days=cfg.inactive_warning_days,
        ),
    )
    return PurgeOut(**vars(report))


__all__ = ["admin", "router"]
