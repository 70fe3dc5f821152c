"""One check of one target: a warm session's calendar request, or a full walk in a fresh one.

``run_check`` puts the pool (which session, when to walk afresh) and the adapter (how to read the
site) together and owns what happens around a failure: the session is marked bad and closed (the
pool does that when the error leaves its ``session`` block), a trace and a screenshot are saved
when ``trace_on_failure`` is on, and the failure carries ``requests_made`` so that the budget is
charged for what the check really cost.

A browser that dies under a check (crash, OOM kill) is not the site's fault: the check is tried
once more in a fresh session of a relaunched browser before it counts as failed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date

from playwright.async_api import Error as PlaywrightError

from shared.domain import CaptchaRequired, CheckFailure, CheckTimeout, Observation, TargetKey
from shared.logging import get_logger
from worker.browser import BrowserPool, BrowserSession
from worker.sites.base import SiteAdapter
from worker.tracing import begin_check, discard_check, save_failure

log = get_logger("mta.checks")

BROWSER_ATTEMPTS = 2
"""A check whose browser died is tried once more in a relaunched browser."""


@dataclass(frozen=True)
class CheckResult:
    """A successful check: what was seen and what it cost."""

    observation: Observation
    requests_made: int
    """Site requests this check caused (a walk costs several, a warm check one)."""
    walked: bool = False
    """True when a fresh session walked the site for this check."""


def target_label(key: TargetKey) -> str:
    """A target's name in logs and in the pool keys of one-off sessions (booking)."""
    return f"{key.site}:{key.service_id}x{key.service_count}@{key.office_key}"


def session_key(key: TargetKey) -> str:
    """The pool key of a check: one warm session per site serves every target of that site.

    The page's calendar request names the offices, service, count and captcha token in its query,
    and a person on the calendar step changes offices the same way; the token is bound to the
    client address, not to an office. A session per target would walk (about four site requests
    and a captcha challenge) once per target and token lifetime instead of once per site, and with
    more targets than warm sessions every check would become a walk.
    """
    return f"{key.site}:calendar"


class _BrowserDied(Exception):
    """The session's browser went away during the check (internal: retried)."""


class _NeedsToken(Exception):
    """A warm session walked without a captcha met an office that asks for one (internal: the
    check is retried at once in a session walked at that office)."""


_CLOSED_MARKERS = ("has been closed", "Target closed", "Browser closed", "browser has disconnected")
"""Playwright's words for a page, context or browser that went away under a call."""


def _browser_gone(session: BrowserSession, exc: BaseException | None = None) -> bool:
    """The browser under ``session`` died (killed, crashed). Checked on the error itself too: a
    call can fail on a dead browser before Playwright's "disconnected" event has been handled."""
    if session.bad_reason == "browser disconnected" or session.page.is_closed():
        return True
    browser = session.context.browser
    if browser is not None and not browser.is_connected():
        return True
    return exc is not None and any(marker in str(exc) for marker in _CLOSED_MARKERS)


async def run_check(
    pool: BrowserPool,
    adapter: SiteAdapter,
    key: TargetKey,
    *,
    site_url: str,
    days: frozenset[date] | None = None,
) -> CheckResult:
    """Check ``key`` once, for the days in ``days`` someone wants (None: the whole horizon); raises
    a ``CheckFailure`` (with ``requests_made``) when it fails."""
    spent = 0
    for attempt in range(1, BROWSER_ATTEMPTS + 1):
        try:
            result = await _attempt(pool, adapter, key, site_url, days)
        except _NeedsToken as needs:
            spent += int(getattr(needs, "requests_made", 0))
            if attempt < BROWSER_ATTEMPTS:
                continue
            captcha = CaptchaRequired(str(needs))
            captcha.requests_made = spent  # type: ignore[attr-defined]
            raise captcha from None
        except _BrowserDied as died:
            spent += int(getattr(died, "requests_made", 0))
            if attempt < BROWSER_ATTEMPTS:
                log.warning("check_browser_died", key=target_label(key), attempt=attempt)
                continue
            failure = CheckTimeout(f"the browser died during the check: {died}")
            failure.requests_made = spent  # type: ignore[attr-defined]
            raise failure from None
        except CheckFailure as failure:
            failure.requests_made = spent + int(getattr(failure, "requests_made", 0))  # type: ignore[attr-defined]
            raise
        except PlaywrightError as exc:  # opening or closing the session failed: the browser is unusable
            if attempt < BROWSER_ATTEMPTS:
                log.warning("check_session_failed", key=target_label(key), error=str(exc)[:200])
                continue
            unusable = CheckTimeout(f"no usable browser session: {str(exc).splitlines()[0][:200]}")
            unusable.requests_made = spent  # type: ignore[attr-defined]
            raise unusable from None
        return CheckResult(result.observation, spent + result.requests_made, result.walked)
    raise AssertionError("unreachable")


@asynccontextmanager
async def walked_session(
    pool: BrowserPool, adapter: SiteAdapter, key: TargetKey, *, site_url: str, purpose: str = "book"
) -> AsyncIterator[tuple[BrowserSession, Observation]]:
    """A freshly walked session for ``key``, for work that must act on the page (booking).

    Yields ``(session, observation)`` with ``session.page`` on the calendar step showing the
    target's slots (``button.timeslot#provider-<oid>-timeslot-<epoch>``), a valid captcha token in
    ``session.token`` when the office needs one, and the page's own calendar request in
    ``session.templates``. The session lives under its own pool key (``<purpose>:<target>``), so it
    never disturbs the warm session of the checks, and is closed on the way out: a page that went
    on to book is spent. A failed walk raises its ``CheckFailure`` (with ``requests_made``).
    """
    pool_key = f"{purpose}:{target_label(key)}"
    stale = pool.warm_session(pool_key)
    if stale is not None:
        await pool.retire(stale, "a fresh walk was asked for")
    async with pool.session(pool_key) as session:
        session.requests_made = 0
        await begin_check(session)
        try:
            observation = await adapter.walk(session, key, site_url)
        except CheckFailure as failure:
            failure.requests_made = session.requests_made  # type: ignore[attr-defined]
            await _keep_evidence(pool, session, f"{purpose}-{type(failure).__name__}")
            raise
        try:
            yield session, observation
        finally:
            await pool.retire(session, f"{purpose} done")


async def _attempt(
    pool: BrowserPool, adapter: SiteAdapter, key: TargetKey, site_url: str, days: frozenset[date] | None
) -> CheckResult:
    started = time.monotonic()
    captcha_targets = pool.captcha_targets
    async with pool.session(session_key(key), need_token=key in captcha_targets) as session:
        session.requests_made = 0
        walked = not session.walked
        await begin_check(session)
        try:
            if walked:
                observation = await adapter.walk(session, key, site_url, days)
                # a fresh context meets the captcha only where the office asks for one
                if session.token is not None:
                    captcha_targets.add(key)
                else:
                    captcha_targets.discard(key)
            else:
                observation = await adapter.warm_check(session, key, days)
        except CheckFailure as failure:
            if isinstance(failure, CaptchaRequired) and not walked and session.token is None:
                captcha_targets.add(key)
                needs = _NeedsToken(f"{target_label(key)} asks for a captcha: {failure}")
                needs.requests_made = session.requests_made  # type: ignore[attr-defined]
                raise needs from None
            failure.requests_made = session.requests_made  # type: ignore[attr-defined]
            log.info(
                "check_failed",
                key=target_label(key),
                failure=type(failure).__name__,
                error=str(failure)[:300],
                walked=walked,
                requests=session.requests_made,
            )
            await _keep_evidence(pool, session, type(failure).__name__)
            raise
        except PlaywrightError as exc:
            if _browser_gone(session, exc):
                died = _BrowserDied(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
                died.requests_made = session.requests_made  # type: ignore[attr-defined]
                raise died from None
            browser_error = CheckTimeout(
                f"browser error: {str(exc).splitlines()[0][:200] if str(exc) else exc!r}"
            )
            browser_error.requests_made = session.requests_made  # type: ignore[attr-defined]
            await _keep_evidence(pool, session, "BrowserError")
            raise browser_error from None
        session.mark_good()
        await discard_check(session)
        log.debug(
            "check_ok",
            key=target_label(key),
            walked=walked,
            slots=len(observation.slots),
            requests=session.requests_made,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return CheckResult(observation, session.requests_made, walked)


async def _keep_evidence(pool: BrowserPool, session: BrowserSession, label: str) -> None:
    if pool.trace:
        await save_failure(session, pool.settings.trace_dir, f"{label}-{session.key}")


__all__ = ["BROWSER_ATTEMPTS", "CheckResult", "run_check", "session_key", "target_label", "walked_session"]
