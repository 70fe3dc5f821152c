"""The replica's FastAPI app and its runner.

``create_app`` wires the state, the citizen API under ``/buergeransicht/api/citizen/``, the pages
(``replica/pages.py``), the control API (when enabled), the request log, and a
lifespan-owned ticker that fires scenario events and expires reservations on the replica clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from replica.api import dispatch
from replica.catalog import Catalog
from replica.config import API_PREFIX, CONTROL_PREFIX, ReplicaConfig
from replica.pages import router as pages_router
from replica.ratelimit import client_ip
from replica.scenarios import load_into, resolve_scenario
from replica.state import ReplicaState, RequestRecord
from shared.logging import get_logger
from shared.settings import Settings, get_settings

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
TICK_INTERVAL_S = 0.2

log = get_logger("replica")


class RequestLogMiddleware:
    """Write every request but the control API's to the state's request log (for politeness tests)."""

    def __init__(self, app: ASGIApp, state: ReplicaState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at = self.state.now()
        status = 500
        logged = False

        def record() -> None:
            # logged before the last body chunk leaves, so a client that read the answer sees it logged
            nonlocal logged
            if logged:
                return
            logged = True
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            remote = scope.get("client")
            self.state.log_request(
                RequestRecord(
                    time=at,
                    client_ip=client_ip(headers, remote[0] if remote else None),
                    method=scope["method"],
                    path=scope["path"],
                    query=scope.get("query_string", b"").decode("latin-1"),
                    status=status,
                    duration_ms=(time.perf_counter() - started) * 1000,
                )
            )

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            record()


async def _ticker(state: ReplicaState, stop: asyncio.Event) -> None:
    """Fire scenario events and expire reservations as the replica clock moves."""
    while not stop.is_set():
        try:
            state.tick()
        except Exception:  # a broken scenario event must not stop the site
            log.exception("replica tick failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_INTERVAL_S)


def create_app(
    config: ReplicaConfig,
    scenario: Path | str | None = None,
    *,
    catalog: Catalog | None = None,
) -> FastAPI:
    """The replica app. ``app.state.replica`` is the :class:`ReplicaState` (clock, slots, faults ...)."""
    state = ReplicaState(config, catalog)
    if scenario is not None:
        load_into(state, resolve_scenario(scenario))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(_ticker(state, stop), name="replica-ticker")
        try:
            yield
        finally:
            stop.set()
            await task

    app = FastAPI(
        title="MTA replica of the Munich appointment site",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/_replica/openapi.json" if config.control_enabled else None,
    )
    app.state.replica = state
    app.router.add_route(API_PREFIX, dispatch, methods=ALL_METHODS, include_in_schema=False)
    app.router.add_route(API_PREFIX + "/{rest:path}", dispatch, methods=ALL_METHODS, include_in_schema=False)
    if config.control_enabled:
        from replica.control import router as control_router

        app.include_router(control_router)
    app.include_router(pages_router)
    app.add_middleware(RequestLogMiddleware, state=state)
    return app


def run(
    settings: Settings | None = None,
    scenario: Path | str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    config: ReplicaConfig | None = None,
) -> None:
    """Serve the replica with uvicorn until interrupted (``mta replica``).

    ``scenario`` is a YAML path or the name of a shipped scenario (``demo``, ``quiet-day`` ...).
    """
    cfg = config or ReplicaConfig.from_settings(settings or get_settings())
    if host is not None or port is not None:
        cfg = replace(cfg, host=host or cfg.host, port=port or cfg.port)
    app = create_app(cfg, scenario)
    log.info(
        "replica starting",
        url=f"http://{cfg.host}:{cfg.port}",
        scenario=str(scenario) if scenario else None,
        control=cfg.control_enabled,
        legacy_api=cfg.legacy_api,
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=False, log_level="warning")


@contextlib.contextmanager
def serve_in_thread(
    config: ReplicaConfig, scenario: Path | str | None = None, *, startup_timeout_s: float = 15.0
) -> Iterator[tuple[str, FastAPI]]:
    """Serve the replica with uvicorn in a daemon thread of this process (tests and benchmarks).

    Yields the base URL and the app (``app.state.replica`` is the live state). Stops on exit.
    """
    app = create_app(config, scenario)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name=f"replica-{config.port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the replica did not start on {config.host}:{config.port}")
        time.sleep(0.02)
    try:
        yield f"http://{config.host}:{config.port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
