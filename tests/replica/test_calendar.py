"""available-calendar window semantics (spec §2.4a), through the real HTTP API."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from replica.calendar import build_calendar, dedupe_shared
from tests.replica.conftest import (
    DAY0,
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    ORLEANSPLATZ,
    PASING,
    RUPPERT,
    RUPPERT_AUSBILDUNG,
    WOHNSITZ,
    ReplicaServer,
    calendar_params,
    captcha_token,
)

NOV25, NOV27, DEC3, JAN5 = date(2026, 11, 25), date(2026, 11, 27), date(2026, 12, 3), date(2027, 1, 5)


@pytest.fixture
def stocked(site: ReplicaServer) -> ReplicaServer:
    """Free pickup slots on 25 and 27 November, 3 December and 5 January."""
    for day in (NOV25, NOV27, DEC3, JAN5):
        site.add_slots(FS_PICKUP_OFFICE, day, "08:00", "08:15")
    return site


def calendar(site: ReplicaServer, **kwargs: Any) -> dict[str, Any]:
    response = site.get("available-calendar/", **calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], **kwargs))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def days_of(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {d["date"]: d["offices"] for d in body["availableDays"]}


def test_single_empty_day_paints_its_month_and_loads_the_first_bookable_day(stocked: ReplicaServer) -> None:
    body = calendar(stocked, slots=DAY0)
    days = days_of(body)
    assert list(days) == ["2026-11-25", "2026-11-27"]
    assert days["2026-11-25"][0]["appointments"]
    assert days["2026-11-27"] == []
    assert body["prevBookableDate"] is None
    assert body["nextBookableDate"] == "2026-12-03"
    assert (body["slotsStartDate"], body["slotsEndDate"]) == ("2026-11-23", "2026-11-23")


def test_a_selected_day_gets_the_times(stocked: ReplicaServer) -> None:
    days = days_of(calendar(stocked, slots=NOV27))
    assert days["2026-11-25"] == []
    assert len(days["2026-11-27"]) == 1


def test_next_month(stocked: ReplicaServer) -> None:
    body = calendar(stocked, slots=DEC3)
    assert list(days_of(body)) == ["2026-12-03"]
    assert body["prevBookableDate"] == "2026-11-27"
    assert body["nextBookableDate"] == "2027-01-05"


def test_empty_day_in_a_month_with_bookable_days(stocked: ReplicaServer) -> None:
    days = days_of(calendar(stocked, slots=date(2026, 12, 20)))
    assert list(days) == ["2026-12-03"]
    assert days["2026-12-03"]  # the first bookable day of the month carries the times


def test_month_without_bookable_days_jumps_to_the_first_bookable_date(stocked: ReplicaServer) -> None:
    body = calendar(stocked, slots=date(2026, 12, 20), end=date(2027, 5, 1))
    assert list(days_of(body)) == ["2026-12-03"]
    body = calendar(stocked, slots=date(2027, 2, 10))
    assert list(days_of(body)) == ["2026-11-25", "2026-11-27"]
    assert body["slotsStartDate"] == "2026-11-25"


def test_lead_time_jump_forward(site: ReplicaServer) -> None:
    site.add_slots(FS_PICKUP_OFFICE, JAN5, "08:00")
    body = calendar(site, slots=DAY0)
    assert list(days_of(body)) == ["2027-01-05"]
    assert days_of(body)["2027-01-05"]
    assert body["prevBookableDate"] is None and body["nextBookableDate"] is None


def test_without_slot_parameters_all_months_come_back(stocked: ReplicaServer) -> None:
    body = calendar(stocked)
    days = days_of(body)
    assert list(days) == ["2026-11-25", "2026-11-27", "2026-12-03", "2027-01-05"]
    assert [bool(v) for v in days.values()] == [True, False, False, False]


def test_multi_day_window_loads_the_first_bookable_day_in_it(stocked: ReplicaServer) -> None:
    body = calendar(stocked, slots=(date(2026, 11, 26), date(2026, 12, 10)))
    days = days_of(body)
    assert list(days) == ["2026-11-25", "2026-11-27", "2026-12-03"]
    assert [bool(v) for v in days.values()] == [False, True, False]
    assert body["nextBookableDate"] == "2027-01-05"


def test_range_clamps_days_and_window(stocked: ReplicaServer) -> None:
    body = calendar(stocked, end=date(2026, 12, 31), slots=date(2027, 3, 1))
    assert body["slotsStartDate"] == "2026-12-31"
    assert list(days_of(body)) == ["2026-12-03"]
    assert body["nextBookableDate"] is None


def test_only_future_times_sorted_and_unique(site: ReplicaServer) -> None:
    early, later, latest = site.add_slots(FS_PICKUP_OFFICE, DAY0, "05:45", "06:15", "07:00")
    site.add_slots(FS_PICKUP_OFFICE, DAY0, "07:00", "06:15")  # again: no duplicates
    assert days_of(calendar(site, slots=DAY0))[DAY0.isoformat()][0]["appointments"] == [later, latest]
    site.advance(20 * 60)  # 06:20
    assert days_of(calendar(site, slots=DAY0))[DAY0.isoformat()][0]["appointments"] == [latest]
    site.advance(45 * 60)
    assert calendar(site, slots=DAY0)["availableDays"] == []
    assert early < later


def test_slots_restricted_to_other_services_are_not_offered(site: ReplicaServer) -> None:
    site.add_slots(FS_PICKUP_OFFICE, NOV25, "08:00", services=[1071854])
    assert calendar(site, slots=NOV25)["availableDays"] == []
    site.add_slots(FS_PICKUP_OFFICE, NOV25, "09:00", services=[FS_PICKUP])
    assert len(calendar(site, slots=NOV25)["availableDays"]) == 1


def test_several_offices(site: ReplicaServer) -> None:
    token = captcha_token(site)
    orleans = site.add_slots(ORLEANSPLATZ, NOV25, "09:00", "08:00")
    pasing = site.add_slots(PASING, NOV25, "08:00")
    site.add_slots(PASING, NOV27, "10:00")
    params = calendar_params([PASING, ORLEANSPLATZ], [WOHNSITZ], slots=NOV25, token=token)
    body = site.get("available-calendar/", **params).json()
    first, second = body["availableDays"]
    assert first["providerIDs"] == f"{PASING},{ORLEANSPLATZ}"
    assert first["offices"] == [
        {"officeId": str(PASING), "appointments": pasing},
        {"officeId": str(ORLEANSPLATZ), "appointments": sorted(orleans)},
    ]
    assert second == {"date": "2026-11-27", "providerIDs": str(PASING), "offices": []}


def test_shared_booking_offices_split_identical_times_round_robin(site: ReplicaServer) -> None:
    token = captcha_token(site)
    stamps = site.add_slots(RUPPERT, NOV25, "08:00", "08:15", "08:30", "08:45")
    site.add_slots(RUPPERT_AUSBILDUNG, NOV25, "08:00", "08:15", "08:30", "08:45", "09:00")
    params = calendar_params([RUPPERT, RUPPERT_AUSBILDUNG], [WOHNSITZ], slots=NOV25, token=token)
    offices = site.get("available-calendar/", **params).json()["availableDays"][0]["offices"]
    by_id = {o["officeId"]: o["appointments"] for o in offices}
    assert by_id[str(RUPPERT)] == [stamps[0], stamps[2]]
    assert by_id[str(RUPPERT_AUSBILDUNG)] == [stamps[1], stamps[3], stamps[3] + 900]


def test_build_calendar_unit() -> None:
    availability = {date(2026, 11, 25): {1: [3, 1, 1]}, date(2026, 12, 1): {1: [5]}}
    body = build_calendar(availability, [1], date(2026, 11, 23), date(2027, 5, 1), date(2026, 11, 23), None)
    assert body["availableDays"][0]["offices"] == [{"officeId": "1", "appointments": [1, 3]}]
    assert [d["date"] for d in body["availableDays"]] == ["2026-11-25", "2026-12-01"]
    assert dedupe_shared({1: [10, 20], 2: [10, 20], 3: [10]}, lambda o: (1, 2) if o in (1, 2) else None) == {
        1: [10],
        2: [20],
        3: [10],
    }
