"""``mta health <role>``: the one-line answer a container healthcheck needs.

api: ``GET /healthz`` answers 200. worker, scheduler, bot: a fresh heartbeat key in Redis
(``mta:heartbeat:<role>`` or ``mta:heartbeat:<role>:<identity>``). ``this_host`` narrows the
heartbeats to identities that name this machine's host name (one container among many).
"""

from __future__ import annotations

import enum
import socket
from datetime import UTC, datetime

import httpx
import redis

from api.farm import HEARTBEAT_MAX_AGE_S, read_heartbeats_sync
from shared.settings import Settings


class Role(enum.StrEnum):
    API = "api"
    WORKER = "worker"
    SCHEDULER = "scheduler"
    BOT = "bot"


def _local_host(host: str) -> str:
    if host in {"", "0.0.0.0", "::", "[::]"}:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_api(settings: Settings, timeout_s: float = 5.0) -> tuple[bool, str]:
    url = f"http://{_local_host(settings.api_host)}:{settings.api_port}/healthz"
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return False, f"api unhealthy: {url} unreachable ({type(exc).__name__}: {exc})"
    if response.status_code != 200:
        return False, f"api unhealthy: {url} answered {response.status_code}"
    return True, f"api healthy: {url} answered 200"


def check_heartbeat(
    settings: Settings,
    role: Role,
    *,
    max_age_s: float = HEARTBEAT_MAX_AGE_S,
    this_host: bool = False,
    timeout_s: float = 5.0,
) -> tuple[bool, str]:
    if not settings.redis_url:
        return False, f"{role} unknown: MTA_REDIS_URL is not set"
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        beats = read_heartbeats_sync(client, role.value)
    except (redis.RedisError, OSError) as exc:
        return False, f"{role} unknown: Redis unreachable ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    host = socket.gethostname()
    if this_host:
        beats = [b for b in beats if host in b.identity]
    now = datetime.now(UTC)
    fresh = [b for b in beats if b.fresh(now, max_age_s)]
    where = f" from host {host}" if this_host else ""
    if fresh:
        return True, f"{role} healthy: {len(fresh)} fresh heartbeat(s){where}"
    if beats:
        ages = [b.age_s(now) for b in beats]
        youngest = min(a for a in ages if a is not None)
        return (
            False,
            f"{role} unhealthy: newest heartbeat{where} is {youngest:.0f} s old (limit {max_age_s:.0f} s)",
        )
    return False, f"{role} unhealthy: no heartbeat{where} in Redis (mta:heartbeat:{role}*)"


def check(
    settings: Settings, role: Role, *, max_age_s: float = HEARTBEAT_MAX_AGE_S, this_host: bool = False
) -> tuple[bool, str]:
    """(healthy, one-line reason) for ``role``."""
    if role == Role.API:
        return check_api(settings)
    return check_heartbeat(settings, role, max_age_s=max_age_s, this_host=this_host)


__all__ = ["Role", "check", "check_api", "check_heartbeat"]
