"""The status service (``mta api``): dashboard, ``/api/v1`` JSON, health and Prometheus metrics.

``create_app(settings)`` builds the app; its lifespan owns the database (read-only sessions for
every read, a read-write one for admin actions), the Redis client and the dashboard feed, and
closes them in reverse order.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated

import orjson
import redis
import redis.asyncio as aioredis
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.answer_folder import AnswerFolder
from api.dashboard import DashboardFeed, DbView, make_environment, read_db_view, render_sections
from api.etag import send, send_ready
from api.farm import HEARTBEAT_MAX_AGE_S, FarmState
from api.farm_metrics import render_farm_metrics
from api.fastpath import ServeReadyAnswers
from api.outages import OutageWatch
from api.queries import target_rows
from api.routes import admin, router
from api.schemas import PartStatus, ReadyOut, TargetOut
from api.snapshot import JSON, AnswerCache, ReadyAnswer, answer
from api.state import AppState, get_state
from api.writes import ForgetAnswersOnWrite
from shared.db.database import open_database
from shared.db.engine import make_session_factory, session_scope
from shared.domain import utcnow
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("mta.api")
STATIC_DIR = Path(__file__).with_name("static")


async def build_sections(state: AppState) -> dict[str, str]:
    """One dashboard snapshot: Redis read here, database read in a worker thread."""
    now = utcnow()
    farm = await state.farm()
    cadence = state.cadence(farm)

    def read() -> DbView:
        with session_scope(state.reader) as session:
            return read_db_view(session, now, cadence)

    db_view = await run_in_threadpool(read)
    # rendered in a thread too: the event loop keeps sending ready answers meanwhile
    return await run_in_threadpool(
        partial(
            render_sections,
            state.templates,
            db_view,
            farm,
            now=now,
            telegram_configured=state.settings.telegram_token is not None,
            budget_per_minute=state.settings.site_budget_per_minute,
            down_since=dict(state.outages.down_since) if state.outages is not None else {},
        )
    )


def _check_db(state: AppState) -> PartStatus:
    try:
        with session_scope(state.reader) as session:
            session.execute(text("SELECT 1 FROM targets LIMIT 1")).all()
    except Exception as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        if "no such table" in detail or "does not exist" in detail:
            detail = f"schema missing: run `mta db upgrade` ({detail})"
        return PartStatus(ok=False, required=True, detail=detail)
    return PartStatus(ok=True, required=True, detail="readable")


def _check_targets(state: AppState, farm: FarmState) -> PartStatus:
    """Are the watched targets being checked as often as their interval says?"""
    now = utcnow()
    try:
        with session_scope(state.reader) as session:
            rows, _ = target_rows(session, now, cadence=state.cadence(farm))
    except Exception as exc:
        return PartStatus(ok=False, required=True, detail=f"unknown ({type(exc).__name__})")
    stale = [t for t in rows if t.stale]
    if stale:
        return PartStatus(
            ok=False,
            required=True,
            detail=f"{len(stale)} of {len(rows)} target(s) stale"
            f" (target {stale[0].id}: {stale[0].state_text})",
        )
    return PartStatus(ok=True, required=True, detail=f"{len(rows)} target(s) checked in time")


async def readiness(state: AppState) -> ReadyOut:
    """Each part of the farm, and whether the farm can do its job (every required part up).

    Required: database, Redis, at least one worker, a scheduler holding the lease, every watched
    target checked within its interval (none stale); the bot too when a Telegram token is
    configured (without one, alerts only show on the dashboard: "not sending (demo)").
    """
    now = utcnow()
    parts: dict[str, PartStatus] = {"database": await run_in_threadpool(_check_db, state)}
    if state.redis is None:
        parts["redis"] = PartStatus(ok=False, required=True, detail="MTA_REDIS_URL is not set")
    else:
        try:
            await state.redis.ping()
            parts["redis"] = PartStatus(ok=True, required=True, detail="reachable")
        except (redis.RedisError, OSError) as exc:
            parts["redis"] = PartStatus(ok=False, required=True, detail=f"{type(exc).__name__}: {exc}"[:200])
    farm = await state.farm()
    for role, required in (
        ("worker", True),
        ("scheduler", True),
        ("bot", state.settings.telegram_token is not None),
    ):
        beats = farm.by_role(role)
        fresh = [b for b in beats if b.fresh(now)]
        if fresh:
            detail = f"{len(fresh)} alive"
        elif role == "bot" and not required:
            detail = "not sending (demo): no MTA_TELEGRAM_TOKEN"
        elif beats:
            detail = f"{len(beats)} heartbeat(s), none newer than {HEARTBEAT_MAX_AGE_S:.0f} s"
        else:
            detail = "no heartbeat" if farm.ok else "unknown (Redis down)"
        parts[role] = PartStatus(ok=bool(fresh), required=required, detail=detail)
    parts["scheduler_leader"] = PartStatus(
        ok=farm.leader is not None,
        required=True,
        detail=f"held by {farm.leader}"
        if farm.leader
        else ("no leader" if farm.ok else "unknown (Redis down)"),
    )
    parts["checks"] = await run_in_threadpool(_check_targets, state, farm)
    ready = all(p.ok for p in parts.values() if p.required)
    return ReadyOut(ready=ready, parts=parts)


def render_metrics(metrics_dir: Path) -> bytes:
    """Every process's samples from the Prometheus multiprocess folder (workers incl. Dramatiq's)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    metrics_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    return generate_latest(registry)


async def farm_metrics(state: AppState) -> bytes:
    """The farm's own gauges (``api.farm_metrics``) for this scrape."""
    now = utcnow()
    farm = await state.farm()
    cadence = state.cadence(farm)

    def read() -> list[TargetOut] | None:
        try:
            with session_scope(state.reader) as session:
                return target_rows(session, now, cadence=cadence)[0]
        except Exception:  # reported as mta_farm_database_up 0
            return None

    targets = await run_in_threadpool(read)
    return render_farm_metrics(
        farm,
        targets,
        now=now,
        data_dir=state.settings.data_dir,
        telegram_configured=state.settings.telegram_token is not None,
    )


def create_app(settings: Settings, *, refresh_s: float = 1.0, answers_dir: Path | None = None) -> FastAPI:
    """The status service for ``settings``; ``refresh_s``: how often live dashboards are rebuilt;
    ``answers_dir``: the folder whose prepared answers this process shares with the other server
    processes of the same ``mta api`` (``api.answer_folder``; ``None``: it builds its own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = open_database(settings)
            stack.callback(db.close)
            client = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
            if client is not None:
                stack.push_async_callback(client.aclose)
            feed = DashboardFeed(lambda: build_sections(state), interval_s=refresh_s)
            state = AppState(
                settings=settings,
                db=db,
                reader=make_session_factory(db.engine, read_only=True),
                redis=client,
                templates=make_environment(),
                feed=feed,
                answers=AnswerCache(shared=AnswerFolder(answers_dir) if answers_dir is not None else None),
            )
            await stack.enter_async_context(feed)

            async def database_ok() -> bool:
                return (await run_in_threadpool(_check_db, state)).ok

            state.outages = await stack.enter_async_context(OutageWatch(client, database_ok))
            app.state.mta = state
            log.info("api started", database=db.engine.dialect.name, redis=client is not None)
            yield
            log.info("api stopped")

    app = FastAPI(
        title="MTA status service",
        version="1",
        summary="State of the Munich Termin Automator farm: targets, slots, checks, alerts, bookings.",
        description=(
            "Public endpoints show no personal data. Endpoints under `/api/v1/admin` change state or "
            "show personal data and need `Authorization: Bearer <MTA_ADMIN_TOKEN>`. Lists are paged "
            "with `limit` and `offset`, newest first."
        ),
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(admin)
    app.add_middleware(ForgetAnswersOnWrite)
    app.add_middleware(ServeReadyAnswers)  # outermost: a ready answer skips everything else
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Response:
        def render(sections: dict[str, str], read_at_s: float) -> ReadyAnswer:
            page = state.templates.get_template("dashboard.html").render(
                sections={k: Markup(v) for k, v in sections.items()},
                static_url="/static",
                events_url="/events",
                api_docs_url="/docs",
            )
            return answer(page.encode(), "text/html; charset=utf-8", read_at_s=read_at_s)

        async def build(read_at_s: float) -> ReadyAnswer:
            return await run_in_threadpool(render, await state.feed.snapshot(), read_at_s)

        # the page is rendered once per refresh and sent as ready bytes (api.snapshot)
        return await send_ready(request, state.answers, "dashboard", build, max_age_s=state.feed.interval_s)

    @app.get("/events", response_class=EventSourceResponse, include_in_schema=False)
    async def events(state: Annotated[AppState, Depends(get_state)]) -> AsyncIterator[ServerSentEvent]:
        """The dashboard's live updates: an event ``sections`` with the HTML of changed sections."""
        async for version, sections in state.feed.subscribe():
            yield ServerSentEvent(event="sections", id=str(version), data={"sections": sections}, retry=3000)

    @app.get("/healthz", summary="The api process is alive", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "a required part is down"}},
        summary="Database, Redis, workers, scheduler leader, bot: each part, and whether all required are up",
        tags=["health"],
    )
    async def readyz(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Response:
        async def build(read_at_s: float) -> ReadyAnswer:
            report = await readiness(state)
            body = orjson.dumps(report.model_dump(mode="json"))
            return answer(body, JSON, read_at_s=read_at_s, status_code=200 if report.ready else 503)

        # live: never reused once read, but requests that come while one reading runs share it
        return send(request, await state.answers.get("readyz", build, max_age_s=0.0, serve_stale=False))

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics of every MTA process (multiprocess folder)",
        tags=["health"],
    )
    async def metrics(state: Annotated[AppState, Depends(get_state)]) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await run_in_threadpool(render_metrics, settings.metrics_dir)
        return Response(body + await farm_metrics(state), media_type=CONTENT_TYPE_LATEST)

    return app


class ApiServer(uvicorn.Server):
    """uvicorn's server that first ends the live dashboard streams, so stopping never waits on them."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # from an import string (several processes) the app is loaded_app, inside uvicorn's middleware
        app: object = (
            getattr(self.config, "loaded_app", None) if isinstance(self.config.app, str) else self.config.app
        )
        while app is not None and not hasattr(app, "state"):
            app = getattr(app, "app", None)
        state = getattr(getattr(app, "state", None), "mta", None)
        if isinstance(state, AppState):
            await state.feed.close()
        await super().shutdown(sockets=sockets)


def run(settings: Settings) -> None:
    """Serve ``create_app(settings)`` on ``MTA_API_HOST``:``MTA_API_PORT`` until SIGINT/SIGTERM."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    ApiServer(config).run()


__all__ = [
    "ApiServer",
    "build_sections",
    "create_app",
    "readiness",
    "render_metrics",
    "run",
]
