"""Release-aware pacing: spend each site's budget where slots appear.

Each (service, count) group is, at any moment, in one of three states:

- ``hot``: inside one of the city's stated release windows for one of its offices (from ``lead``
  before its start; ``shared.release_windows``), or in a weekday-hour in which MTA itself has seen
  many of the service's slots appear (its own history, ``learn``);
- ``cold``: none of that, and at night (before 6, from 20 o'clock) or at a weekend, when offices
  are closed and nobody releases anything;
- ``normal``: the rest.

The scheduler (``Scheduler.interval_s``) gives a cold group a ``cold_factor``-th of its fair share
of the site's budget (its rounds come four times less often by default) and splits the rest among
the hot and normal groups, a hot one weighing ``1 / hot_factor`` (two) times a normal one; never
under the minimum interval. When a stated window is about to start and the site's current request
streak would reach the pause before the window ends, the scheduler lets the streak lapse first
(``Scheduler.holding_for_window``), so that the city's mandatory 60 s pause falls right before the
window and the window starts with a fresh streak. Inside a window whose end the streak would not
reach at the planned pace (rounds cost more once days open, a session may be walked afresh), the
rounds are spaced further apart so that it does (``Scheduler.window_stretch``), as long as they stay
closer together than the pause would last.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from shared.domain import SITE_TIMEZONE
from shared.release_windows import ReleaseWindows

State = Literal["hot", "normal", "cold"]
NIGHT_FROM_H = 20
NIGHT_UNTIL_H = 6
LEARN_MIN_SLOTS = 3
"""A weekday-hour needs at least this many slots first seen in it to count as hot."""
LEARN_SHARE = 4.0
"""... and this many times its even share of the service's slots (a week has 168 hours)."""


@dataclass
class ReleasePlan:
    windows: ReleaseWindows
    hot_factor: float = 0.5
    cold_factor: float = 4.0
    learned: dict[int, frozenset[tuple[int, int]]] = field(default_factory=dict)
    """Service id -> hot (weekday, hour) cells from MTA's own history."""

    def state(self, service_id: int, offices: Iterable[int], now: datetime) -> State:
        local = now.astimezone(SITE_TIMEZONE)
        lead = timedelta(seconds=self.windows.lead_s)
        if any(w.contains(local, lead) for w in self.windows.for_offices(set(offices))):
            return "hot"
        if (local.weekday(), local.hour) in self.learned.get(service_id, frozenset()):
            return "hot"
        if local.weekday() >= 5 or local.hour >= NIGHT_FROM_H or local.hour < NIGHT_UNTIL_H:
            return "cold"
        return "normal"

    def in_stated_window(self, offices: Iterable[int], now: datetime) -> bool:
        """Whether ``now`` lies inside a stated window of ``offices`` (its lead not counted)."""
        local = now.astimezone(SITE_TIMEZONE)
        return any(w.contains(local) for w in self.windows.for_offices(set(offices)))

    def window_end(self, offices: Iterable[int], now: datetime) -> datetime | None:
        """The end of the stated window of ``offices`` that ``now`` lies in (of overlapping ones,
        the latest), or None outside them."""
        local = now.astimezone(SITE_TIMEZONE)
        ends = [
            datetime.combine(local.date(), window.end, tzinfo=local.tzinfo)
            for window in self.windows.for_offices(set(offices))
            if window.contains(local)
        ]
        return max(ends) if ends else None

    def next_window(self, offices: Iterable[int], now: datetime) -> tuple[datetime, datetime] | None:
        """The next stated window of ``offices`` to start after ``now``: (start, end), its lead not
        counted (the earliest start; of equal starts, the longest), or None."""
        local = now.astimezone(SITE_TIMEZONE)
        found: list[tuple[datetime, datetime]] = []
        for window in self.windows.for_offices(set(offices)):
            start = window.next_start(local)
            found.append((start, datetime.combine(start.date(), window.end, tzinfo=start.tzinfo)))
        return min(found, key=lambda w: (w[0], -w[1].timestamp())) if found else None

    def learn(self, service_id: int, first_seen: Iterable[datetime]) -> frozenset[tuple[int, int]]:
        """Take in when the service's slots were first seen; keep the weekday-hours that stand out."""
        cells = Counter(
            (local.weekday(), local.hour) for local in (t.astimezone(SITE_TIMEZONE) for t in first_seen)
        )
        total = sum(cells.values())
        threshold = max(LEARN_MIN_SLOTS, LEARN_SHARE * total / 168)
        hot = frozenset(cell for cell, count in cells.items() if count >= threshold)
        self.learned[service_id] = hot
        return hot


__all__ = ["ReleasePlan", "State"]
