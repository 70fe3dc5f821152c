"""Contract tests: every citizen-API endpoint's shape, key names and key types (spec §2)."""

from __future__ import annotations

from datetime import timedelta

from replica.config import API_PREFIX
from tests.replica.conftest import (
    DAY0,
    EINBUERGERUNG,
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    FS_UMSCHREIBUNG,
    NOTFALL_V5,
    ORLEANSPLATZ,
    PASING,
    REISEPASS,
    RUPPERT,
    WOHNSITZ,
    ReplicaServer,
    calendar_params,
    error_codes,
)

SECURITY = ("X-Frame-Options", "X-Content-Type-Options", "Strict-Transport-Security",
            "Content-Security-Policy", "Referrer-Policy", "Permissions-Policy")  # fmt: skip
OFFICE_KEYS = {
    "id", "name", "address", "showAlternativeLocations", "displayNameAlternatives", "organization",
    "organizationUnit", "slotTimeInMinutes", "geo", "disabledByServices", "priority", "scope",
    "slotsPerAppointment", "parentId", "allowDisabledServicesMix", "sharedBookingOfficeIds",
}  # fmt: skip
SCOPE_KEYS = {
    "id", "provider", "shortName", "emailFrom", "emailRequired", "telephoneActivated", "telephoneRequired",
    "customTextfieldActivated", "customTextfieldRequired", "customTextfieldLabel",
    "customTextfield2Activated", "customTextfield2Required", "customTextfield2Label",
    "captchaActivatedRequired", "infoForAppointment", "infoForAllAppointments", "slotsPerAppointment",
    "appointmentsPerMail", "whitelistedMails", "reservationDuration", "activationDuration", "hint",
}  # fmt: skip
PROCESS_KEYS = {
    "processId", "timestamp", "authKey", "familyName", "customTextfield", "customTextfield2", "email",
    "telephone", "officeName", "officeId", "scope", "subRequestCounts", "serviceId", "serviceName",
    "serviceCount", "status", "captchaToken", "slotCount", "displayNumber", "icsContent",
}  # fmt: skip


def test_offices_and_services_shape(site: ReplicaServer) -> None:
    response = site.get("offices-and-services/", serviceId=WOHNSITZ, locationId=ORLEANSPLATZ)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    for name in SECURITY:
        assert name in response.headers
    assert "last-modified" in response.headers
    body = response.json()
    assert set(body) == {"offices", "services", "relations"}
    offices = {o["id"]: o for o in body["offices"]}
    orleans = offices[ORLEANSPLATZ]
    assert set(orleans) == OFFICE_KEYS
    assert orleans["name"] == "Bürgerbüro Orleansplatz"
    assert isinstance(orleans["id"], int)
    assert set(orleans["address"]) == {"street", "house_number", "postal_code", "city", "hint"}
    assert isinstance(orleans["geo"]["lat"], str) and isinstance(orleans["geo"]["lon"], str)
    assert orleans["organization"] == "Landeshauptstadt München"
    assert orleans["priority"] == 90
    scope = orleans["scope"]
    assert set(scope) == SCOPE_KEYS
    assert scope["captchaActivatedRequired"] is True
    assert (scope["reservationDuration"], scope["activationDuration"]) == (15, 30)
    assert scope["appointmentsPerMail"] == "3"
    assert scope["emailRequired"] is True
    assert set(scope["provider"]) == {"id", "name", "displayName", "lat", "lon", "source", "contact"}
    assert scope["provider"]["source"] == "dldb"
    assert offices[RUPPERT]["sharedBookingOfficeIds"] == [10489, 10503, 10500, 10491]


def test_scope_settings_per_office_group(site: ReplicaServer) -> None:
    offices = {o["id"]: o for o in site.get("offices-and-services/").json()["offices"]}
    fs = offices[FS_UMSCHREIBUNG]["scope"]
    assert (fs["captchaActivatedRequired"], fs["reservationDuration"], fs["activationDuration"]) == (
        False,
        15,
        60,
    )
    assert (fs["customTextfieldActivated"], fs["customTextfieldRequired"]) == (True, True)
    assert fs["customTextfieldLabel"] == "Geburtsdatum"
    notfall = offices[NOTFALL_V5]["scope"]
    assert notfall["captchaActivatedRequired"] is True
    assert (notfall["reservationDuration"], notfall["activationDuration"]) == (10, 15)
    assert offices[10461]["scope"]["captchaActivatedRequired"] is True
    assert offices[10462]["scope"]["captchaActivatedRequired"] is False
    einb = offices[EINBUERGERUNG]["scope"]
    assert (einb["reservationDuration"], einb["activationDuration"]) == (5, 15)
    assert einb["customTextfieldRequired"] is True
    assert einb["customTextfieldLabel"].startswith("Fallnummer")
    for oid in (PASING, 102524, 102526, 102523, RUPPERT, 10502):
        assert offices[oid]["scope"]["captchaActivatedRequired"] is True


def test_services_and_relations(site: ReplicaServer) -> None:
    body = site.get("offices-and-services/").json()
    services = {s["id"]: s for s in body["services"]}
    assert [s["id"] for s in body["services"]] == sorted(services)
    wohnsitz = services[WOHNSITZ]
    assert set(wohnsitz) == {
        "id", "name", "maxQuantity", "combinable", "parentId", "variantId", "rootParentId", "showOnStartPage",
    }  # fmt: skip
    assert wohnsitz["name"] == "Wohnsitzanmeldung" and wohnsitz["maxQuantity"] == 3
    assert isinstance(wohnsitz["combinable"], dict)
    assert all(isinstance(v, dict) for v in wohnsitz["combinable"].values())
    assert ORLEANSPLATZ in wohnsitz["combinable"][str(WOHNSITZ)][str(WOHNSITZ)]
    relation = next(
        r for r in body["relations"] if (r["officeId"], r["serviceId"]) == (ORLEANSPLATZ, WOHNSITZ)
    )
    assert set(relation) == {"officeId", "serviceId", "slots", "public", "maxQuantity"}
    assert relation["slots"] == 1 and relation["public"] is True
    # non-public entries are hidden: the KP office at Riesenfeldstraße and the Aufenthalt services
    assert 10204388 not in {o["id"] for o in body["offices"]}
    assert 1089337 not in services
    # passport services are booked on the Pass calendar 10502, not on 10489
    pairs = {(r["officeId"], r["serviceId"]) for r in body["relations"]}
    assert (RUPPERT, REISEPASS) not in pairs and (10502, REISEPASS) in pairs
    assert all(r["public"] for r in body["relations"])


def test_available_calendar_shape(site: ReplicaServer) -> None:
    day = DAY0 + timedelta(days=2)
    stamps = site.add_slots(FS_PICKUP_OFFICE, day, "08:30", "08:00", "08:15")
    response = site.get("available-calendar/", **calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], slots=DAY0))
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["startDate", "endDate", "slotsStartDate", "slotsEndDate", "prevBookableDate",
                          "nextBookableDate", "availableDays"]  # fmt: skip
    (entry,) = body["availableDays"]
    assert entry == {
        "date": day.isoformat(),
        "providerIDs": str(FS_PICKUP_OFFICE),
        "offices": [{"officeId": str(FS_PICKUP_OFFICE), "appointments": sorted(stamps)}],
    }


def test_multi_unit_service_needs_consecutive_units(site: ReplicaServer) -> None:
    """Umschreibung takes 20 min: two 15-minute units, so three units give two start times."""
    day = DAY0 + timedelta(days=2)
    stamps = site.add_slots(FS_UMSCHREIBUNG, day, "08:00", "08:15", "08:30", "11:00")
    body = site.get("available-calendar/", **calendar_params([FS_UMSCHREIBUNG], [1071944], slots=day)).json()
    assert body["availableDays"][0]["offices"][0]["appointments"] == stamps[:2]
    body = site.get(
        "available-calendar/", **calendar_params([FS_UMSCHREIBUNG], [1071944], [2], slots=day)
    ).json()
    assert body["availableDays"] == []


def test_empty_calendar_is_200(site: ReplicaServer) -> None:
    response = site.get("available-calendar/", **calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], slots=DAY0))
    assert response.status_code == 200
    assert response.json()["availableDays"] == []
    assert response.json()["prevBookableDate"] is None and response.json()["nextBookableDate"] is None


def test_captcha_details(site: ReplicaServer) -> None:
    body = site.get("captcha-details/").json()
    assert set(body) == {"siteKey", "captchaChallenge", "captchaVerify", "captchaEnabled"}
    assert body["captchaEnabled"] is True


def test_captcha_challenge_is_unwrapped_v2(site: ReplicaServer) -> None:
    body = site.get("captcha-challenge/").json()
    assert set(body) == {"parameters", "signature"}
    assert list(body["parameters"]) == [
        "algorithm", "nonce", "salt", "cost", "keyLength", "keyPrefix",
        "keySignature", "memoryCost", "parallelism", "expiresAt", "data",
    ]  # fmt: skip
    assert body["parameters"]["algorithm"] == "SHA-256"
    assert body["parameters"]["expiresAt"] == int(site.state.clock.timestamp()) + 300


def test_reserve_response_types(site: ReplicaServer) -> None:
    (ts,) = site.add_slots(FS_PICKUP_OFFICE, DAY0 + timedelta(days=1), "09:00")
    response = site.post(
        "reserve-appointment/",
        {"timestamp": ts, "officeId": FS_PICKUP_OFFICE, "serviceId": [FS_PICKUP], "serviceCount": [1]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == PROCESS_KEYS
    assert isinstance(body["processId"], int)
    assert body["timestamp"] == str(ts)
    assert isinstance(body["officeId"], int) and body["officeId"] == FS_PICKUP_OFFICE
    assert len(body["authKey"]) == 64 and int(body["authKey"], 16) >= 0
    assert body["status"] == "reserved"
    assert body["serviceId"] == FS_PICKUP and body["serviceCount"] == 1 and body["subRequestCounts"] == []
    assert body["serviceName"] == "Abholung von Führerscheinen"
    assert body["officeName"] == "Führerscheinstelle"
    assert body["scope"]["provider"]["id"] == FS_PICKUP_OFFICE
    assert body["slotCount"] == 1
    assert body["captchaToken"] is None


def test_my_appointments_needs_login(site: ReplicaServer) -> None:
    response = site.get("my-appointments/")
    assert response.status_code == 401
    response = site.get("my-appointments/", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 403
    assert error_codes(response) == ["unauthorized"]


def test_slashless_paths_and_unknown_routes_are_not_found(site: ReplicaServer) -> None:
    for path in ("offices-and-services", "captcha-details", "available-days-by-office/", "nope/", "a/b/", ""):
        response = site.api("GET", path)
        assert response.status_code == 404, path
        assert error_codes(response) == ["notFound"]
        assert response.json()["errors"][0]["statusCode"] == 404
    assert site.client.get(API_PREFIX).status_code == 404


def test_wrong_method_is_405(site: ReplicaServer) -> None:
    assert site.post("offices-and-services/", {}).status_code == 405
    response = site.get("reserve-appointment/")
    assert response.status_code == 405
    assert error_codes(response) == ["requestMethodNotAllowed"]
    assert site.api("DELETE", "appointment/").status_code == 405


def test_error_body_shape(site: ReplicaServer) -> None:
    response = site.get("appointment/", processId="1", authKey="abcd")
    assert response.status_code == 404
    (error,) = response.json()["errors"]
    assert error == {
        "errorCode": "appointmentNotFound",
        "errorMessage": error["errorMessage"],
        "statusCode": 404,
        "errorType": "error",
    }
    assert "already canceled" in error["errorMessage"]
