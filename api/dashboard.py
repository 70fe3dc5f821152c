"""The dashboard: one snapshot of the farm rendered into HTML sections, and a feed that pushes them.

The page and the Server-Sent Events stream share one rendering path: the server renders each
section (Jinja), the page shows them, and ``/events`` sends the sections whose HTML changed; the
browser swaps them in. Times are rendered absolute (``<time datetime=...>``) and made relative in
the browser, so an idle farm produces no events. One ``DashboardFeed`` per process builds the
snapshot at most once per interval, however many browsers watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api import queries
from api.charts import heatmap, latency_chart
from api.farm import FarmState
from api.queries import LATENCY_DEFINITION, LATENCY_WINDOW, Cadence, LatencySample
from api.schemas import AlertOut, PeopleOut, SlotOut, TargetOut
from shared.db.models import Notification, Slot
from shared.domain import SITE_TIMEZONE
from shared.logging import get_logger

log = get_logger("mta.api")

TEMPLATES_DIR = Path(__file__).with_name("templates")
SECTIONS = ("summary", "targets", "farm", "events", "alerts", "slots", "bookings", "latency", "heatmaps")
RECENT_ROWS = 15
ALERT_ROWS_READ = 4
"""Recent alerts read this many rows per line shown: one slot told to several people is one line."""
SHOWN_INFO = (
    "browser", "contexts_open", "checks_done", "last_outcome", "browser_restarts", "browser_crashes",
    "queues", "threads", "targets", "dispatched_total", "chats", "mode",
)  # fmt: skip
"""Heartbeat details worth a glance on the dashboard (the rest is in /api/v1/status)."""


@dataclass(frozen=True)
class AlertLine:
    """One alert on the dashboard: the same slot episode told to several people is one line."""

    alert: AlertOut
    recipients: int


def group_alerts(
    alerts: list[AlertOut], ids: list[tuple[int | None, int | None]], limit: int
) -> list[AlertLine]:
    """Newest first, one line per (kind, slot, episode); ``ids`` holds each alert's (slot, episode)."""
    lines: dict[tuple[object, ...], list[AlertOut]] = {}
    for alert, (slot_id, episode) in zip(alerts, ids, strict=True):
        key: tuple[object, ...] = (alert.kind, slot_id, episode) if slot_id is not None else (alert.id,)
        lines.setdefault(key, []).append(alert)
    return [AlertLine(group[0], len(group)) for group in lines.values()][:limit]


@dataclass
class DbView:
    """What the dashboard reads from the database in one read-only transaction."""

    ok: bool = True
    error: str | None = None
    targets: list[TargetOut] = field(default_factory=list)
    samples: list[LatencySample] = field(default_factory=list)
    recent_slots: list[SlotOut] = field(default_factory=list)
    recent_alerts: list[AlertLine] = field(default_factory=list)
    alerts_total: dict[str, int] = field(default_factory=dict)
    alerts_24h: dict[str, int] = field(default_factory=dict)
    bookings: dict[str, int] = field(default_factory=dict)
    checks_hour: dict[str, int] = field(default_factory=dict)
    heatmaps: dict[tuple[str, int], list[list[int]]] = field(default_factory=dict)
    people: PeopleOut | None = None

    @property
    def latencies(self) -> list[float]:
        return [s.latency_s for s in self.samples]


def read_db_view(session: Session, now: datetime, cadence: Cadence | None = None) -> DbView:
    """All dashboard reads; any database error becomes ``ok=False`` with the reason."""
    try:
        targets, samples = queries.target_rows(session, now, cadence=cadence)
        slots = session.scalars(select(Slot).order_by(Slot.id.desc()).limit(RECENT_ROWS)).all()
        notes = session.scalars(
            select(Notification).order_by(Notification.id.desc()).limit(RECENT_ROWS * ALERT_ROWS_READ)
        ).all()
        return DbView(
            targets=targets,
            samples=samples,
            recent_slots=[queries.slot_out(s) for s in slots],
            recent_alerts=group_alerts(
                queries.alert_rows(session, notes, admin=False),
                [(n.slot_id, n.episode) for n in notes],
                RECENT_ROWS,
            ),
            people=queries.people_counts(session),
            alerts_total=queries.alerts_by_status(session),
            alerts_24h=queries.alerts_by_status(session, now - timedelta(hours=24)),
            bookings=queries.bookings_by_status(session),
            checks_hour=queries.checks_by_outcome(session, now - timedelta(hours=1)),
            heatmaps=queries.slot_heatmaps(session, now),
        )
    except SQLAlchemyError as exc:
        log.warning("dashboard_db_read_failed", error=type(exc).__name__)
        return DbView(ok=False, error=_db_error_text(exc))


def _db_error_text(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    if "no such table" in text or "does not exist" in text:
        return f"database schema missing ({text}): run `mta db upgrade`"
    return text[:300]


# --- rendering -------------------------------------------------------------------------------------


def _time(value: datetime | None, missing: str = "—") -> Markup:
    if value is None:
        return Markup(escape(missing))
    local = value.astimezone(SITE_TIMEZONE)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        value.isoformat(), local.strftime("%a %d.%m.%Y %H:%M:%S"), local.strftime("%d.%m. %H:%M:%S")
    )


def _when(value: datetime | None) -> str:
    """A slot's start as people read it (not made relative by the page)."""
    if value is None:
        return "—"
    return value.astimezone(SITE_TIMEZONE).strftime("%a %d.%m.%Y %H:%M")


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = _time
    env.filters["when"] = _when
    env.filters["dur"] = _dur
    return env


def render_sections(
    env: Environment,
    db: DbView,
    farm: FarmState,
    *,
    now: datetime,
    telegram_configured: bool,
    budget_per_minute: int,
    down_since: dict[str, datetime] | None = None,
) -> dict[str, str]:
    """Every dashboard section's HTML for one snapshot; ``down_since``: parts unreachable now."""
    latencies = db.latencies
    p50, p95 = queries.percentile(latencies, 50), queries.percentile(latencies, 95)
    sites: dict[str, list[TargetOut]] = {}
    for target in db.targets:
        sites.setdefault(target.site, []).append(target)
    budgets = {b.site: b for b in farm.budgets}
    context: dict[str, Any] = {
        "now": now,
        "db": db,
        "farm": farm,
        "sites": sites,
        "budgets": budgets,
        "telegram_configured": telegram_configured,
        "shown_info": SHOWN_INFO,
        "budget_per_minute": budget_per_minute,
        "p50": p50,
        "p95": p95,
        "latency_definition": LATENCY_DEFINITION,
        "workers": farm.by_role("worker"),
        "live_workers": farm.live("worker", now),
        "live_bots": farm.live("bot", now),
        "down_since": down_since or {},
        "stale_targets": sum(1 for t in db.targets if t.stale),
        "schedulers": farm.by_role("scheduler"),
        "bots": farm.by_role("bot"),
        "others": [h for h in farm.heartbeats if h.role not in {"worker", "scheduler", "bot"}],
        "open_slots": sum(t.open_slots for t in db.targets),
        "slots_today": sum(t.slots_seen_today for t in db.targets),
        "latency_svg": latency_chart(
            [(s.first_seen_at, s.latency_s, s.alerted) for s in db.samples],
            now=now,
            window=LATENCY_WINDOW,
            p50_s=p50,
            p95_s=p95,
        ),
        "heatmaps": [
            {
                "site": site,
                "service_id": service_id,
                "name": queries.service_name(site, service_id) or f"service {service_id}",
                "total": sum(map(sum, grid)),
                "svg": heatmap(grid, title=f"New slots by weekday and hour, service {service_id}"),
            }
            for (site, service_id), grid in db.heatmaps.items()
        ],
    }
    return {name: env.get_template(f"sections/{name}.html").render(**context) for name in SECTIONS}


def digest(sections: dict[str, str]) -> str:
    return hashlib.sha256("\0".join(sections[k] for k in sorted(sections)).encode()).hexdigest()[:16]


# --- the live feed ---------------------------------------------------------------------------------


class DashboardFeed:
    """Builds the sections every ``interval_s`` while someone listens; wakes listeners on a change."""

    def __init__(self, build: Callable[[], Awaitable[dict[str, str]]], interval_s: float = 1.0) -> None:
        self._build = build
        self.interval_s = interval_s
        self._sections: dict[str, str] = {}
        self._version = 0
        self._built_at = float("-inf")
        self._listeners = 0
        self._changed = asyncio.Condition()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> DashboardFeed:
        self._task = asyncio.create_task(self._run(), name="dashboard-feed")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def close(self) -> None:
        """End every live stream (the server is stopping): listeners return, new ones end at once."""
        self._closed = True
        async with self._changed:
            self._version = -1
            self._changed.notify_all()

    @property
    def listeners(self) -> int:
        return self._listeners

    async def snapshot(self) -> dict[str, str]:
        """The sections, rebuilt only if older than the interval: many page loads share one build."""
        return await self.refresh(max_age_s=self.interval_s)

    async def refresh(self, max_age_s: float = 0.0) -> dict[str, str]:
        """Build now, unless a build finished less than ``max_age_s`` ago (one build at a time);
        listeners hear about it if anything changed."""
        async with self._lock:
            if self._sections and asyncio.get_running_loop().time() - self._built_at < max_age_s:
                return self._sections
            sections = await self._build()
            loop = asyncio.get_running_loop()
            self._built_at = loop.time()
            if sections != self._sections and not self._closed:
                async with self._changed:
                    self._sections = sections
                    self._version += 1
                    self._changed.notify_all()
            return self._sections

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self._listeners:
                try:
                    await self.refresh()
                except Exception:  # the feed must outlive a bad read; the next tick retries
                    log.exception("dashboard_refresh_failed")

    async def _wait_past(self, version: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version != version)
            return self._version

    async def subscribe(self) -> AsyncIterator[tuple[int, dict[str, str]]]:
        """All sections first, then only the sections that changed, as (version, sections)."""
        if self._closed:
            return
        self._listeners += 1
        try:
            await self.snapshot()
            seen = self._version
            previous = dict(self._sections)
            yield seen, previous
            while True:
                seen = await self._wait_past(seen)
                if seen < 0:
                    return
                changed = {k: v for k, v in self._sections.items() if previous.get(k) != v}
                previous = dict(self._sections)
                if changed:
                    yield seen, changed
        finally:
            self._listeners -= 1


__all__ = [
    "SECTIONS",
    "DashboardFeed",
    "DbView",
    "digest",
    "make_environment",
    "read_db_view",
    "render_sections",
]
