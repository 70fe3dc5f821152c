"""The ``available-calendar`` window semantics (spec §2.4a, zmsbackend ``readAvailability``).

Given every bookable day in the range and the free times per office on it, build the response:

1. The slots window ``[slotsStartDate, slotsEndDate]`` is clamped to ``[startDate, endDate]``;
   without slots parameters it is the whole range.
2. The days returned ("painted") are the calendar month(s) containing the slots window, clamped to
   the range.
3. Free times are listed for one day only: the first bookable day inside the slots window, else
   (nothing free in the window) the first bookable day of the painted month(s). Other bookable
   days in the painted range carry ``offices: []``.
4. If the painted range has no bookable day, the window jumps to the first bookable day on or after
   the requested window (else the first bookable day in the range) and the month is repainted.
5. ``prevBookableDate`` / ``nextBookableDate``: the nearest bookable days outside the painted range.
6. Times are future only (the caller filters), sorted and de-duplicated per office.
7. Offices of one shared-booking group split identical timestamps round-robin.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _clamp(day: date, low: date, high: date) -> date:
    return min(max(day, low), high)


def dedupe_shared(
    offices: dict[int, list[int]], group_of: Callable[[int], tuple[int, ...] | None]
) -> dict[int, list[int]]:
    """Give each timestamp offered by several offices of one shared-booking group to one of them,
    taking the offices in turn (the city's round-robin); other offices keep all their times."""
    result = {oid: sorted(set(times)) for oid, times in offices.items()}
    groups: dict[tuple[int, ...], list[int]] = {}
    for oid in result:
        group = group_of(oid)
        if group is not None:
            groups.setdefault(group, []).append(oid)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort()
        owners: dict[int, list[int]] = {}
        for oid in members:
            for ts in result[oid]:
                owners.setdefault(ts, []).append(oid)
        turn = 0
        for ts in sorted(owners):
            candidates = owners[ts]
            if len(candidates) < 2:
                continue
            keep = candidates[turn % len(candidates)]
            turn += 1
            for oid in candidates:
                if oid != keep:
                    result[oid].remove(ts)
    return {oid: times for oid, times in result.items() if times}


def build_calendar(
    availability: dict[date, dict[int, list[int]]],
    office_order: Sequence[int],
    start: date,
    end: date,
    slots_start: date | None,
    slots_end: date | None,
    group_of: Callable[[int], tuple[int, ...] | None] = lambda _oid: None,
) -> dict[str, Any]:
    """The ``available-calendar`` body from ``availability`` (Berlin date -> office -> epochs)."""
    window_start = _clamp(slots_start or start, start, end)
    window_end = _clamp(slots_end or end, start, end)
    if window_end < window_start:
        window_end = window_start

    bookable = sorted(d for d, offices in availability.items() if start <= d <= end and any(offices.values()))

    def painted_range(ws: date, we: date) -> tuple[date, date]:
        return max(_month_start(ws), start), min(_month_end(we), end)

    painted_start, painted_end = painted_range(window_start, window_end)
    painted = [d for d in bookable if painted_start <= d <= painted_end]
    if not painted and bookable:
        target = next((d for d in bookable if d >= window_start), bookable[0])
        window_start = window_end = target
        painted_start, painted_end = painted_range(target, target)
        painted = [d for d in bookable if painted_start <= d <= painted_end]

    in_window = [d for d in painted if window_start <= d <= window_end]
    slot_day = in_window[0] if in_window else (painted[0] if painted else None)

    order = {oid: i for i, oid in enumerate(dict.fromkeys(office_order))}

    def ordered(oids: list[int]) -> list[int]:
        return sorted(oids, key=lambda oid: (order.get(oid, len(order)), oid))

    days: list[dict[str, Any]] = []
    for day in painted:
        offices = {oid: times for oid, times in availability[day].items() if times}
        entry: dict[str, Any] = {
            "date": day.isoformat(),
            "providerIDs": ",".join(str(oid) for oid in ordered(list(offices))),
            "offices": [],
        }
        if day == slot_day:
            split = dedupe_shared(offices, group_of)
            entry["offices"] = [
                {"officeId": str(oid), "appointments": split[oid]} for oid in ordered(list(split))
            ]
        days.append(entry)

    before = [d for d in bookable if d < painted_start]
    after = [d for d in bookable if d > painted_end]
    return {
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "slotsStartDate": window_start.isoformat(),
        "slotsEndDate": window_end.isoformat(),
        "prevBookableDate": before[-1].isoformat() if before else None,
        "nextBookableDate": after[0].isoformat() if after else None,
        "availableDays": days,
    }
