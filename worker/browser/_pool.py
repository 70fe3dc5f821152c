"""The browser pool: one Chromium per process, a few warm sessions, and the policy for both.

Policy lives here, not in the adapter (STYLE habit 3):
- a session is handed out for one key at a time (its checks queue up; checks use one key per site,
  so one warm session serves every target of the site: see ``worker.checks.session_key``);
- a caller that needs a captcha token (``need_token``) never gets a session walked without one;
- it is walked afresh (a new context) when new, when its token is within ``token_refresh_margin`` of
  expiry, after ``session_max_checks`` checks, after ``session_max_age_s``, and after any error;
- a retired session's context is closed at once: memory only returns when a context closes;
- at most ``browser_warm_sessions`` sessions are kept; the least recently used idle one goes first;
- a browser is retired after ``browser_max_sessions`` contexts (closed once its last session ends),
  and relaunched when it crashes or disconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Self

from playwright.async_api import Browser

from shared.domain import TargetKey
from shared.logging import get_logger
from shared.settings import Settings
from worker import metrics
from worker.browser._launcher import BrowserLauncher
from worker.browser._session import BrowserSession
from worker.tracing import start_tracing

log = get_logger("mta.browser")

TOKEN_REFRESH_MARGIN = timedelta(seconds=30)
TOKEN_REFRESH_STAGGER = timedelta(seconds=60)
"""Each session refreshes up to this much earlier than the margin (and ages out up to 20 % sooner),
at a random point of its own: sessions walked together at start-up would otherwise all re-walk in
the same minute every token lifetime, stalling checks and bunching requests."""


@dataclass(eq=False)
class _BrowserHandle:
    """One running browser (crawlee's "controller"): how many contexts it opened, which are open."""

    id: int
    browser: Browser
    contexts_opened: int = 0
    sessions: set[BrowserSession] = field(default_factory=set)
    connected: bool = True
    retiring: bool = False


@dataclass(frozen=True)
class PoolStats:
    contexts_open: int
    contexts_opened: int
    browsers_launched: int
    restarts: int
    crashes: int
    warm_sessions: int


class BrowserPool:
    """Async context manager owning this process's browser and its warm sessions."""

    def __init__(
        self,
        settings: Settings,
        *,
        launcher: BrowserLauncher | None = None,
        clock: Callable[[], float] = time.time,
        token_refresh_margin: timedelta = TOKEN_REFRESH_MARGIN,
        trace: bool | None = None,
    ) -> None:
        self.settings = settings
        self.launcher = launcher or BrowserLauncher(settings)
        self.clock = clock
        self.token_refresh_margin = token_refresh_margin
        self.trace = settings.trace_on_failure if trace is None else trace
        self.max_warm = settings.browser_warm_sessions
        self.max_checks = settings.session_max_checks
        self.max_age_s = settings.session_max_age_s
        self.max_contexts_per_browser = settings.browser_max_sessions
        self._current: _BrowserHandle | None = None
        self._handles: set[_BrowserHandle] = set()
        self._sessions: dict[str, BrowserSession] = {}
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._launch_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        self.captcha_targets: set[TargetKey] = set()
        """Targets whose office asked for a captcha when a fresh session walked there."""
        self.contexts_open = 0
        self.contexts_opened = 0
        self.browsers_launched = 0
        self.restarts = 0
        self.crashes = 0

    # --- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.launcher.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for session in list(self._sessions.values()):
            await session.retire()
        for handle in list(self._handles):
            await self._close_browser(handle)
        await self.launcher.close()

    @property
    def stats(self) -> PoolStats:
        return PoolStats(
            contexts_open=self.contexts_open,
            contexts_opened=self.contexts_opened,
            browsers_launched=self.browsers_launched,
            restarts=self.restarts,
            crashes=self.crashes,
            warm_sessions=len(self._sessions),
        )

    @property
    def browser(self) -> Browser | None:
        """The browser new sessions open in (None before the first session)."""
        return self._current.browser if self._current is not None else None

    def warm_session(self, key: str) -> BrowserSession | None:
        return self._sessions.get(key)

    def warm_keys(self) -> list[str]:
        """The keys of the sessions kept now."""
        return list(self._sessions)

    # --- handing out sessions ------------------------------------------------------------------
    @asynccontextmanager
    async def session(self, key: str, *, need_token: bool = False) -> AsyncIterator[BrowserSession]:
        """A session for ``key``: the warm one if it is still fit, else a fresh (unwalked) one.

        ``need_token``: the caller's office needs a captcha token, so a warm session walked where no
        captcha was asked is not fit (a fresh walk at a captcha office gets the token).

        An exception escaping the block marks the session bad; a bad, unwalked or worn-out session
        is closed on the way out.
        """
        if self._closed:
            raise RuntimeError("the browser pool is closed")
        lock = self._key_locks.setdefault(key, asyncio.Lock())
        async with lock:
            session = self._sessions.get(key)
            if session is not None:
                reason = self.retire_reason(session)
                if reason is None and need_token and session.token is None:
                    reason = "no captcha token"
                if reason is not None:
                    session.mark_bad(reason)
                    await session.retire()
                    session = None
            if session is None:
                session = await self._open_session(key)
            session.in_use = True
            try:
                yield session
            except BaseException as exc:
                session.mark_bad(f"error: {type(exc).__name__}")
                raise
            finally:
                session.in_use = False
                session.last_used_at = self.clock()
                await self._after_use(session)

    def retire_reason(self, session: BrowserSession) -> str | None:
        """Why ``session`` must not be used again, or None while it is fit."""
        if session.bad_reason is not None:
            return session.bad_reason
        if session.retired or session.page.is_closed():
            return "closed"
        if not session.walked:
            return "never walked"
        if session.checks_done >= self.max_checks:
            return "max checks"
        if session.age_s >= self.max_age_s * (1.0 - 0.2 * session.stagger):
            return "max age"
        remaining = session.token_remaining_s()
        refresh_at_s = (
            self.token_refresh_margin.total_seconds()
            + session.stagger * TOKEN_REFRESH_STAGGER.total_seconds()
        )
        if remaining is not None and remaining <= refresh_at_s:
            return "token expiring"
        return None

    async def _after_use(self, session: BrowserSession) -> None:
        reason = self.retire_reason(session)
        if reason is not None:
            session.mark_bad(reason)
            await session.retire()
        await self._trim()

    async def _trim(self, room_for: int = 0) -> None:
        """Keep at most ``max_warm`` sessions (counting ``room_for`` about to open): close the least
        recently used idle ones."""
        idle = sorted((s for s in self._sessions.values() if not s.in_use), key=lambda s: s.last_used_at)
        excess = len(self._sessions) + room_for - self.max_warm
        for session in idle[: max(0, excess)]:
            session.mark_bad("pool full")
            await session.retire()

    async def retire(self, session: BrowserSession, reason: str) -> None:
        """Close ``session`` now (the adapter or a check decided it is spent)."""
        session.mark_bad(reason)
        await session.retire()

    # --- sessions and contexts -----------------------------------------------------------------
    async def _open_session(self, key: str) -> BrowserSession:
        # make room first, so that the context count stays within the warm limit
        self._sessions.pop(key, None)
        await self._trim(room_for=1)
        handle = await self._browser_for_new_context()
        try:
            context = await self.launcher.new_context(handle.browser)
        except BaseException:
            if not handle.browser.is_connected():  # died before its "disconnected" event arrived
                self._on_disconnected(handle)
            raise
        self.contexts_open += 1
        self.contexts_opened += 1
        metrics.BROWSER_CONTEXTS.inc()
        try:
            if self.trace:
                await start_tracing(context)
            page = await context.new_page()
        except BaseException:
            with suppress(Exception):
                await context.close()
            self.contexts_open -= 1
            metrics.BROWSER_CONTEXTS.dec()
            raise
        session = BrowserSession(
            key, context, page, browser_id=handle.id, clock=self.clock, on_retire=self._session_closed
        )
        session.tracing = session.trace_chunk_open = self.trace
        handle.sessions.add(session)
        self._sessions[key] = session
        log.debug("session_opened", key=key, browser=handle.id, contexts_open=self.contexts_open)
        return session

    async def _session_closed(self, session: BrowserSession) -> None:
        """Bookkeeping once a session's context is closed (called by ``BrowserSession.retire``)."""
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        self.contexts_open -= 1
        metrics.BROWSER_CONTEXTS.dec()
        handle = next((h for h in self._handles if h.id == session.browser_id), None)
        if handle is not None:
            handle.sessions.discard(session)
            if handle.retiring and not handle.sessions:
                await self._close_browser(handle)

    # --- browsers --------------------------------------------------------------------------------
    async def launch(self) -> None:
        """Start the browser now rather than at the first session (worker boot: a missing or broken
        Chromium shows at start-up, and the first check does not pay for the launch)."""
        async with self._launch_lock:
            if self._current is None:
                self._current = await self._launch()

    async def _browser_for_new_context(self) -> _BrowserHandle:
        async with self._launch_lock:
            handle = self._current
            if handle is not None and not handle.connected:
                self._current = None
                self._handles.discard(handle)
                self.restarts += 1
                metrics.BROWSER_RESTARTS.labels(reason="crashed").inc()
                log.warning("browser_relaunch", reason="disconnected", browser=handle.id)
            elif handle is not None and handle.contexts_opened >= self.max_contexts_per_browser:
                self._current = None
                self.restarts += 1
                metrics.BROWSER_RESTARTS.labels(reason="retired").inc()
                log.info("browser_retired", browser=handle.id, contexts=handle.contexts_opened)
                await self._retire_browser(handle)
            if self._current is None:
                self._current = await self._launch()
            self._current.contexts_opened += 1
            return self._current

    async def _launch(self) -> _BrowserHandle:
        browser = await self.launcher.launch()
        handle = _BrowserHandle(id=next(self._ids), browser=browser)
        self._handles.add(handle)
        self.browsers_launched += 1
        browser.on("disconnected", lambda _browser: self._on_disconnected(handle))
        log.info("browser_launched", browser=handle.id, version=browser.version)
        return handle

    def _on_disconnected(self, handle: _BrowserHandle) -> None:
        """The browser went away (crash, kill, or our own close): its sessions are dead."""
        if not handle.connected:
            return
        handle.connected = False
        if not handle.retiring and not self._closed:
            self.crashes += 1
            log.warning("browser_disconnected", browser=handle.id, sessions=len(handle.sessions))
        for session in handle.sessions:
            session.mark_bad("browser disconnected")

    async def _retire_browser(self, handle: _BrowserHandle) -> None:
        """Stop opening contexts in ``handle``; close it now if idle, else when its last session ends."""
        handle.retiring = True
        for session in list(handle.sessions):
            if not session.in_use:
                session.mark_bad("browser retired")
                await session.retire()
        if not handle.sessions:
            await self._close_browser(handle)

    async def _close_browser(self, handle: _BrowserHandle) -> None:
        handle.retiring = True
        self._handles.discard(handle)
        if self._current is handle:
            self._current = None
        with suppress(Exception):
            await handle.browser.close()


__all__ = ["TOKEN_REFRESH_MARGIN", "BrowserPool", "PoolStats"]
