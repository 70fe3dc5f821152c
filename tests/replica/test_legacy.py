"""The <= muc45 API generation (spec §2.2, §2.4b), served when legacy mode is on."""

from __future__ import annotations

from datetime import date

import pytest

from replica.app import create_app
from replica.config import ReplicaConfig
from tests.replica.conftest import (
    DAY0,
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    ORLEANSPLATZ,
    PASING,
    WOHNSITZ,
    ReplicaServer,
    calendar_params,
    captcha_token,
    error_codes,
)

NOV25, NOV27 = date(2026, 11, 25), date(2026, 11, 27)


@pytest.fixture
def legacy(site: ReplicaServer) -> ReplicaServer:
    site.control("POST", "faults", json={"legacy_api": True})
    return site


def days_params(offices: list[int], services: list[int], token: str | None = None) -> dict[str, str]:
    params = {
        "startDate": DAY0.isoformat(),
        "endDate": "2027-05-23",
        "officeId": ",".join(map(str, offices)),
        "serviceId": ",".join(map(str, services)),
        "serviceCount": ",".join("1" for _ in services),
    }
    if token:
        params["captchaToken"] = token
    return params


def test_config_switches_legacy_mode_on() -> None:
    app = create_app(ReplicaConfig(legacy_api=True))
    assert app.state.replica.legacy_api is True


def test_available_calendar_is_gone_and_slashless_paths_work(legacy: ReplicaServer) -> None:
    params = calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], slots=DAY0)
    response = legacy.get("available-calendar/", **params)
    assert (response.status_code, error_codes(response)) == (404, ["notFound"])
    assert legacy.get("offices-and-services").status_code == 200
    assert legacy.get("offices-and-services/").status_code == 200


def test_available_days_by_office(legacy: ReplicaServer) -> None:
    response = legacy.get("available-days-by-office/", **days_params([FS_PICKUP_OFFICE], [FS_PICKUP]))
    assert (response.status_code, error_codes(response)) == (404, ["noAppointmentForThisDay"])
    assert response.json()["errors"][0]["errorType"] == "info"
    legacy.add_slots(FS_PICKUP_OFFICE, NOV27, "08:00")
    legacy.add_slots(FS_PICKUP_OFFICE, NOV25, "08:00")
    response = legacy.get("available-days-by-office/", **days_params([FS_PICKUP_OFFICE], [FS_PICKUP]))
    assert response.status_code == 200
    assert response.json() == {
        "availableDays": [
            {"time": "2026-11-25", "providerIDs": str(FS_PICKUP_OFFICE)},
            {"time": "2026-11-27", "providerIDs": str(FS_PICKUP_OFFICE)},
        ]
    }
    response = legacy.get("available-days", **days_params([FS_PICKUP_OFFICE], [FS_PICKUP]))
    assert response.json() == {"availableDays": ["2026-11-25", "2026-11-27"]}


def test_available_appointments_by_office(legacy: ReplicaServer) -> None:
    params = {
        "date": "2026-11-25",
        "officeId": str(FS_PICKUP_OFFICE),
        "serviceId": str(FS_PICKUP),
        "serviceCount": "1",
    }
    response = legacy.get("available-appointments-by-office/", **params)
    assert (response.status_code, error_codes(response)) == (404, ["appointmentNotAvailable"])
    stamps = legacy.add_slots(FS_PICKUP_OFFICE, NOV25, "09:00", "08:00")
    response = legacy.get("available-appointments-by-office/", **params)
    assert response.json() == {"offices": [{"officeId": FS_PICKUP_OFFICE, "appointments": sorted(stamps)}]}
    assert isinstance(response.json()["offices"][0]["officeId"], int)
    response = legacy.get("available-appointments/", **params)
    assert response.json() == {"appointmentTimestamps": sorted(stamps)}
    response = legacy.get("available-appointments-by-office/", **{**params, "date": "25.11.2026"})
    assert (response.status_code, error_codes(response)) == (400, ["invalidDate"])


def test_legacy_availability_checks_the_captcha(legacy: ReplicaServer) -> None:
    legacy.add_slots(ORLEANSPLATZ, NOV25, "08:00")
    legacy.add_slots(PASING, NOV25, "08:30")
    response = legacy.get("available-days-by-office/", **days_params([ORLEANSPLATZ, PASING], [WOHNSITZ]))
    assert error_codes(response) == ["captchaMissing"]
    token = captcha_token(legacy)
    response = legacy.get(
        "available-days-by-office/", **days_params([ORLEANSPLATZ, PASING], [WOHNSITZ], token)
    )
    assert response.json() == {
        "availableDays": [{"time": "2026-11-25", "providerIDs": f"{ORLEANSPLATZ},{PASING}"}]
    }


def test_old_catalogue_routes(legacy: ReplicaServer) -> None:
    assert len(legacy.get("services/").json()["services"]) > 100
    offices = legacy.get("offices/").json()["offices"]
    assert any(o["id"] == ORLEANSPLATZ for o in offices)
    scopes = legacy.get("scopes/").json()["scopes"]
    scope_id = next(o["scope"]["id"] for o in offices if o["id"] == ORLEANSPLATZ)
    assert any(s["id"] == scope_id for s in scopes)
    assert legacy.get("scope-by-id/", scopeId=scope_id).json()["provider"]["id"] == ORLEANSPLATZ
    assert error_codes(legacy.get("scope-by-id/", scopeId="x")) == ["invalidScopeId"]
    services = legacy.get("services-by-office/", officeId=FS_PICKUP_OFFICE).json()["services"]
    assert FS_PICKUP in {s["id"] for s in services}
    offices = legacy.get("offices-by-service/", serviceId=FS_PICKUP).json()["offices"]
    assert [o["id"] for o in offices] == [FS_PICKUP_OFFICE]


def test_current_mode_has_no_legacy_routes(site: ReplicaServer) -> None:
    for path in ("available-days-by-office/", "services/", "offices/", "scopes/", "available-appointments/"):
        assert site.get(path).status_code == 404, path
