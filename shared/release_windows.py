"""The city's stated release windows, read from data (``shared/data/release-windows.yaml``).

Facts about the site, not policy: which office groups release new appointments on which weekdays
at which local times. The scheduler's release-aware plan (``worker.release_plan``) uses them.
A file given in ``MTA_RELEASE_WINDOWS_FILE`` replaces the shipped one; a malformed file is a
``ValueError`` naming what is wrong, raised at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import yaml

BUILT_IN = Path(__file__).parent / "data" / "release-windows.yaml"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ReleaseWindow:
    """One stated window: on ``weekdays`` (0 = Monday), from ``start`` to ``end`` (Berlin time)."""

    group: str
    offices: frozenset[int]
    weekdays: frozenset[int]
    start: clock_time
    end: clock_time
    what: str = ""

    def contains(self, local: datetime, lead: timedelta = timedelta(0)) -> bool:
        """Whether ``local`` (aware, Berlin) lies in this window or ``lead`` before it."""
        shifted = local + lead
        for moment in (local, shifted):
            if moment.weekday() in self.weekdays and self.start <= moment.time() < self.end:
                return True
        return False

    def next_start(self, local: datetime) -> datetime:
        """The next start of this window after ``local`` (within a week)."""
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            start = datetime.combine(day, self.start, tzinfo=local.tzinfo)
            if start > local and day.weekday() in self.weekdays:
                return start
        raise ValueError(f"release window {self.group!r} has no weekday")


@dataclass(frozen=True)
class ReleaseWindows:
    windows: tuple[ReleaseWindow, ...]
    lead_s: float = 120.0
    """Checks speed up this long before a window starts."""

    def for_offices(self, offices: frozenset[int] | set[int]) -> tuple[ReleaseWindow, ...]:
        return tuple(w for w in self.windows if w.offices & offices)


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in str(text).lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"unknown weekday in {text!r} (use mon..sun, ranges like mon-fri)")
        a, b = _DAYS.index(first), _DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _clock(value: Any, what: str) -> clock_time:
    try:
        return clock_time.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{what} is not a time of day (HH:MM): {value!r}") from None


def load_release_windows(path: str | Path | None = None) -> ReleaseWindows:
    """The windows in ``path`` (empty or None: the shipped file)."""
    source = Path(path) if path else BUILT_IN
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"release windows file {source} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"release windows file {source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise ValueError(f"release windows file {source} needs a 'groups' list")
    windows: list[ReleaseWindow] = []
    for group in data["groups"]:
        name = str(group.get("name", "?"))
        offices = frozenset(int(o) for o in group.get("offices") or [])
        if not offices:
            raise ValueError(f"release window group {name!r} names no offices")
        for entry in group.get("windows") or []:
            start = _clock(entry.get("from"), f"{name}: 'from'")
            end = _clock(entry.get("to"), f"{name}: 'to'")
            if end <= start:
                raise ValueError(f"{name}: window ends before it starts ({start}-{end})")
            windows.append(
                ReleaseWindow(
                    name, offices, _weekdays(entry.get("days", "")), start, end, str(entry.get("what", ""))
                )
            )
    return ReleaseWindows(tuple(windows), float(data.get("lead_s", 120)))


__all__ = ["BUILT_IN", "ReleaseWindow", "ReleaseWindows", "load_release_windows"]
