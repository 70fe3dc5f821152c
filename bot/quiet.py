"""Quiet hours: when a person's slot alerts wait until morning, and when they still go out.

A person picks hours in Berlin time (e.g. 22:00–07:00, wrapping midnight). A slot alert that comes
due inside them is held until they end, unless the slot is on the day the quiet hours end or
earlier ("for tomorrow", seen from the evening): such a slot is gone by the time they wake, so it is
worth waking for. A held alert whose slot is gone by the morning is dropped rather than sent as
news of a loss. Booking progress and replies to their own actions are never held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from shared.domain import SITE_TIMEZONE

PRESETS: dict[str, tuple[time, time]] = {
    "22-7": (time(22, 0), time(7, 0)),
    "23-8": (time(23, 0), time(8, 0)),
    "21-9": (time(21, 0), time(9, 0)),
}
"""The /quiet buttons: key (callback argument) to (start, end)."""
HELD_KEY = "quiet_held"
"""Set in a held alert's payload, so the morning knows it waited."""


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def of(cls, start: time | None, end: time | None) -> QuietHours | None:
        return cls(start, end) if start is not None and end is not None and start != end else None

    def until(self, now: datetime) -> datetime | None:
        """The end of the quiet period ``now`` falls in (aware, Berlin); None when not quiet."""
        local = now.astimezone(SITE_TIMEZONE)
        clock = local.time()
        if self.start < self.end:
            inside = self.start <= clock < self.end
            end_day = local.date()
        else:  # wraps midnight
            inside = clock >= self.start or clock < self.end
            end_day = local.date() + timedelta(days=1) if clock >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, self.end, tzinfo=SITE_TIMEZONE)


def hold_until(quiet: QuietHours | None, slot_start: datetime, now: datetime) -> datetime | None:
    """When a slot alert due ``now`` may go out: None for now, else the end of the quiet hours."""
    if quiet is None:
        return None
    end = quiet.until(now)
    if end is None:
        return None
    if slot_start.astimezone(SITE_TIMEZONE).date() <= end.date():
        return None  # for tomorrow (or sooner): worth waking for
    return end


__all__ = ["HELD_KEY", "PRESETS", "QuietHours", "hold_until"]
