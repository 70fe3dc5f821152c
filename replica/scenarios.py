"""Scenario timelines: YAML files that script what happens on the replica's clock.

A scenario has a ``start`` and a list of events; each event fires once the replica clock passes its
time. The runner is driven by ``apply_due()``, which the app's ticker calls several times a second
and every API request calls first, so tests that move the clock see the events immediately.

Format (all keys but ``events`` optional)::

    name: morning-release
    description: ...
    start: "tomorrow 06:55"        # now | ISO datetime | today/tomorrow/next-weekday HH:MM (Berlin)
    freeze: false                  # true: the clock stands still unless advanced (tests)
    seed: 7                        # randomness of random releases and intervals
    settings: {rate_limit: 120, legacy_api: false, cancel_holdback_s: 300, captcha_enabled: true}
    events:
      - at: "+30s"                 # +duration from start | HH:MM[:SS] on the start day | ISO datetime
        every: "60s..120s"         # optional repeat interval (fixed or a random range)
        count: 10                  # optional number of firings (with every); else until "until"
        until: "+2h"
        release: {office: 102522, day: "D+1", time: "08:00", count: 4, step: "15m"}

Actions (one per event):

- ``release``: make slots free. ``office`` or ``offices``; ``services`` (``all``, default, or ids:
  the slots fit only those services); ``day`` (``D``, ``D+k`` from the event's local date,
  ``W+k`` the k-th working day, or ``YYYY-MM-DD``) or ``days: "D+1..D+14"`` (every day between;
  ``"W+1..W+10"``: the working days only, as the offices open Monday to Friday); then either
  ``times: [HH:MM, ...]``, or ``time`` + ``count`` + ``step`` ("n slots from HH:MM every 15m"),
  or ``random: n`` with ``between: "08:00-16:00"`` (n random slots on random days/offices).
  ``vanish_after`` (duration or range): a competing booker takes each released slot after that.
- ``remove``: ``office``/``offices``, optional ``day`` and ``times``: free slots vanish.
- ``take``: a competing booker takes ``office``/``day``/``time`` (``units`` consecutive units).
- ``rate_limit_storm``, ``maintenance``, ``error_500``, ``garbage``: ``duration`` (omitted = until
  cleared), optional ``endpoints``; ``slow``: ``ms`` plus the same. ``clear_faults``: names or all.
- ``layout_change``: ``layout_variant`` (read by the pages) and/or ``endpoint_rename`` (serve
  available-calendar under another name; ``available-calendar`` restores it).
- ``set``: ``rate_limit``, ``legacy_api``, ``captcha_enabled``, ``cancel_holdback_s``, ``page_url``.
"""

from __future__ import annotations

import heapq
import random
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from replica.clock import BERLIN
from replica.state import FAULT_NAMES, UNIT_S, ReplicaState, berlin_ts
from shared.logging import get_logger

log = get_logger("replica.scenarios")

ACTIONS = (
    "release", "remove", "take", "rate_limit_storm", "maintenance", "slow", "error_500", "garbage",
    "clear_faults", "layout_change", "set",
)  # fmt: skip
_FAULT_OF_ACTION = {
    "rate_limit_storm": "storm",
    "maintenance": "maintenance",
    "slow": "slow",
    "error_500": "error_500",
    "garbage": "garbage",
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DAY_RE = re.compile(r"^([DW])\s*(?:\+\s*(\d+))?$")
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


class ScenarioError(ValueError):
    """The scenario file is malformed; the message says where."""


def shipped_dir() -> Path:
    return Path(str(resources.files("replica").joinpath("scenarios")))


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a shipped scenario (``demo``, ``quiet-day`` ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_dir() / f"{path.stem}.yaml"
    if shipped.is_file():
        return shipped
    raise ScenarioError(f"no scenario {str(name_or_path)!r}; shipped: {', '.join(shipped_scenarios())}")


# --- small parsers -------------------------------------------------------------------------------
def parse_duration_s(value: object) -> float:
    """``30``, ``"30s"``, ``"2m"``, ``"1h30m"``, ``"1500ms"`` -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(f"not a duration: {value!r}")
    text = value.strip().lstrip("+")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION_RE.findall(text)
    if not parts or _DURATION_RE.sub("", text).strip():
        raise ScenarioError(f"not a duration: {value!r} (use e.g. 30s, 2m, 1h30m, 1500ms)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * scale[unit] for n, unit in parts)


def parse_duration_range(value: object) -> tuple[float, float]:
    if isinstance(value, str) and ".." in value:
        low, high = value.split("..", 1)
        a, b = parse_duration_s(low), parse_duration_s(high)
        return (min(a, b), max(a, b))
    d = parse_duration_s(value)
    return (d, d)


def parse_clock_time(value: object) -> time:
    match = _TIME_RE.match(str(value).strip())
    if not match:
        raise ScenarioError(f"not a time of day: {value!r} (use HH:MM)")
    return time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=BERLIN)


def _next_working_day(day: date, k: int) -> date:
    """``W+0``: the day itself if Mon-Fri, else the next Monday; ``W+k``: k working days later."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    while k > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            k -= 1
    return day


def parse_day(value: object, today: date) -> date:
    if isinstance(value, date):
        return value
    text = str(value).strip()
    match = _DAY_RE.match(text)
    if match:
        k = int(match.group(2) or 0)
        return today + timedelta(days=k) if match.group(1) == "D" else _next_working_day(today, k)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ScenarioError(f"not a day: {value!r} (use D, D+3, W+1 or YYYY-MM-DD)") from None


def parse_days(value: object, today: date) -> list[date]:
    if isinstance(value, list):
        return [parse_day(v, today) for v in value]
    text = str(value)
    if ".." in text:
        ends = [p.strip() for p in text.split("..", 1)]
        low, high = (parse_day(p, today) for p in ends)
        days = [low + timedelta(days=i) for i in range((high - low).days + 1)]
        if all(end.startswith("W") for end in ends):
            days = [d for d in days if d.weekday() < 5]
        return days
    return [parse_day(text, today)]


def parse_start(value: object, now: datetime) -> datetime:
    """``now``, an ISO datetime (naive = Berlin), or ``today|tomorrow|next-weekday HH:MM``."""
    if value is None or value == "now":
        return now
    if isinstance(value, datetime):
        return _aware(value)
    text = str(value).strip()
    local_today = now.astimezone(BERLIN).date()
    words = text.split()
    if len(words) == 2 and words[0] in ("today", "tomorrow", "next-weekday"):
        day = {
            "today": local_today,
            "tomorrow": local_today + timedelta(days=1),
            "next-weekday": _next_working_day(local_today + timedelta(days=1), 0),
        }[words[0]]
        return datetime.combine(day, parse_clock_time(words[1]), BERLIN)
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise ScenarioError(f"not a start: {value!r}") from None


def parse_at(value: object, start: datetime) -> datetime:
    """``+30s`` from the start, ``HH:MM`` on the start day (Berlin), or an ISO datetime."""
    if value is None:
        return start
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, int | float):
        return start + timedelta(seconds=float(value))
    text = str(value).strip()
    if text.startswith("+"):
        return start + timedelta(seconds=parse_duration_s(text))
    if _TIME_RE.match(text):
        return datetime.combine(start.astimezone(BERLIN).date(), parse_clock_time(text), BERLIN)
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise ScenarioError(f"not an event time: {value!r}") from None


# --- the scenario --------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    description: str
    start: object
    freeze: bool
    seed: int | None
    settings: dict[str, Any]
    events: list[dict[str, Any]]

    @classmethod
    def from_yaml(cls, text: str, name: str = "scenario") -> Scenario:
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ScenarioError(f"{name}: the top level must be a mapping")
        events = data.get("events") or []
        if not isinstance(events, list):
            raise ScenarioError(f"{name}: events must be a list")
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise ScenarioError(f"{name}: event {index} must be a mapping")
            actions = [k for k in event if k in ACTIONS]
            unknown = [
                k for k in event if k not in ACTIONS and k not in ("at", "every", "count", "until", "label")
            ]
            if len(actions) != 1 or unknown:
                raise ScenarioError(
                    f"{name}: event {index} needs exactly one action of {', '.join(ACTIONS)}"
                    + (f"; unknown keys {unknown}" if unknown else "")
                )
        settings = data.get("settings") or {}
        if not isinstance(settings, dict):
            raise ScenarioError(f"{name}: settings must be a mapping")
        return cls(
            name=str(data.get("name") or name),
            description=str(data.get("description") or ""),
            start=data.get("start"),
            freeze=bool(data.get("freeze", False)),
            seed=int(data["seed"]) if data.get("seed") is not None else None,
            settings=settings,
            events=events,
        )

    @classmethod
    def load(cls, name_or_path: str | Path) -> Scenario:
        path = resolve_scenario(name_or_path)
        return cls.from_yaml(path.read_text(encoding="utf-8"), path.stem)


@dataclass(order=True)
class _Pending:
    due: datetime
    seq: int
    index: int = field(compare=False)
    action: str = field(compare=False)
    params: Any = field(compare=False)
    every: tuple[float, float] | None = field(compare=False, default=None)
    remaining: int | None = field(compare=False, default=None)
    until: datetime | None = field(compare=False, default=None)
    label: str = field(compare=False, default="")


class ScenarioRunner:
    """Applies a scenario's events to the state as the replica clock passes them."""

    def __init__(self, state: ReplicaState, scenario: Scenario, *, start: datetime | None = None) -> None:
        self.state = state
        self.scenario = scenario
        self.rng = random.Random(scenario.seed if scenario.seed is not None else state.config.seed)
        self.start = start or parse_start(scenario.start, state.clock.now())
        self.fired: list[dict[str, Any]] = []
        self._queue: list[_Pending] = []
        self._seq = 0
        if start is not None or scenario.start not in (None, "now"):
            state.clock.set(self.start)
        if scenario.freeze:
            state.clock.freeze()
        self._apply_set(scenario.settings)
        for index, raw in enumerate(scenario.events):
            action = next(k for k in raw if k in ACTIONS)
            every = parse_duration_range(raw["every"]) if raw.get("every") is not None else None
            self._push(
                _Pending(
                    due=parse_at(raw.get("at"), self.start),
                    seq=0,
                    index=index,
                    action=action,
                    params=raw[action] if raw[action] is not None else {},
                    every=every,
                    remaining=int(raw["count"]) if raw.get("count") is not None else None,
                    until=parse_at(raw["until"], self.start) if raw.get("until") is not None else None,
                    label=str(raw.get("label") or action),
                )
            )

    def _push(self, item: _Pending) -> None:
        self._seq += 1
        item.seq = self._seq
        heapq.heappush(self._queue, item)

    # --- driving ---------------------------------------------------------------------------------
    def apply_due(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Fire every event due at or before ``now`` (default: the clock), in time order."""
        limit = now or self.state.clock.now()
        fired: list[dict[str, Any]] = []
        with self.state.lock:
            while self._queue and self._queue[0].due <= limit:
                item = heapq.heappop(self._queue)
                try:
                    result = self._apply(item)
                except (ScenarioError, KeyError, TypeError, ValueError) as exc:
                    # a bad event is reported where the scenario's results are, not as a 500 to a client
                    log.warning(
                        "scenario event failed",
                        scenario=self.scenario.name,
                        event_index=item.index,
                        error=str(exc),
                    )
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                record = {
                    "at": item.due.isoformat(),
                    "index": item.index,
                    "action": item.action,
                    "label": item.label,
                    "result": result,
                }
                fired.append(record)
                self.fired.append(record)
                self._reschedule(item)
        return fired

    def _reschedule(self, item: _Pending) -> None:
        if item.every is None:
            return
        remaining = item.remaining - 1 if item.remaining is not None else None
        if remaining is not None and remaining <= 0:
            return
        low, high = item.every
        step = self.rng.uniform(low, high) if high > low else low
        due = item.due + timedelta(seconds=max(step, 0.001))
        if item.until is not None and due > item.until:
            return
        self._push(
            _Pending(
                due, 0, item.index, item.action, item.params, item.every, remaining, item.until, item.label
            )
        )

    def pending(self) -> list[dict[str, Any]]:
        return [
            {"at": p.due.isoformat(), "index": p.index, "action": p.action, "label": p.label}
            for p in sorted(self._queue)
        ]

    def status(self) -> dict[str, Any]:
        return {
            "name": self.scenario.name,
            "description": self.scenario.description,
            "start": self.start.isoformat(),
            "fired": self.fired[-200:],
            "firedCount": len(self.fired),
            "pending": self.pending()[:200],
        }

    # --- actions ---------------------------------------------------------------------------------
    def _apply(self, item: _Pending) -> Any:
        params = item.params
        if item.action == "release":
            return self._release(params, item.due)
        if item.action == "remove":
            return self._remove(params, item.due)
        if item.action == "take":
            return self._take(params, item.due)
        if item.action in _FAULT_OF_ACTION:
            return self._fault(_FAULT_OF_ACTION[item.action], params, item.due)
        if item.action == "clear_faults":
            names = (
                params
                if isinstance(params, list)
                else (params.get("names") if isinstance(params, dict) else None)
            )
            if not names or names == "all":
                self.state.clear_fault()
            else:
                for name in names:
                    self.state.clear_fault(_FAULT_OF_ACTION.get(name, name))
            return {"cleared": names or "all"}
        if item.action == "layout_change":
            return self._layout(params)
        if item.action == "set":
            return self._apply_set(params)
        raise ScenarioError(f"unknown action {item.action}")

    def _offices(self, params: dict[str, Any]) -> list[int]:
        if "offices" in params:
            return [int(o) for o in params["offices"]]
        if "office" in params:
            return [int(params["office"])]
        raise ScenarioError("an event needs office or offices")

    def _services(self, params: dict[str, Any]) -> list[int] | None:
        services = params.get("services", params.get("service", "all"))
        if services in (None, "all"):
            return None
        return [int(s) for s in (services if isinstance(services, list) else [services])]

    def _times_for(self, params: dict[str, Any], day: date) -> list[int]:
        if "times" in params:
            clock_times = [parse_clock_time(t) for t in params["times"]]
        elif "time" in params:
            first = parse_clock_time(params["time"])
            step_s = parse_duration_s(params.get("step", "15m"))
            count = int(params.get("count", 1))
            clock_times = [
                (datetime.combine(day, first) + timedelta(seconds=step_s * i)).time() for i in range(count)
            ]
        else:
            return []
        return [berlin_ts(day, t.hour, t.minute) + t.second for t in clock_times]

    def _release(self, params: dict[str, Any], due: datetime) -> dict[str, Any]:
        today = due.astimezone(BERLIN).date()
        offices = self._offices(params)
        services = self._services(params)
        picks: list[tuple[int, int]] = []
        if "random" in params:
            days = parse_days(params.get("days", params.get("day", "D+1")), today)
            low, high = str(params.get("between", "08:00-16:00")).split("-", 1)
            t_low, t_high = parse_clock_time(low), parse_clock_time(high)
            step_min = int(parse_duration_s(params.get("step", "15m")) // 60) or 15
            minutes = list(range(t_low.hour * 60 + t_low.minute, t_high.hour * 60 + t_high.minute, step_min))
            for _ in range(int(params["random"])):
                day = self.rng.choice(days)
                minute = self.rng.choice(minutes)
                picks.append((self.rng.choice(offices), berlin_ts(day, minute // 60, minute % 60)))
        else:
            days = parse_days(params.get("days", params.get("day", "D")), today)
            for office in offices:
                for day in days:
                    picks += [(office, ts) for ts in self._times_for(params, day)]
        added: dict[int, list[int]] = {}
        for office in dict.fromkeys(o for o, _ in picks):
            added[office] = self.state.add_slots(office, [ts for o, ts in picks if o == office], services)
        if params.get("vanish_after") is not None:
            low_s, high_s = parse_duration_range(params["vanish_after"])
            for office, stamps in added.items():
                for ts in stamps:
                    delay = self.rng.uniform(low_s, high_s) if high_s > low_s else low_s
                    self._push(
                        _Pending(
                            due + timedelta(seconds=delay), 0, -1, "take",
                            {"office": office, "timestamp": ts}, label="vanish",
                        )
                    )  # fmt: skip
        return {"added": {str(o): len(v) for o, v in added.items()}}

    def _stamps(self, params: dict[str, Any], due: datetime) -> list[int] | None:
        if "timestamp" in params:
            return [int(params["timestamp"])]
        if "timestamps" in params:
            return [int(t) for t in params["timestamps"]]
        if "day" in params and ("time" in params or "times" in params):
            day = parse_day(params["day"], due.astimezone(BERLIN).date())
            return self._times_for(params, day)
        return None

    def _remove(self, params: dict[str, Any], due: datetime) -> dict[str, Any]:
        offices = self._offices(params) if ("office" in params or "offices" in params) else [None]
        stamps = self._stamps(params, due)
        day = (
            parse_day(params["day"], due.astimezone(BERLIN).date())
            if "day" in params and stamps is None
            else None
        )
        removed = 0
        for office in offices:
            removed += len(self.state.remove_slots(office, stamps, day))
        return {"removed": removed}

    def _take(self, params: dict[str, Any], due: datetime) -> dict[str, Any]:
        office = self._offices(params)[0]
        stamps = self._stamps(params, due) or []
        units = int(params.get("units", 1))
        taken = [ts for ts in stamps if self.state.take(office, ts, units)]
        return {"taken": len(taken), "missed": len(stamps) - len(taken)}

    def _fault(self, name: str, params: Any, due: datetime) -> dict[str, Any]:
        params = params if isinstance(params, dict) else {}
        if params.get("off"):
            self.state.clear_fault(name)
            return {"fault": name, "off": True}
        duration = parse_duration_s(params["duration"]) if params.get("duration") is not None else None
        window = self.state.set_fault(
            name,
            duration_s=duration,
            endpoints=params.get("endpoints"),
            value=int(params.get("ms", 0)),
            start=due,
        )
        return {"fault": name, **window.to_dict()}

    def _layout(self, params: dict[str, Any]) -> dict[str, Any]:
        if "layout_variant" in params:
            self.state.layout_variant = str(params["layout_variant"])
        if "endpoint_rename" in params:
            self.state.calendar_path = str(params["endpoint_rename"]).strip("/")
        return {"layoutVariant": self.state.layout_variant, "calendarPath": self.state.calendar_path}

    def _apply_set(self, params: dict[str, Any]) -> dict[str, Any]:
        state = self.state
        for key, value in params.items():
            if key == "rate_limit":
                state.ratelimiter.limit = int(value)
            elif key == "legacy_api":
                state.legacy_api = bool(value)
            elif key == "captcha_enabled":
                state.captcha_enabled = bool(value)
            elif key == "cancel_holdback_s":
                state.cancel_holdback_s = parse_duration_s(value)
            elif key == "page_url":
                state.page_url = str(value)
            else:
                raise ScenarioError(f"unknown setting {key!r}")
        return dict(params)


def load_into(
    state: ReplicaState, source: str | Path | Scenario, *, start: datetime | None = None
) -> ScenarioRunner:
    """Load a scenario (name, path or parsed) into the state, replacing any running one."""
    scenario = source if isinstance(source, Scenario) else Scenario.load(source)
    with state.lock:
        runner = ScenarioRunner(state, scenario, start=start)
        state.scenario = runner
    runner.apply_due()
    return runner


__all__ = [
    "FAULT_NAMES",
    "UNIT_S",
    "Scenario",
    "ScenarioError",
    "ScenarioRunner",
    "load_into",
    "parse_duration_s",
    "resolve_scenario",
    "shipped_scenarios",
]
