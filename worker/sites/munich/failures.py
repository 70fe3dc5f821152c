"""The one mapping from the citizen API's answers to failure types, for checks and bookings alike.

A check and a booking used to map the same answer two ways (the "blocked" answer was
``RateLimited`` in one and ``SiteUnavailable`` in the other, with different retry behaviour). Both
now ask ``failure_for``. The policy, per the city's source (``zmscitizenapi``: ``ErrorMessages.php``,
``RateLimitingMiddleware.php``, ``IpFilterMiddleware``; fact sheet §2.10, §2.11):

- 429 or ``rateLimitExceeded``: ``RateLimited`` until the window resets;
- ``IP_BLACKLISTED`` (403): ``RateLimited`` without a reset time (back off; the block is the site's
  answer to our traffic, not an outage);
- 503 or ``serviceUnavailable``, any other 5xx, or no answer at all: ``SiteUnavailable``;
- a captcha code: ``CaptchaRequired`` (a fresh walk solves it again);
- an answer that is not JSON at all (a proxy's or WAF's HTML page): ``SiteUnavailable``;
- a JSON 4xx this code does not know: ``LayoutChanged``, never "no slots" and never "slot taken".

The caller decides first which answers are ordinary outcomes (``noAppointmentForThisScope`` on the
calendar, ``appointmentNotAvailable`` on reserve ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from shared.domain import CaptchaRequired, CheckFailure, LayoutChanged, RateLimited, SiteUnavailable, utcnow
from worker.sites.munich import selectors as sel


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header (names lower-case), or None."""
    value = str(headers.get(name, "")).strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def reset_time(headers: Mapping[str, str], last_reset: datetime | None = None) -> datetime:
    """When a rate-limit block lifts: the answer's own header (``X-RateLimit-Reset``, epoch, or
    ``Retry-After``, seconds), else the last reset a successful answer announced (the last counted
    request + 60 s), else a full window from now (fact sheet §2.11: a 429 carries no such header)."""
    now = utcnow()
    for name in (sel.RATE_LIMIT_RESET_HEADER, "retry-after"):
        number = header_int(headers, name)
        if number is not None:
            at = now + timedelta(seconds=number) if number < 10**9 else datetime.fromtimestamp(number, UTC)
            if at > now:
                return at
    if last_reset is not None and last_reset > now:
        return last_reset
    return now + timedelta(seconds=sel.RATE_LIMIT_WINDOW_S)


def failure_for(
    endpoint: str,
    status: int,
    codes: Sequence[str],
    *,
    is_object: bool,
    headers: Mapping[str, str] | None = None,
    last_reset: datetime | None = None,
) -> CheckFailure | None:
    """The failure an answer means, or None when it is a success (2xx with a JSON object).

    Call it only for answers that are not an ordinary outcome of their endpoint; see the module
    docstring for the policy.
    """
    headers = headers or {}
    found = set(codes)
    label = f"{endpoint}: HTTP {status}"
    if status == 429 or sel.RATE_LIMIT_CODE in found:
        return RateLimited(f"{label} {sel.RATE_LIMIT_CODE}", reset_at=reset_time(headers, last_reset))
    if sel.BLOCKED_CODE in found:
        return RateLimited(f"{label} {sel.BLOCKED_CODE}", reset_at=None)
    if status == 503 or sel.MAINTENANCE_CODE in found:
        return SiteUnavailable(f"{label} maintenance", status_code=status)
    if status >= 500 or status == 0:
        return SiteUnavailable(f"{label} {','.join(sorted(found))}".strip(), status_code=status)
    if sel.CAPTCHA_CODES & found:
        return CaptchaRequired(f"{endpoint}: {','.join(sorted(sel.CAPTCHA_CODES & found))}")
    if not is_object:  # an HTML error page of a proxy or WAF in front of the API: transient
        return SiteUnavailable(f"{label} answered no JSON object", status_code=status)
    if status >= 400:
        return LayoutChanged(f"{label}: an answer this code does not know: {sorted(found)}")
    return None


__all__ = ["failure_for", "header_int", "reset_time"]
