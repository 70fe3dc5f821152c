"""Validation rules and error codes of the availability and reserve endpoints (spec §2.4a, §2.5, §2.10)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.replica.conftest import (
    DAY0,
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    ORLEANSPLATZ,
    WOHNSITZ,
    ReplicaServer,
    calendar_params,
    error_codes,
)

GOOD = calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], slots=DAY0)


def calendar_errors(site: ReplicaServer, **changes: str | None) -> tuple[int, list[str]]:
    params = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    response = site.get("available-calendar/", **params)
    return response.status_code, error_codes(response) if response.status_code != 200 else []


def test_missing_everything(site: ReplicaServer) -> None:
    response = site.get("available-calendar/")
    assert response.status_code == 400
    assert error_codes(response) == [
        "invalidStartDate", "invalidEndDate", "invalidOfficeId", "invalidServiceId", "invalidServiceCount",
    ]  # fmt: skip


@pytest.mark.parametrize("value", ["2026-2-01", "2026-02-30", "tomorrow", "", "2026-11-23T00:00"])
def test_strict_dates(site: ReplicaServer, value: str) -> None:
    assert calendar_errors(site, startDate=value) == (400, ["invalidStartDate"])
    assert calendar_errors(site, endDate=value) == (400, ["invalidEndDate"])


def test_start_after_end_and_too_long_ranges_are_unknown_errors(site: ReplicaServer) -> None:
    status, codes = calendar_errors(site, startDate="2026-12-01", endDate="2026-11-30")
    assert (status, codes) == (520, ["unknownError"])
    response = site.get(
        "available-calendar/", **{**GOOD, "endDate": (DAY0 + timedelta(days=366)).isoformat()}
    )
    assert response.status_code == 520
    (error,) = response.json()["errors"]
    assert (error["errorCode"], error["statusCode"]) == ("unknownError", 520)
    assert calendar_errors(site, endDate=(DAY0 + timedelta(days=365)).isoformat())[0] == 200


def test_http_status_is_the_highest(site: ReplicaServer) -> None:
    status, codes = calendar_errors(site, startDate="2026-12-01", endDate="2026-11-30", officeIds="x")
    assert status == 520
    assert codes == ["unknownError", "invalidOfficeId"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"officeIds": "abc"}, ["invalidOfficeId"]),
        ({"officeIds": "0"}, ["invalidOfficeId"]),
        ({"officeIds": "1,,2"}, ["invalidOfficeId"]),
        ({"serviceIds": "x"}, ["invalidServiceId"]),
        ({"serviceCounts": "0"}, ["invalidServiceCount"]),
        ({"serviceCounts": "26"}, ["invalidServiceCount"]),
        ({"serviceCounts": "1.5"}, ["invalidServiceCount"]),
        ({"serviceCounts": "1,1"}, ["MISMATCHED_ARRAYS"]),
        ({"serviceIds": f"{FS_PICKUP},1071854"}, ["MISMATCHED_ARRAYS"]),
        ({"slotsStartDate": "2026-13-01"}, ["invalidSlotsStartDate"]),
        ({"slotsEndDate": "x"}, ["invalidSlotsEndDate"]),
        ({"slotsStartDate": "2026-11-30", "slotsEndDate": "2026-11-29"}, ["slotsStartDateAfterEndDate"]),
    ],
)
def test_parameter_errors(site: ReplicaServer, changes: dict[str, str], expected: list[str]) -> None:
    assert calendar_errors(site, **changes) == (400, expected)


def test_counts_from_1_to_25_are_fine(site: ReplicaServer) -> None:
    assert calendar_errors(site, serviceCounts="25")[0] == 200
    assert calendar_errors(site, serviceCounts="1")[0] == 200


@pytest.mark.parametrize(
    ("offices", "services"),
    [
        (str(FS_PICKUP_OFFICE), str(WOHNSITZ)),  # not offered there
        (f"{FS_PICKUP_OFFICE},{ORLEANSPLATZ}", str(FS_PICKUP)),  # one of the offices does not offer it
        ("999999", str(FS_PICKUP)),  # unknown office
        ("10204388", "10295182"),  # non-public office
        (str(ORLEANSPLATZ), "1089337"),  # non-public service
    ],
)
def test_bad_office_service_combinations(site: ReplicaServer, offices: str, services: str) -> None:
    assert calendar_errors(site, officeIds=offices, serviceIds=services) == (
        400,
        ["invalidLocationAndServiceCombination"],
    )


def reserve(site: ReplicaServer, **body: object) -> tuple[int, list[str]]:
    response = site.post("reserve-appointment/", body)
    return response.status_code, error_codes(response) if response.status_code != 200 else []


def test_reserve_validation(site: ReplicaServer) -> None:
    (ts,) = site.add_slots(FS_PICKUP_OFFICE, DAY0 + timedelta(days=1), "08:00")
    good = {"timestamp": ts, "officeId": FS_PICKUP_OFFICE, "serviceId": [FS_PICKUP], "serviceCount": [1]}
    assert reserve(site, **{**good, "officeId": "x"}) == (400, ["invalidOfficeId"])
    assert reserve(site, **{**good, "officeId": 0}) == (400, ["invalidOfficeId"])
    assert reserve(site, **{**good, "serviceId": ["a"]}) == (400, ["invalidServiceId"])
    assert reserve(site, **{**good, "serviceId": [], "serviceCount": []}) == (400, ["EMPTY_SERVICE_ARRAYS"])
    assert reserve(site, **{**good, "serviceCount": [1, 1]}) == (400, ["MISMATCHED_ARRAYS"])
    assert reserve(site, **{**good, "serviceCount": [26]}) == (400, ["invalidServiceCount"])
    assert reserve(site, **{**good, "serviceCount": [0]}) == (400, ["invalidServiceCount"])
    assert reserve(site, **{**good, "timestamp": "soon"}) == (400, ["invalidTimestamp"])
    past = int(site.state.clock.timestamp()) - 60
    assert reserve(site, **{**good, "timestamp": past}) == (400, ["invalidTimestamp"])
    assert reserve(site, **{**good, "serviceId": [WOHNSITZ]}) == (
        400,
        ["invalidLocationAndServiceCombination"],
    )
    assert reserve(site, **{**good, "timestamp": ts + 60}) == (404, ["appointmentNotAvailable"])
    response = site.api(
        "POST", "reserve-appointment/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, error_codes(response)) == (400, ["invalidRequest"])
    assert reserve(site, **good)[0] == 200
    assert reserve(site, **good) == (404, ["appointmentNotAvailable"])  # lost the race to ourselves


def test_reserve_accepts_numeric_strings(site: ReplicaServer) -> None:
    (ts,) = site.add_slots(FS_PICKUP_OFFICE, DAY0 + timedelta(days=1), "08:00")
    body = {
        "timestamp": str(ts),
        "officeId": str(FS_PICKUP_OFFICE),
        "serviceId": [str(FS_PICKUP)],
        "serviceCount": ["1"],
    }
    assert reserve(site, **body)[0] == 200


def test_reserve_needs_enough_units_for_the_count(site: ReplicaServer) -> None:
    day = DAY0 + timedelta(days=1)
    ts, _second = site.add_slots(FS_PICKUP_OFFICE, day, "08:00", "08:15")
    body = {"timestamp": ts, "officeId": FS_PICKUP_OFFICE, "serviceId": [FS_PICKUP], "serviceCount": [3]}
    assert reserve(site, **body) == (404, ["appointmentNotAvailable"])
    response = site.post("reserve-appointment/", {**body, "serviceCount": [2]})
    assert response.status_code == 200
    assert response.json()["slotCount"] == 2
