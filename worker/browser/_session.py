"""One warm session: a browser context whose page has walked the site, plus what the walk learned.

A session is an identity the site has seen: its captcha token, its cookies, the exact request the
page made for the calendar. It tracks its own health (``mark_good``, ``mark_bad``) and age; whether
it is still fit for use is decided by the pool.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from playwright.async_api import BrowserContext, Page

from shared.logging import get_logger
from worker.captcha_token import token_lifetime_s

log = get_logger("mta.browser")


@dataclass(frozen=True)
class RequestTemplate:
    """A request the page itself made, to be repeated with other query values."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    """Request headers worth repeating (e.g. Accept); the browser adds the rest."""

    def with_query(self, **values: str | None) -> str:
        """The same URL with these query values replaced (None drops the parameter)."""
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for name, value in values.items():
            if value is None:
                query.pop(name, None)
            else:
                query[name] = value
        return urlunsplit(parts._replace(query=urlencode(query, safe=",")))

    def with_endpoint(self, old: str, new: str) -> RequestTemplate:
        """The same request to a sibling endpoint (same base, same headers)."""
        parts = urlsplit(self.url)
        path = parts.path.replace(f"/{old}", f"/{new}", 1)
        return RequestTemplate(urlunsplit(parts._replace(path=path, query="")), self.method, self.headers)

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))


class BrowserSession:
    """A context + page for one target, with its captcha token and learned requests."""

    def __init__(
        self,
        key: str,
        context: BrowserContext,
        page: Page,
        *,
        browser_id: int,
        clock: Callable[[], float] = time.time,
        on_retire: Callable[[BrowserSession], Awaitable[None]] | None = None,
    ) -> None:
        self.key = key
        self.context = context
        self.page = page
        self.browser_id = browser_id
        self._clock = clock
        self._on_retire = on_retire
        self.created_at = clock()
        self.last_used_at = self.created_at
        self.checks_done = 0
        self.stagger = random.random()
        """Where in the pool's refresh window this session renews (see ``TOKEN_REFRESH_STAGGER``)."""
        self.requests_made = 0
        """Site requests caused during the current check (``run_check`` resets it per check)."""
        self.token: str | None = None
        self.token_expires_at: float | None = None
        """Our clock's time (seconds) when the token expires; None without a token."""
        self.walked = False
        self.api_base: str | None = None
        self.templates: dict[str, RequestTemplate] = {}
        self.site_data: dict[str, Any] = {}
        """Adapter-private state (e.g. its response recorder)."""
        self.bad_reason: str | None = None
        self.retired = False
        self.in_use = False
        self.tracing = False
        self.trace_chunk_open = False
        self.trace_chunk_checks = 0
        """A trace chunk is recording (see ``worker.tracing``)."""

    def __repr__(self) -> str:
        return (
            f"<BrowserSession {self.key} browser={self.browser_id} checks={self.checks_done} "
            f"walked={self.walked} bad={self.bad_reason!r} retired={self.retired}>"
        )

    # --- the captcha token ----------------------------------------------------------------------
    def set_token(self, token: str | None) -> None:
        """Keep the token; its lifetime (``exp - iat``) is counted from now on our own clock, so a
        skewed site clock does not matter."""
        self.token = token
        if token is None:
            self.token_expires_at = None
            return
        lifetime = token_lifetime_s(token)
        self.token_expires_at = self._clock() + lifetime if lifetime is not None else None

    def token_remaining_s(self) -> float | None:
        if self.token is None or self.token_expires_at is None:
            return None
        return self.token_expires_at - self._clock()

    # --- health ------------------------------------------------------------------------------------
    @property
    def age_s(self) -> float:
        return self._clock() - self.created_at

    @property
    def usable(self) -> bool:
        return self.bad_reason is None and not self.retired and not self.page.is_closed()

    def mark_good(self) -> None:
        """One more successful check on this session."""
        self.checks_done += 1
        self.last_used_at = self._clock()

    def mark_bad(self, reason: str) -> None:
        """Never hand this session out again; the pool closes it when it is released."""
        if self.bad_reason is None:
            self.bad_reason = reason

    async def retire(self) -> None:
        """Close the context (memory only returns when a context closes). Idempotent."""
        if self.retired:
            return
        self.retired = True
        with contextlib.suppress(Exception):  # the browser may already be gone
            await self.context.close()
        if self._on_retire is not None:
            await self._on_retire(self)
        log.debug("session_retired", key=self.key, checks=self.checks_done, reason=self.bad_reason)


__all__ = ["BrowserSession", "RequestTemplate"]
