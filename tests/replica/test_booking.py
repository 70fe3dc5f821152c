"""The booking state machine: reserve, update, preconfirm, confirm, cancel, expiry, mails (spec §2.5-§2.9)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from replica.mails import process_hash
from tests.replica.conftest import (
    DAY0,
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    ORLEANSPLATZ,
    WOHNSITZ,
    ReplicaServer,
    calendar_params,
    captcha_token,
    error_codes,
)

DAY1 = DAY0 + timedelta(days=1)
CUSTOMER = {
    "familyName": "Erika Mustermann",
    "email": "erika@example.org",
    "telephone": "+491511234567",
    "customTextfield": "01.02.1990",
    "customTextfield2": "",
}


def reserve_pickup(site: ReplicaServer, time: str = "08:00") -> dict[str, Any]:
    (ts,) = site.add_slots(FS_PICKUP_OFFICE, DAY1, time)
    response = site.post(
        "reserve-appointment/",
        {"timestamp": ts, "officeId": FS_PICKUP_OFFICE, "serviceId": [FS_PICKUP], "serviceCount": [1]},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def creds(process: dict[str, Any]) -> dict[str, Any]:
    return {"processId": process["processId"], "authKey": process["authKey"]}


def update(site: ReplicaServer, process: dict[str, Any], **changes: Any) -> Any:
    return site.post(
        "update-appointment/", {**creds(process), "scope": process["scope"], **CUSTOMER, **changes}
    )


def pickup_free(site: ReplicaServer) -> list[int]:
    body = site.get(
        "available-calendar/", **calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], slots=DAY1)
    ).json()
    return [ts for d in body["availableDays"] for o in d["offices"] for ts in o["appointments"]]


def test_the_whole_walk(site: ReplicaServer) -> None:
    process = reserve_pickup(site)
    assert pickup_free(site) == []
    updated = update(site, process)
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "reserved"
    assert updated.json()["familyName"] == "Erika Mustermann"
    assert updated.json()["customTextfield"] == "01.02.1990"

    pre = site.post("preconfirm-appointment/", {**creds(process), "scope": process["scope"]})
    assert pre.status_code == 200
    assert pre.json()["status"] == "preconfirmed"
    (mail,) = site.control("GET", "mail")
    assert mail["to"] == "erika@example.org"
    assert mail["kind"] == "activation"
    (link,) = mail["links"]
    assert link["text"] == "Termin aktivieren"
    page = f"{site.base_url}/buergerservice/terminvereinbarung.html"
    assert (
        link["url"] == f"{page}#/appointment/confirm/{process_hash(process['processId'], process['authKey'])}"
    )
    decoded = json.loads(base64.b64decode(link["url"].rsplit("/", 1)[1]))
    assert decoded == {"id": process["processId"], "authKey": process["authKey"]}
    assert "60 Minuten" in mail["body"]  # the Führerscheinstelle's activation window

    confirmed = site.post("confirm-appointment/", decoded | {"processId": decoded["id"]})
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["status"] == "confirmed"
    assert isinstance(body["captchaToken"], str) and body["captchaToken"].count(".") == 2
    assert body["displayNumber"] and body["icsContent"].startswith("BEGIN:VCALENDAR")
    confirmation = site.control("GET", "mail", params={"kind": "confirmation"})[0]
    assert confirmation["links"][0]["text"] == "Termin ändern/stornieren"
    assert confirmation["links"][0]["url"].startswith(f"{page}#/appointment/ey")
    assert confirmation["ics"].startswith("BEGIN:VCALENDAR")

    again = site.post("confirm-appointment/", creds(process))
    assert (again.status_code, error_codes(again)) == (409, ["processNotPreconfirmedAnymore"])
    read = site.get("appointment/", processId=process["processId"], authKey=process["authKey"], scope=1)
    assert read.status_code == 200
    assert read.json()["status"] == "confirmed"
    assert read.json()["captchaToken"]

    cancelled = site.post("cancel-appointment/", creds(process))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert [m["kind"] for m in site.control("GET", "mail")] == ["activation", "confirmation", "cancellation"]
    gone = site.get("appointment/", processId=process["processId"], authKey=process["authKey"])
    assert (gone.status_code, error_codes(gone)) == (404, ["appointmentNotFound"])


def test_cancelled_slot_returns_only_after_the_hold_back(site: ReplicaServer) -> None:
    process = reserve_pickup(site)
    assert site.post("cancel-appointment/", creds(process)).status_code == 200
    assert site.control("GET", "mail") == []  # no mail for a mere reservation
    assert pickup_free(site) == []
    site.advance(599)
    assert pickup_free(site) == []
    site.advance(2)
    assert pickup_free(site) == [int(process["timestamp"])]


def test_reservation_expires_and_frees_the_slot(site: ReplicaServer) -> None:
    process = reserve_pickup(site)
    site.advance(15 * 60 - 1)
    assert update(site, process).status_code == 200
    site.advance(2)
    assert pickup_free(site) == [int(process["timestamp"])]
    late = update(site, process)
    assert (late.status_code, error_codes(late)) == (409, ["processNotReservedAnymore"])
    late = site.post("preconfirm-appointment/", creds(process))
    assert (late.status_code, error_codes(late)) == (409, ["processNotReservedAnymore"])
    assert site.get("appointment/", **creds(process)).status_code == 404
    assert site.post("confirm-appointment/", creds(process)).status_code == 409


def test_preconfirmation_expires(site: ReplicaServer) -> None:
    process = reserve_pickup(site)
    update(site, process)
    site.post("preconfirm-appointment/", creds(process))
    site.advance(60 * 60 + 1)
    response = site.post("confirm-appointment/", creds(process))
    assert (response.status_code, error_codes(response)) == (400, ["preconfirmationExpired"])
    assert pickup_free(site) == [int(process["timestamp"])]
    assert site.get("appointment/", **creds(process)).status_code == 404


def test_credentials(site: ReplicaServer) -> None:
    process = reserve_pickup(site)
    wrong = {"processId": process["processId"], "authKey": "0" * 64}
    for endpoint in (
        "update-appointment/",
        "preconfirm-appointment/",
        "confirm-appointment/",
        "cancel-appointment/",
    ):
        response = site.post(endpoint, {**wrong, **CUSTOMER})
        assert (response.status_code, error_codes(response)) == (406, ["authKeyMismatch"]), endpoint
    response = site.post("confirm-appointment/", {"processId": 99999, "authKey": "abcd"})
    assert (response.status_code, error_codes(response)) == (404, ["appointmentNotFound"])
    response = site.post("confirm-appointment/", {"processId": "x", "authKey": "xyz"})
    assert (response.status_code, error_codes(response)) == (400, ["invalidProcessId", "invalidAuthKey"])
    response = site.get("appointment/", processId=process["processId"], authKey="abc")
    assert error_codes(response) == ["invalidAuthKey"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"familyName": "  "}, ["invalidFamilyName"]),
        ({"email": "erika+mta@example.org"}, ["invalidEmail"]),
        ({"email": "erika@example"}, ["invalidEmail"]),
        ({"email": ""}, ["invalidEmail"]),
        ({"email": "erika..m@example.org"}, ["invalidEmail"]),
        ({"telephone": "0151-123"}, ["invalidTelephone"]),
        ({"customTextfield": ""}, ["invalidCustomTextfield"]),
        ({"customTextfield": "x" * 251}, ["invalidCustomTextfield"]),
        ({"customTextfield2": "x" * 251}, ["invalidCustomTextfield2"]),
        ({"familyName": "", "email": "a+b@c.de"}, ["invalidFamilyName"]),
    ],
)
def test_update_validation(site: ReplicaServer, changes: dict[str, str], expected: list[str]) -> None:
    response = update(site, reserve_pickup(site), **changes)
    assert (response.status_code, error_codes(response)) == (400, expected)


def test_update_accepts_an_empty_optional_phone_and_250_characters(site: ReplicaServer) -> None:
    response = update(site, reserve_pickup(site), telephone="", customTextfield="x" * 250)
    assert response.status_code == 200, response.text
    assert response.json()["telephone"] is None


def test_too_many_appointments_with_the_same_mail(site: ReplicaServer) -> None:
    token = captcha_token(site)
    stamps = site.add_slots(ORLEANSPLATZ, DAY1, "08:00", "08:15", "08:30", "08:45")
    processes = []
    for ts in stamps:
        response = site.post(
            "reserve-appointment/",
            {"timestamp": ts, "officeId": ORLEANSPLATZ, "serviceId": [WOHNSITZ], "serviceCount": [1],
             "captchaToken": token},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        processes.append(response.json())
    for process in processes[:3]:
        assert update(site, process, customTextfield="").status_code == 200
    fourth = update(site, processes[3], customTextfield="", email="ERIKA@example.org")
    assert (fourth.status_code, error_codes(fourth)) == (406, ["tooManyAppointmentsWithSameMail"])
    assert update(site, processes[3], customTextfield="", email="max@example.org").status_code == 200
    # a cancelled appointment no longer counts
    site.post("cancel-appointment/", creds(processes[0]))
    assert update(site, processes[3], customTextfield="", email="erika@example.org").status_code == 200


def test_cancel_only_in_the_future(site: ReplicaServer) -> None:
    process = reserve_pickup(site, "06:30")  # tomorrow 06:30
    update(site, process)
    site.post("preconfirm-appointment/", creds(process))
    site.post("confirm-appointment/", creds(process))
    site.advance(25 * 3600)
    response = site.post("cancel-appointment/", creds(process))
    assert (response.status_code, error_codes(response)) == (406, ["appointmentCanNotBeCanceled"])


def test_mailbox_for_people_and_page_url_override(site: ReplicaServer) -> None:
    site.control("POST", "faults", json={"page_url": "https://stadt.example/termin.html"})
    process = reserve_pickup(site)
    update(site, process)
    site.post("preconfirm-appointment/", creds(process))
    (mail,) = site.control("GET", "mail")
    assert mail["links"][0]["url"].startswith("https://stadt.example/termin.html#/appointment/confirm/")
    page = site.client.get("/_replica/mail", params={"format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert ">Termin aktivieren</a>" in page.text
    site.control("DELETE", "mail")
    assert site.control("GET", "mail") == []


def test_multi_service_reservation(site: ReplicaServer) -> None:
    token = captcha_token(site)
    stamps = site.add_slots(ORLEANSPLATZ, DAY1, "08:00", "08:15", "08:30")
    response = site.post(
        "reserve-appointment/",
        {"timestamp": stamps[0], "officeId": ORLEANSPLATZ, "serviceId": [WOHNSITZ, 1063453],
         "serviceCount": [2, 1], "captchaToken": token},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["serviceCount"] == 2 and body["slotCount"] == 3
    assert body["subRequestCounts"] == [{"id": 1063453, "name": "Reisepass", "count": 1}]


def test_concurrent_reservations_of_one_slot(site: ReplicaServer) -> None:
    """Eight clients race for one slot: exactly one wins, the others lose with appointmentNotAvailable."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    (ts,) = site.add_slots(FS_PICKUP_OFFICE, DAY1, "08:00")
    body = {"timestamp": ts, "officeId": FS_PICKUP_OFFICE, "serviceId": [FS_PICKUP], "serviceCount": [1]}

    def attempt(index: int) -> int:
        with httpx.Client(base_url=site.base_url) as client:
            response = client.post(
                "/buergeransicht/api/citizen/reserve-appointment/",
                json=body,
                headers={"X-Forwarded-For": f"10.1.0.{index}"},
            )
            return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(attempt, range(8)))
    assert statuses == [200] + [404] * 7
    assert len(site.control("GET", "processes")) == 1


def test_einbuergerung_needs_four_units_and_holds_five_minutes(site: ReplicaServer) -> None:
    from tests.replica.conftest import EINBUERGERUNG, EINBUERGERUNG_SERVICE

    stamps = site.add_slots(EINBUERGERUNG, DAY1, "13:00", "13:15", "13:30", "13:45", "14:00")
    params = calendar_params([EINBUERGERUNG], [EINBUERGERUNG_SERVICE], slots=DAY1)
    offices = site.get("available-calendar/", **params).json()["availableDays"][0]["offices"]
    assert offices[0]["appointments"] == stamps[:2]
    service = [EINBUERGERUNG_SERVICE]
    body = {"timestamp": stamps[1], "officeId": EINBUERGERUNG, "serviceId": service, "serviceCount": [1]}
    process = site.post("reserve-appointment/", body).json()
    assert process["slotCount"] == 4
    assert process["scope"]["customTextfieldLabel"] == "Fallnummer und Name des Sachbearbeiters"
    assert site.get("available-calendar/", **params).json()["availableDays"] == []
    missing = update(site, process, customTextfield="")
    assert error_codes(missing) == ["invalidCustomTextfield"]
    site.advance(5 * 60)
    assert error_codes(update(site, process)) == ["processNotReservedAnymore"]
    assert len(site.get("available-calendar/", **params).json()["availableDays"]) == 1
