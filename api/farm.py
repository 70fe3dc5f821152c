"""What Redis knows about the running farm: heartbeats, the scheduler's leader, queues, budgets.

Every process announces itself under ``mta:heartbeat:<role>[:<identity>]`` (the scheduler writes
``mta:heartbeat:scheduler:<identity>`` with unix seconds and a TTL; the bot ``mta:heartbeat:bot``).
A value may be unix seconds (or milliseconds), or a JSON object / Redis hash with a ``ts`` field
plus details (a worker's browsers and contexts), so a role can say more without a change here.

The parsing is pure; ``read_farm`` (async, for the api) and ``read_heartbeats_sync`` (for
``mta health``) do the I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis

from shared import killswitch
from shared.contracts import BUDGET_KEY_PREFIX as BUDGET_PREFIX
from shared.contracts import (
    BUDGET_WINDOW_S,
    HEARTBEAT_PREFIX,
    LEADER_KEY,
    QUEUES,
    ROUND_COST_KEY,
    SITE_PAUSE_PREFIX,
    streak_pause_after,
)
from shared.contracts import NAMESPACE as DRAMATIQ_NAMESPACE
from shared.events import EVENTS_KEY, FarmEvent, decode_all

HEARTBEAT_MAX_AGE_S = 60.0
"""A heartbeat older than this counts as a dead process (the scheduler renews every 0.25 s)."""
DRAMATIQ_CONSUMER_WINDOW_MS = 15_000
"""A consumer polls its queue at least every ``dramatiq_worker_timeout`` (1 s); one silent this
long is not consuming. Enqueuing processes (the scheduler) beat in the same set: only broker ids
that a live worker heartbeat names count."""
EVENTS_SHOWN = 30
_TS_FIELDS = ("ts", "at", "time", "timestamp", "updated_at")
_SCAN_COUNT = 500


@dataclass(frozen=True)
class Heartbeat:
    """One process's last sign of life."""

    role: str
    identity: str
    at: datetime | None
    """None when the value had no readable time (the key's TTL alone says it is alive)."""
    info: dict[str, Any] = field(default_factory=dict)

    def age_s(self, now: datetime) -> float | None:
        return None if self.at is None else max(0.0, (now - self.at).total_seconds())

    def fresh(self, now: datetime, max_age_s: float = HEARTBEAT_MAX_AGE_S) -> bool:
        age = self.age_s(now)
        return age is None or age <= max_age_s


@dataclass(frozen=True)
class QueueDepth:
    name: str
    ready: int
    delayed: int
    in_progress: int
    dead: int


@dataclass(frozen=True)
class BudgetUse:
    site: str
    egress: str
    used: int
    """Requests in the last 60 s."""
    limit: int
    streak: int = 0
    """Requests since the last 60 s pause (``worker.budget``'s streak counter)."""
    pause_s: float = 0.0
    """Seconds the farm still waits for the city's counter to reset (0: not pausing)."""
    pause_after: int = 0
    """Requests in a streak before the farm pauses (0: no pause)."""
    announced_limit: int | None = None
    """The limit the site's X-RateLimit-Limit header stated last (None: not seen lately)."""
    carried: int = 0
    """Requests charged to the coming minutes (``SiteBudget.charge``: a walk being paid back)."""


@dataclass(frozen=True)
class FarmState:
    """One read of everything the farm keeps in Redis."""

    ok: bool
    error: str | None
    heartbeats: list[Heartbeat]
    leader: str | None
    queues: list[QueueDepth]
    budgets: list[BudgetUse]
    consumers: int
    """Dramatiq consumer processes of live workers with a recent broker heartbeat."""
    events: list[FarmEvent] = field(default_factory=list)
    """The farm's own events (``shared.events``), newest first."""
    round_costs: dict[str, float] = field(default_factory=dict)
    """``site:service:count`` -> requests of the group's last round (sets the check interval)."""
    paused_sites: frozenset[str] = frozenset()
    """Sites the farm holds back from (a 429's reset time, the kill switch): their targets are not stale."""
    stopped_sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The operator's kill switch (``shared.killswitch``): site -> who, when, why."""

    def by_role(self, role: str) -> list[Heartbeat]:
        return [h for h in self.heartbeats if h.role == role]

    def live(self, role: str, now: datetime) -> list[Heartbeat]:
        """The heartbeats of ``role`` that are fresh at ``now`` (dead processes left out)."""
        return [h for h in self.heartbeats if h.role == role and h.fresh(now)]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_time(value: Any) -> datetime | None:
    """Unix seconds, milliseconds, or an ISO string as an aware UTC datetime; None if unreadable."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = _text(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                return None
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if number > 1e12:  # milliseconds
        number /= 1000.0
    if not 0 < number < 1e11:
        return None
    return datetime.fromtimestamp(number, UTC)


def parse_heartbeat(key: str, value: Any) -> Heartbeat | None:
    """A heartbeat from its key and value (bytes/str or a hash mapping); None for a foreign key."""
    if not key.startswith(HEARTBEAT_PREFIX):
        return None
    rest = key[len(HEARTBEAT_PREFIX) :]
    role, _, identity = rest.partition(":")
    if not role:
        return None
    info: dict[str, Any] = {}
    at: datetime | None = None
    if isinstance(value, Mapping):
        info = {_text(k): _text(v) for k, v in value.items()}
    elif value is not None:
        text = _text(value)
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text
        if isinstance(decoded, dict):
            info = {str(k): v for k, v in decoded.items()}
        else:
            at = parse_time(decoded)
    for name in _TS_FIELDS:
        if name in info:
            at = parse_time(info.pop(name))
            break
    return Heartbeat(role=role, identity=identity or str(info.get("id", "")), at=at, info=info)


async def _read_heartbeats(client: aioredis.Redis) -> list[Heartbeat]:
    keys = [_text(k) async for k in client.scan_iter(match=HEARTBEAT_PREFIX + "*", count=_SCAN_COUNT)]
    if not keys:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
        types = [_text(t) for t in await pipe.execute()]
    # strings and hashes are heartbeats; other types (worker.heartbeat's sorted-set index) are not
    wanted = [(k, t) for k, t in zip(keys, types, strict=True) if t in {"string", "hash"}]
    async with client.pipeline(transaction=False) as pipe:
        for key, kind in wanted:
            pipe.hgetall(key) if kind == "hash" else pipe.get(key)
        values = await pipe.execute()
    beats = []
    for (key, _), value in zip(wanted, values, strict=True):
        beat = parse_heartbeat(key, value)
        if beat is not None and value is not None:
            beats.append(beat)
    return sorted(beats, key=lambda b: (b.role, b.identity))


async def _read_queues(client: aioredis.Redis) -> list[QueueDepth]:
    acks: dict[str, list[str]] = {name: [] for name in QUEUES}
    async for raw in client.scan_iter(match=f"{DRAMATIQ_NAMESPACE}:__acks__.*", count=_SCAN_COUNT):
        key = _text(raw)
        for name in QUEUES:
            if key.endswith(f".{name}") or key.endswith(f".{name}.DQ"):
                acks[name].append(key)
    async with client.pipeline(transaction=False) as pipe:
        for name in QUEUES:
            base = f"{DRAMATIQ_NAMESPACE}:{name}"
            pipe.llen(base)
            pipe.llen(f"{base}.DQ")
            pipe.zcard(f"{base}.XQ")
            for key in acks[name]:
                pipe.scard(key)
        values = await pipe.execute()
    depths = []
    index = 0
    for name in QUEUES:
        ready, delayed, dead = values[index : index + 3]
        index += 3
        in_progress = sum(int(v) for v in values[index : index + len(acks[name])])
        index += len(acks[name])
        depths.append(QueueDepth(name, int(ready), int(delayed), in_progress, int(dead)))
    return depths


async def _read_budgets(client: aioredis.Redis, limit: int, before_pause: int) -> list[BudgetUse]:
    """Sum each budget's one-second buckets (``worker.budget.SiteBudget.used``) over the window."""
    names: set[str] = set()
    now = int(time.time())
    ahead: dict[str, list[str]] = {}
    async for raw in client.scan_iter(match=BUDGET_PREFIX + "*", count=_SCAN_COUNT):
        key = _text(raw)
        if "@" in key:
            name, _, second = key.rpartition("@")
            names.add(name)
            if second.isdigit() and int(second) > now:
                ahead.setdefault(name, []).append(key)
        elif key.endswith(":streak"):
            names.add(key.removesuffix(":streak"))
        elif key.endswith(":announced_limit"):
            names.add(key.removesuffix(":announced_limit"))
    budgets = []
    for name in sorted(names):
        values = await client.mget([f"{name}@{now - i}" for i in range(BUDGET_WINDOW_S)])
        used = sum(int(v) for v in values if v)
        carried = sum(int(v) for v in await client.mget(ahead[name]) if v) if name in ahead else 0
        streak_raw, announced_raw = await client.mget([f"{name}:streak", f"{name}:announced_limit"])
        streak = int(streak_raw) if streak_raw else 0
        announced = int(announced_raw) if announced_raw else None
        pause_after = streak_pause_after(before_pause, announced)
        pause_s = 0.0
        if pause_after > 0 and streak >= pause_after:
            pause_s = max(0.0, int(await client.pttl(f"{name}:streak")) / 1000)
        site, _, egress = name[len(BUDGET_PREFIX) :].partition(":")
        budgets.append(
            BudgetUse(
                site, egress or "default", used, limit, streak, pause_s, pause_after, announced, carried
            )
        )
    return budgets


async def _read_consumers(client: aioredis.Redis, heartbeats: list[Heartbeat]) -> int:
    """Dramatiq consumers that polled lately and belong to a live worker process."""
    now = datetime.now(UTC)
    broker_ids = {
        str(h.info["broker_id"])
        for h in heartbeats
        if h.role == "worker" and h.fresh(now) and h.info.get("broker_id")
    }
    if not broker_ids:
        return 0
    since_ms = int(time.time() * 1000) - DRAMATIQ_CONSUMER_WINDOW_MS
    polled = await client.zrangebyscore(f"{DRAMATIQ_NAMESPACE}:__heartbeats__", since_ms, "+inf")
    return len({_text(b) for b in polled} & broker_ids)


async def read_farm(client: aioredis.Redis | None, *, budget_limit: int, before_pause: int = 0) -> FarmState:
    """Everything above in one go; a Redis error gives ``ok=False`` with the reason, never raises."""
    if client is None:
        return FarmState(False, "MTA_REDIS_URL is not set", [], None, [], [], 0)
    try:
        heartbeats = await _read_heartbeats(client)
        leader_raw = await client.get(LEADER_KEY)
        queues = await _read_queues(client)
        budgets = await _read_budgets(client, budget_limit, before_pause)
        consumers = await _read_consumers(client, heartbeats)
        events = decode_all(await client.lrange(EVENTS_KEY, 0, EVENTS_SHOWN - 1))
        costs_raw = await client.hgetall(ROUND_COST_KEY)
        stop_keys = [
            _text(k) async for k in client.scan_iter(match=killswitch.KEY_PREFIX + "*", count=_SCAN_COUNT)
        ]
        stops = dict(zip(stop_keys, await client.mget(stop_keys), strict=True)) if stop_keys else {}
        paused = {
            _text(k)[len(SITE_PAUSE_PREFIX) :]
            async for k in client.scan_iter(match=SITE_PAUSE_PREFIX + "*", count=_SCAN_COUNT)
        }
    except (redis.RedisError, OSError) as exc:
        return FarmState(False, f"{type(exc).__name__}: {exc}", [], None, [], [], 0)
    leader = _text(leader_raw) if leader_raw is not None else None
    costs = {}
    for key, value in costs_raw.items():
        try:
            costs[_text(key)] = max(1.0, float(_text(value)))
        except ValueError:
            continue
    stopped = {k[len(killswitch.KEY_PREFIX) :]: killswitch.decode(v) for k, v in stops.items()}
    return FarmState(
        True,
        None,
        heartbeats,
        leader,
        queues,
        budgets,
        consumers,
        events,
        costs,
        frozenset(paused) | frozenset(stopped),
        stopped,
    )


def read_heartbeats_sync(client: redis.Redis, role: str) -> list[Heartbeat]:
    """The heartbeats of one role (``mta health``): ``mta:heartbeat:<role>`` and ``<role>:*``."""
    beats = []
    keys = [HEARTBEAT_PREFIX + role]
    keys += [_text(k) for k in client.scan_iter(match=f"{HEARTBEAT_PREFIX}{role}:*", count=_SCAN_COUNT)]
    for key in keys:
        kind = _text(client.type(key))
        if kind == "none":
            continue
        value: Any = client.hgetall(key) if kind == "hash" else client.get(key) if kind == "string" else None
        beat = parse_heartbeat(key, value)
        if beat is not None:
            beats.append(beat)
    return beats


__all__ = [
    "HEARTBEAT_MAX_AGE_S",
    "HEARTBEAT_PREFIX",
    "LEADER_KEY",
    "QUEUES",
    "BudgetUse",
    "FarmState",
    "Heartbeat",
    "QueueDepth",
    "parse_heartbeat",
    "parse_time",
    "read_farm",
    "read_heartbeats_sync",
]
