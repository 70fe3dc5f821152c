"""The operator's kill switch: stop every request to a site at once, and resume.

A contract between the roles, in Redis: while ``mta:site_stop:<site>`` exists, the scheduler
dispatches no check of the site and a worker that holds one already drops it before it sends a
request. The key carries who stopped the site, when and why (JSON), and no expiry: traffic
resumes only when an operator says so (admin API ``/api/v1/admin/sites/<site>/stop`` and
``/resume``, or the bot's ``/stopsite`` and ``/resumesite`` in an operator chat).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis

KEY_PREFIX = "mta:site_stop:"


def key(site: str) -> str:
    return f"{KEY_PREFIX}{site}"


def encode(reason: str, by: str, at: datetime | None = None) -> str:
    return json.dumps({"reason": reason, "by": by, "at": (at or datetime.now(UTC)).isoformat()})


def decode(raw: bytes | str | None) -> dict[str, Any]:
    """Who, when, why (empty values for an unreadable entry: the switch is on all the same)."""
    try:
        body = json.loads(raw or "{}")
    except ValueError:
        body = {}
    return {k: str(body.get(k, "")) for k in ("reason", "by", "at")}


def stop_site(client: redis.Redis, site: str, *, reason: str, by: str) -> None:
    client.set(key(site), encode(reason, by))


def resume_site(client: redis.Redis, site: str) -> bool:
    """True when the site was stopped."""
    return bool(client.delete(key(site)))


def site_stopped(client: redis.Redis, site: str) -> bool:
    return bool(client.exists(key(site)))


def stopped_sites(client: redis.Redis) -> dict[str, dict[str, Any]]:
    keys = [k.decode() if isinstance(k, bytes) else str(k) for k in client.scan_iter(match=KEY_PREFIX + "*")]
    if not keys:
        return {}
    return {k[len(KEY_PREFIX) :]: decode(v) for k, v in zip(keys, client.mget(keys), strict=True)}


__all__ = [
    "KEY_PREFIX",
    "decode",
    "encode",
    "key",
    "resume_site",
    "site_stopped",
    "stop_site",
    "stopped_sites",
]
