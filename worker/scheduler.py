"""The scheduler: one leader turns subscriptions into targets and dispatches checks politely.

Politeness is decided here, once for the whole farm:
- subscriptions watching the same (site, service, count, office set) share one target, and the
  targets of one (site, service, count) share one check: the calendar request names a set of
  offices, so one request for the union of their offices serves them all (a person on the page
  ticks several offices the same way). The city sees one request stream per service and count,
  however many people wait and however they combine offices;
- every dispatch spends a token of the site's budget (Redis, shared by all processes);
- a check is a round of requests (``MunichAdapter.check_round``): the bookable days of the whole
  horizon, then the times of the days someone wants. The scheduler works out those days from the
  group's subscriptions (date windows, weekdays; ``shared.horizon``) and sends them with the check;
  a round's cost varies with the open days, so the worker reports it and the intervals follow;
- each such group gets a share of the budget in proportion to its round's cost over its release
  state's factor (``worker.release_plan``: inside the city's stated release windows and the hours
  in which MTA has seen slots appear rounds come faster, at night and at weekends slower), the most
  overdue goes first, and dispatches to one site are spaced at the budget's even rate (plus
  jitter), so a minute's checks are spread over it rather than bunched at its start; before a
  release window the site's request streak is let lapse when it would run out inside the window,
  so the mandatory pause falls right before the window, not in it;
- targets backing off (429 reset time, maintenance) are skipped until their time has come, and a
  429 pauses the whole site (the city counts requests per client address, not per target);
- a target is sent again only after its worker said it is done (``mark_done``), so checks of one
  target never pile up in the queue, however slow the site is.
A second scheduler process stands by and takes over when the leader's lease runs out.

Redis keys: ``mta:inflight:<target id>`` (a check is queued or running; or, after a failure, the
target's back-off), ``mta:scheduler:last_dispatch`` (hash target id -> unix time),
``mta:site_pause:<site>`` (the site answered 429; expires at its reset time),
``mta:scheduler:round_cost`` (hash ``site:service:count`` -> site requests of the group's last warm
round, which sets how far apart its rounds are), the leader lease
``mta:scheduler:leader`` and the heartbeats (``worker.heartbeat``).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from sqlalchemy import select

from shared.contracts import INFLIGHT_PREFIX as INFLIGHT_PREFIX
from shared.contracts import LAST_DISPATCH_KEY as LAST_DISPATCH_KEY
from shared.contracts import ROUND_COST_KEY as ROUND_COST_KEY
from shared.contracts import SITE_PAUSE_PREFIX as SITE_PAUSE_PREFIX
from shared.db.database import Database
from shared.db.models import Slot, Subscription, SubscriptionState, Target
from shared.domain import SITE_TIMEZONE, ensure_utc
from shared.horizon import DayWish, encode_days, wanted_days
from shared.killswitch import site_stopped
from shared.logging import get_logger
from shared.recording import sync_targets
from shared.release_windows import load_release_windows
from shared.settings import Settings
from worker import heartbeat
from worker.budget import PAUSE_MS, SiteBudget, site_budget
from worker.leader import LeaderLock
from worker.release_plan import ReleasePlan, State

log = get_logger("mta.scheduler")

BOOKING_POLL_EVERY_S = 30.0
"""Reservations, activation deadlines and confirmations are read this often (one job at a time)."""
RETENTION_EVERY_S = 3600.0
PRE_WINDOW_HOLD_S = 65.0
"""A site whose stated release window starts within this long lets its request streak lapse first
(MTA's pause is 61 s from the last request), so the window starts with a fresh streak."""
STREAK_PAUSE_S = PAUSE_MS / 1000
"""How long a pause at the end of a streak keeps the site silent."""


@dataclass
class TargetView:
    """What the scheduler needs of a target, read once per sync."""

    id: int
    site: str
    backoff_until: datetime | None
    service_id: int = 0
    service_count: int = 1
    office_ids: tuple[int, ...] = ()

    @property
    def group(self) -> tuple[str, int, int]:
        """Targets with the same group are checked together, by one request."""
        return (self.site, self.service_id, self.service_count)


@dataclass
class PeriodicJob:
    """Housekeeping the leader runs every ``every_s`` (booking-state poll, retention purge)."""

    name: str
    every_s: float
    run: Callable[[], object]
    next_at: float = 0.0


@dataclass
class Scheduler:
    """Dispatch loop; ``tick()`` does one round and is what the tests drive."""

    settings: Settings
    db: Database
    client: redis.Redis
    send: Callable[[int, str, list[int], str], None]
    """Enqueue one check of a target, with its dispatch id, the other targets of its group that
    ride along, and the days anyone in the group wants (``shared.horizon.encode_days``;
    ``check_target.send`` in production)."""
    sync_interval_s: float = 5.0
    min_interval_s: float | None = None
    """No target is checked more often than this (default: the ``check_min_interval_s`` setting)."""
    inflight_ttl_s: int = 180
    """A check whose worker never reported back (lost message) is sent again after this long."""
    rng: random.Random = field(default_factory=random.Random)
    leader: LeaderLock | None = None
    _targets: list[TargetView] = field(default_factory=list)
    _wanted: dict[tuple[str, int, int], str] = field(default_factory=dict)
    """Per group, the days its subscribers want (encoded), worked out at each sync."""
    _round_cost: dict[str, float] = field(default_factory=dict)
    plan: ReleasePlan | None = None
    """Release-aware pacing (None: every group at the same pace); built from the settings."""
    spread_checks: bool = True
    """Space dispatches to one site at the budget's even rate (``spacing_s``); tests of other
    concerns turn it off to send every due group in one tick."""
    _next_site_dispatch: dict[str, float] = field(default_factory=dict)
    _learned_at: float = float("-inf")
    learn_every_s: float = 900.0
    _synced_at: float = float("-inf")
    _backoff_read_at: float = float("-inf")
    backoff_refresh_s: float = 1.0
    _budgets: dict[str, SiteBudget] = field(default_factory=dict)
    dispatched_total: int = 0
    last_dispatch_at: float | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.plan is None and self.settings.release_aware:
            self.plan = ReleasePlan(
                load_release_windows(self.settings.release_windows_file or None),
                hot_factor=self.settings.release_hot_factor,
                cold_factor=self.settings.release_cold_factor,
            )
        if self.min_interval_s is None:
            self.min_interval_s = self.settings.check_min_interval_s
        if self.leader is None:
            self.leader = LeaderLock(self.client, ttl_ms=self.settings.scheduler_lease_ms)

    # --- targets ---------------------------------------------------------------------------------
    def sync(self) -> list[TargetView]:
        with self.db.transaction() as session:
            sync_targets(session)
            rows = session.scalars(select(Target).where(Target.active.is_(True)).order_by(Target.id))
            self._targets = [
                TargetView(t.id, t.site, t.backoff_until, t.service_id, t.service_count, t.office_ids)
                for t in rows
            ]
            wishes: dict[tuple[str, int, int], list[DayWish]] = {}
            for sub in session.scalars(
                select(Subscription).where(Subscription.state == SubscriptionState.ACTIVE)
            ):
                wishes.setdefault((sub.site, sub.service_id, sub.service_count), []).append(
                    DayWish(sub.date_from, sub.date_to, frozenset(sub.weekdays or ()))
                )
        today = datetime.now(SITE_TIMEZONE).date()
        self._wanted = {
            group: encode_days(wanted_days(group_wishes, today, self.settings.check_horizon_days))
            for group, group_wishes in wishes.items()
        }
        self._synced_at = self._backoff_read_at = time.monotonic()
        return self._targets

    def wanted(self, group: tuple[str, int, int]) -> str:
        """The days anyone in ``group`` wants, encoded (empty: none in the horizon)."""
        return self._wanted.get(group, "")

    def budget(self, site: str) -> SiteBudget:
        if site not in self._budgets:
            self._budgets[site] = site_budget(self.client, self.settings, site)
        return self._budgets[site]

    def group_offices(self, group: tuple[str, int, int]) -> set[int]:
        return {o for t in self._targets if t.group == group for o in t.office_ids}

    def state(self, group: tuple[str, int, int], now_s: float | None) -> State:
        """The group's release state at ``now_s`` (None, or no plan: "normal")."""
        if self.plan is None or now_s is None:
            return "normal"
        return self.plan.state(group[1], self.group_offices(group), datetime.fromtimestamp(now_s, UTC))

    def _cost(self, group: tuple[str, int, int]) -> float:
        return self._round_cost.get(_cost_field(*group), 1.0)

    def interval_s(
        self, site: str, group: tuple[str, int, int] | None = None, now_s: float | None = None
    ) -> float:
        """Seconds between rounds of ``group`` (None: a group in the normal state) of ``site``.

        Each group's fair share of the budget is its round's cost over the costs of all the
        site's groups (a round costs what the group's last warm round cost; 1 until known). Groups
        in the cold state at ``now_s`` use a ``cold_factor``-th of their share; the rest of the
        budget goes to the hot and normal groups, a hot one weighing ``1 / hot_factor`` times a
        normal one (``worker.release_plan``). Never under the minimum interval.
        """
        assert self.min_interval_s is not None
        budget = self.settings.site_budget_per_minute
        groups = {t.group for t in self._targets if t.site == site}
        states = {g: self.state(g, now_s) for g in groups}
        own_state = "normal" if group is None else self.state(group, now_s)
        total = sum(self._cost(g) for g in groups) or 1.0
        if own_state == "cold" and self.plan is not None:
            return max(self.min_interval_s, 60.0 * total / budget * self.plan.cold_factor)
        cold = [g for g in groups if states[g] == "cold"]
        cold_use = (
            sum(self._cost(g) for g in cold) * budget / total / (self.plan.cold_factor if self.plan else 1)
        )
        weights = {g: 1.0 / self.plan.hot_factor if self.plan and states[g] == "hot" else 1.0 for g in groups}
        active = sum(self._cost(g) * weights[g] for g in groups if g not in cold)
        own_weight = 1.0 if group is None else weights.get(group, 1.0)
        return max(self.min_interval_s, 60.0 * active / ((budget - cold_use) * own_weight))

    def spacing_s(self, group: tuple[str, int, int]) -> float:
        """The least time between two dispatches to one site: the group's round cost at the
        budget's even rate, so a minute's checks are spread over it, not bunched at its start."""
        return 0.8 * 60.0 * self._cost(group) / self.settings.site_budget_per_minute

    def due_in_s(self, last_dispatch_s: float | None, interval_s: float, now_s: float) -> float:
        """Seconds until a target is due (negative: overdue by that much)."""
        if last_dispatch_s is None:
            return -1e9
        return last_dispatch_s + interval_s - now_s

    def requests_per_s(self, site: str, now_s: float) -> float:
        """The request rate the plan paces ``site`` at now: each group's round cost over its interval."""
        groups = {t.group for t in self._targets if t.site == site}
        return sum(self._cost(g) / self.interval_s(site, g, now_s) for g in groups)

    def holding_for_window(self, site: str, now_s: float) -> bool:
        """Whether ``site`` lets its request streak lapse now: a stated release window of one of its
        groups starts within ``PRE_WINDOW_HOLD_S``, and at the planned pace the current streak would
        reach the pause before that window ends. The city's counter then starts the window at
        zero, and MTA's mandatory 60 s pause falls right before it rather than inside it; a streak
        that lasts through the window is not cut short. Never inside a stated window."""
        if self.plan is None:
            return False
        now = datetime.fromtimestamp(now_s, UTC)
        groups = {t.group for t in self._targets if t.site == site}
        if any(self.plan.in_stated_window(self.group_offices(g), now) for g in groups):
            return False  # inside a window: no choice
        budget = self.budget(site)
        streak, pause_after = budget.streak(), budget.pause_after()
        if streak <= 0 or pause_after <= 0:
            return False
        for group in groups:
            window = self.plan.next_window(self.group_offices(group), now)
            if window is None or (window[0] - now).total_seconds() > PRE_WINDOW_HOLD_S:
                continue
            to_end_s = (window[1] - now).total_seconds()
            if streak + self.requests_per_s(site, now_s) * to_end_s >= pause_after:
                return True
        return False

    def window_stretch(self, site: str, now_s: float) -> float:
        """How many times its planned interval each round of ``site`` waits now, so that the
        request streak lasts to the end of the stated window the site is in (1: no stretch).

        Inside a window the plan checks at full pace, and rounds cost more once days open (1 +
        day requests), so 50 requests can run out before a window of two minutes ends: then the
        city's 60 s pause falls inside it, where a slot found a minute late hurts most. The
        stretch is the requests planned until the window ends over the streak's room, both read
        now, so a round that cost more than planned or a walk (a fresh session: page load,
        captcha, calendar) slows the rest of the window. It is taken only while the stretched
        rounds stay closer together than the pause lasts (a longer gap would cost more than the
        pause it avoids), so a long window (the city's are one or two hours, which no streak can
        last) keeps its pace and pauses when it must.
        """
        if self.plan is None:
            return 1.0
        now = datetime.fromtimestamp(now_s, UTC)
        groups = {t.group for t in self._targets if t.site == site}
        ends = [end for g in groups if (end := self.plan.window_end(self.group_offices(g), now)) is not None]
        if not ends:
            return 1.0
        budget = self.budget(site)
        pause_after = budget.pause_after()
        # rounds come whole and the pause comes at ``pause_after``: keep one round in hand, so
        # the last round the window has room for ends below the pause, not just starts below it
        left = pause_after - budget.streak()
        room = left - 1 - max(self._cost(g) for g in groups)
        rate = self.requests_per_s(site, now_s)
        to_end_s = (max(ends) - now).total_seconds()
        if pause_after <= 0 or room <= 0 or rate <= 0 or rate * to_end_s <= room:
            return 1.0  # no streak rule, the pause is due anyway, or the streak lasts
        stretch = rate * to_end_s / room
        longest_s = max(self.interval_s(site, g, now_s) for g in groups)
        if longest_s * stretch > STREAK_PAUSE_S:
            return 1.0  # rounds further apart than the pause lasts: the pause costs less
        return stretch

    def learn(self, now_s: float) -> None:
        """Take in when each service's slots appeared over the last four weeks (the release plan's
        learned hours); every ``learn_every_s``."""
        if self.plan is None:
            return
        since = datetime.fromtimestamp(now_s, UTC) - timedelta(days=28)
        services = {t.service_id for t in self._targets}
        with self.db.read() as session:
            rows = session.execute(
                select(Slot.service_id, Slot.first_seen_at).where(
                    Slot.first_seen_at >= since, Slot.service_id.in_(services)
                )
            ).all()
        seen: dict[int, list[datetime]] = {service: [] for service in services}
        for service_id, first_seen in rows:
            seen[service_id].append(ensure_utc(first_seen, "first_seen_at"))
        for service_id, moments in seen.items():
            self.plan.learn(service_id, moments)

    # --- one round -------------------------------------------------------------------------------
    def tick(self, now_s: float | None = None) -> list[int]:
        """Dispatch every due target the budgets allow, most overdue first; returns their ids."""
        now_s = time.time() if now_s is None else now_s
        if time.monotonic() - self._synced_at >= self.sync_interval_s:
            self.sync()
        elif time.monotonic() - self._backoff_read_at >= self.backoff_refresh_s:
            self._read_backoffs()
        if not self._targets:
            return []
        now_dt = datetime.fromtimestamp(now_s, UTC)
        if time.monotonic() - self._learned_at >= self.learn_every_s:
            self._learned_at = time.monotonic()
            self.learn(now_s)
        self.read_round_costs()
        raw = self.client.hmget(LAST_DISPATCH_KEY, [str(t.id) for t in self._targets])
        last = {t.id: (float(v) if v else None) for t, v in zip(self._targets, raw, strict=True)}
        sites = {t.site for t in self._targets}
        paused = {
            site
            for site in sites
            if site_paused_s(self.client, site) > 0
            or self.holding_for_window(site, now_s)
            or site_stopped(self.client, site)  # the operator's kill switch
        }
        stretch = {site: self.window_stretch(site, now_s) for site in sites - paused}
        candidates: list[tuple[float, TargetView]] = []
        for target in self._targets:
            if target.site in paused:
                continue
            if target.backoff_until is not None and target.backoff_until > now_dt:
                continue
            interval = self.interval_s(target.site, target.group, now_s) * stretch[target.site]
            due_in = self.due_in_s(last[target.id], interval, now_s)
            if due_in <= 0:
                candidates.append((due_in, target))
        candidates.sort(key=lambda item: item[0])
        dispatched: list[int] = []
        exhausted: set[str] = set()
        sent_groups: set[tuple[str, int, int]] = set()
        for _, target in candidates:
            if target.site in exhausted or target.group in sent_groups:
                continue
            if self.spread_checks and now_s < self._next_site_dispatch.get(target.site, float("-inf")):
                continue  # spread over the minute: this site's next dispatch comes later
            if self.client.exists(f"{INFLIGHT_PREFIX}{target.id}"):
                continue
            # the rest of the group rides along: not backing off, not in flight
            riders = [
                t.id
                for t in self._targets
                if t.group == target.group
                and t.id != target.id
                and not (t.backoff_until is not None and t.backoff_until > now_dt)
                and not self.client.exists(f"{INFLIGHT_PREFIX}{t.id}")
            ]
            if not self.budget(target.site).try_take():
                exhausted.add(target.site)
                continue
            dispatch_id = uuid.uuid4().hex
            keys = [f"{INFLIGHT_PREFIX}{i}" for i in (target.id, *riders)]
            for key in keys:
                self.client.set(key, dispatch_id, ex=self.inflight_ttl_s)
            try:
                self.send(target.id, dispatch_id, riders, self.wanted(target.group))
            except Exception:
                self.client.delete(*keys)
                raise
            self.client.hset(LAST_DISPATCH_KEY, mapping={str(i): now_s for i in (target.id, *riders)})
            sent_groups.add(target.group)
            dispatched.extend([target.id, *riders])
            jitter = self.rng.uniform(0, self.settings.check_jitter_s)
            self._next_site_dispatch[target.site] = now_s + self.spacing_s(target.group) + jitter
        if dispatched:
            self.dispatched_total += len(dispatched)
            self.last_dispatch_at = now_s
            log.debug("dispatched", targets=dispatched)
        return dispatched

    def read_round_costs(self) -> None:
        """What each group's last warm round cost, as the workers reported it (every tick)."""
        self._round_cost = {
            (k.decode() if isinstance(k, bytes) else str(k)): max(1.0, float(v))
            for k, v in cast(dict[Any, Any], self.client.hgetall(ROUND_COST_KEY)).items()
        }

    def _read_backoffs(self) -> None:
        """Workers record back-offs (429 reset times, maintenance); pick them up within a second."""
        with self.db.read() as session:
            rows = {
                target_id: until
                for target_id, until in session.execute(
                    select(Target.id, Target.backoff_until).where(Target.active.is_(True))
                ).all()
            }
        for target in self._targets:
            target.backoff_until = rows.get(target.id, target.backoff_until)
        self._backoff_read_at = time.monotonic()

    # --- the loop --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What this scheduler's heartbeat says."""
        assert self.leader is not None
        return {
            "leader": self.leader.is_leader,
            "targets": len(self._targets) if self.leader.is_leader else None,
            "dispatched_total": self.dispatched_total,
            "last_dispatch_at": self.last_dispatch_at,
            "lease_ms": self.leader.ttl_ms,
            "release_plan": self.plan_status() if self.leader.is_leader else None,
        }

    def plan_status(self, now_s: float | None = None) -> list[dict[str, Any]]:
        """Per group: its release state and interval now (the dashboard shows the plan)."""
        now_s = time.time() if now_s is None else now_s
        return [
            {
                "site": group[0],
                "service_id": group[1],
                "service_count": group[2],
                "state": self.state(group, now_s),
                "interval_s": round(
                    self.interval_s(group[0], group, now_s) * self.window_stretch(group[0], now_s), 1
                ),
                "holding_for_window": self.holding_for_window(group[0], now_s),
            }
            for group in sorted({t.group for t in self._targets})
        ]

    def run_due_jobs(self, now_s: float | None = None) -> list[str]:
        """Run the periodic jobs that are due; a failing job is logged and tried again next time."""
        now_s = time.monotonic() if now_s is None else now_s
        ran = []
        for job in self.jobs:
            if now_s < job.next_at:
                continue
            job.next_at = now_s + job.every_s
            try:
                job.run()
                ran.append(job.name)
            except Exception as exc:
                log.warning("scheduler_job_failed", job=job.name, error=f"{type(exc).__name__}: {exc}")
        return ran

    def run(self, stop: threading.Event, *, tick_s: float = 0.25) -> None:
        """Lead or stand by until ``stop`` is set; releases the lease on the way out.

        Redis or database trouble is logged and retried on the next tick: a scheduler that cannot
        renew its lease simply stops leading, and the lease runs out for a standby to take.
        """
        assert self.leader is not None
        was_leader = False
        next_beat = 0.0
        try:
            while not stop.is_set():
                try:
                    is_leader = self.leader.acquire_or_renew()
                except (redis.RedisError, OSError) as exc:
                    log.warning("scheduler_lease_failed", error=str(exc))
                    self.leader.is_leader = is_leader = False
                if is_leader != was_leader:
                    log.info("leadership", leader=is_leader, identity=self.leader.identity)
                    was_leader = is_leader
                    self._synced_at = float("-inf")
                if is_leader:
                    try:
                        self.tick()
                    except Exception as exc:  # a bad tick must not end the leader's loop
                        log.warning("scheduler_tick_failed", error=f"{type(exc).__name__}: {exc}")
                    self.run_due_jobs()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + heartbeat.INTERVAL_S
                    try:
                        heartbeat.beat(self.client, "scheduler", self.leader.identity, self.status())
                    except (redis.RedisError, OSError) as exc:
                        log.warning("heartbeat_failed", error=str(exc))
                stop.wait(tick_s)
        finally:
            try:
                self.leader.release()
                heartbeat.clear(self.client, "scheduler", self.leader.identity)
            except (redis.RedisError, OSError) as exc:
                log.warning("scheduler_release_failed", error=str(exc))


def mark_done(client: redis.Redis, target_id: int, *, not_before: datetime | None = None) -> None:
    """Called by the worker when a check finished, so the target can be dispatched again; with
    ``not_before`` (a back-off) not before then."""
    key = f"{INFLIGHT_PREFIX}{target_id}"
    until_ms = int(not_before.timestamp() * 1000) if not_before is not None else 0
    if until_ms > int(time.time() * 1000):
        client.set(key, "backoff", pxat=until_ms)
    else:
        client.delete(key)


def _cost_field(site: str, service_id: int, service_count: int) -> str:
    return f"{site}:{service_id}:{service_count}"


def note_round_cost(
    client: redis.Redis, site: str, service_id: int, service_count: int, requests: int
) -> None:
    """Called by the worker after a warm round: what it cost, so the scheduler spaces the group's
    rounds to fit the budget (a round's cost grows with the open days someone wants)."""
    client.hset(ROUND_COST_KEY, _cost_field(site, service_id, service_count), max(1, requests))


def pause_site(client: redis.Redis, site: str, until: datetime) -> None:
    """Stop dispatching any target of ``site`` until ``until`` (its 429 reset time); keeps a later
    pause already set."""
    key = f"{SITE_PAUSE_PREFIX}{site}"
    until_ms = int(until.timestamp() * 1000)
    remaining_ms = int(client.pttl(key))
    if until_ms > int(time.time() * 1000) + max(0, remaining_ms):
        client.set(key, until.isoformat(), pxat=until_ms)
        log.warning("site_paused", site=site, until=until.isoformat())


def site_paused_s(client: redis.Redis, site: str) -> float:
    """Seconds ``site`` stays paused (0 when it is not)."""
    return max(0, int(client.pttl(f"{SITE_PAUSE_PREFIX}{site}"))) / 1000
