"""The citizen API's rate limit, with the city's exact semantics (spec §2.11).

Per client IP a count is stored with a TTL of ``window_s``. A request finding the count at or above
the limit gets 429 ``rateLimitExceeded`` (no X-RateLimit headers) and does *not* refresh the TTL.
Otherwise the count goes up by one and the entry is re-stored with a fresh TTL, so the window is
"N requests with no ``window_s`` pause", not a fixed minute. Success responses carry
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` (max(0, N - count - 1), one less than the truth)
and ``X-RateLimit-Reset`` (time of the last counted request + ``window_s``).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from replica.clock import Clock

IP_HEADERS = (
    "client-ip",
    "x-forwarded-for",
    "x-forwarded",
    "x-cluster-client-ip",
    "forwarded-for",
    "forwarded",
)
"""Headers searched for the client IP, in the city's order, before the socket address."""


def _valid_ip(candidate: str) -> str | None:
    value = candidate.strip().strip('"')
    if value.lower().startswith("for="):
        value = value[4:].strip('"')
    if value.startswith("[") and "]" in value:  # [2001:db8::1]:1234
        value = value[1 : value.index("]")]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(headers: Mapping[str, str], remote_addr: str | None) -> str:
    """The first valid IP among the proxy headers, else the socket address (REMOTE_ADDR)."""
    for name in IP_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        for part in raw.replace(";", ",").split(","):
            ip = _valid_ip(part)
            if ip is not None:
                return ip
    return remote_addr or "0.0.0.0"


@dataclass
class _Entry:
    count: int
    timestamp: float
    expires_at: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int


class RateLimiter:
    """In-memory stand-in for the city's filesystem PSR-16 cache of per-IP counters."""

    def __init__(self, clock: Clock, limit: int, window_s: int = 60) -> None:
        self.clock = clock
        self.limit = limit
        self.window_s = window_s
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _get(self, ip: str, now: float) -> _Entry | None:
        entry = self._entries.get(ip)
        if entry is not None and entry.expires_at <= now:
            del self._entries[ip]
            return None
        return entry

    def hit(self, ip: str) -> Decision:
        """Count one request; ``allowed=False`` means answer 429 (nothing is refreshed then)."""
        now = self.clock.timestamp()
        with self._lock:
            entry = self._get(ip, now)
            if entry is None:
                self._entries[ip] = _Entry(1, now, now + self.window_s)
                return Decision(True, 1)
            if entry.count >= self.limit:
                return Decision(False, entry.count)
            entry.count += 1
            entry.timestamp = now
            entry.expires_at = now + self.window_s
            return Decision(True, entry.count)

    def headers(self, ip: str) -> dict[str, str]:
        """The X-RateLimit headers of a successful response, read after the handler ran."""
        now = self.clock.timestamp()
        with self._lock:
            entry = self._get(ip, now)
            count = entry.count if entry else 0
            reset = int(entry.timestamp if entry else now) + self.window_s
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - count - 1)),
            "X-RateLimit-Reset": str(reset),
        }

    def snapshot(self) -> dict[str, dict[str, float]]:
        now = self.clock.timestamp()
        with self._lock:
            return {
                ip: {"count": e.count, "timestamp": e.timestamp, "expires_at": e.expires_at}
                for ip, e in self._entries.items()
                if e.expires_at > now
            }

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
