"""Which days of the booking horizon anyone wants: the contract between scheduler and worker.

The city's calendar answer lists the bookable days of the months its slot window reaches, but free
times for one day per request (fact sheet §2.4a). A check round therefore asks for times day by
day, and a day nobody's date window or weekdays cover is not worth a request to the city. The
scheduler reads the active subscriptions of a (site, service, count) group, turns their windows
into the concrete days between today and the horizon (``wanted_days``), and sends them with the
check as compact ranges (``encode_days`` / ``decode_days``: "2026-12-07..2026-12-20,2027-01-04").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

HORIZON_DAYS = 183
"""How far ahead the city's page asks (today + 6 months, zmscitizenview's calendar request)."""


@dataclass(frozen=True)
class DayWish:
    """One subscription's date filters: inclusive window (None: open) and weekdays (0 = Monday;
    empty: any)."""

    date_from: date | None
    date_to: date | None
    weekdays: frozenset[int] = frozenset()

    def wants(self, day: date) -> bool:
        if self.date_from is not None and day < self.date_from:
            return False
        if self.date_to is not None and day > self.date_to:
            return False
        return not self.weekdays or day.weekday() in self.weekdays


def wanted_days(wishes: Iterable[DayWish], today: date, horizon_days: int = HORIZON_DAYS) -> frozenset[date]:
    """Every day from ``today`` to ``today + horizon_days`` that at least one wish covers."""
    wishes = list(set(wishes))
    days = (today + timedelta(days=offset) for offset in range(horizon_days + 1))
    return frozenset(day for day in days if any(wish.wants(day) for wish in wishes))


def encode_days(days: Iterable[date]) -> str:
    """Sorted days as comma-separated ISO dates and ``first..last`` runs."""
    ordered = sorted(set(days))
    parts: list[str] = []
    start = previous = None
    for day in [*ordered, None]:
        if day is not None and previous is not None and day == previous + timedelta(days=1):
            previous = day
            continue
        if start is not None and previous is not None:
            run = f"{start.isoformat()}..{previous.isoformat()}"
            parts.append(start.isoformat() if start == previous else run)
        start = previous = day
    return ",".join(parts)


def decode_days(text: str) -> frozenset[date]:
    """The inverse of ``encode_days``; raises ``ValueError`` on anything else."""
    days: set[date] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("..")
        start = date.fromisoformat(first)
        end = date.fromisoformat(last) if last else start
        if end < start:
            raise ValueError(f"range runs backwards: {part!r}")
        days.update(start + timedelta(days=i) for i in range((end - start).days + 1))
    return frozenset(days)


__all__ = ["HORIZON_DAYS", "DayWish", "decode_days", "encode_days", "wanted_days"]
