"""A citizen's walk through the replica's booking page in real Chromium (spec §4.4).

These tests pin what the browser adapter relies on: the German labels, element ids, shadow DOM and the
order of citizen-API calls, plus the error screens (429, maintenance, failures), the invalid deep link,
the no-slots callout and the slot lost between display and reservation.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import altcha
import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from replica.clock import BERLIN
from tests.e2e.conftest import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    ORLEANSPLATZ,
    WOHNSITZANMELDUNG,
    Replica,
    berlin_slot,
)

pytestmark = [pytest.mark.browser]

API_MARK = "/api/citizen/"
WALK_CALLS = [
    "offices-and-services",
    "captcha-details",
    "captcha-challenge",
    "captcha-verify",
    "available-calendar",
    "available-calendar",
    "reserve-appointment",
    "update-appointment",
    "preconfirm-appointment",
]
"""Spec §4.4: the calls of the reference walk, in order."""


@pytest.fixture(autouse=True)
def no_script_errors(page: Page) -> Iterator[None]:
    """Every test also fails on an uncaught error in the page's scripts."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield
    assert errors == []


def units(start: int, count: int = 2) -> list[int]:
    """Consecutive 15-minute slot units from ``start``: a Führerschein-Umschreibung needs two."""
    return [start + i * 900 for i in range(count)]


def record_api_calls(page: Page) -> list[str]:
    """Endpoint names of the citizen-API requests the page makes, in order."""
    calls: list[str] = []

    def on_request(request: Request) -> None:
        if API_MARK in request.url:
            calls.append(request.url.split(API_MARK, 1)[1].split("?", 1)[0].strip("/"))

    page.on("request", on_request)
    return calls


def record_calendar_queries(page: Page) -> list[dict[str, str]]:
    """Query parameters of every available-calendar request, in order."""
    queries: list[dict[str, str]] = []

    def on_request(request: Request) -> None:
        url = urlsplit(request.url)
        if url.path.endswith(API_MARK + "available-calendar/"):
            queries.append(dict(parse_qsl(url.query)))

    page.on("request", on_request)
    return queries


def fill_contact(page: Page, *, email: str = "erika.mustermann@example.org") -> None:
    page.fill("#input-firstname", "Erika")
    page.fill("#input-lastname", "Mustermann")
    page.fill("#input-mailaddress", email)
    if page.locator("#input-telephonenumber").count():
        page.fill("#input-telephonenumber", "+491511234567")


def pass_captcha(page: Page) -> None:
    page.get_by_text("Ich bin kein Bot.").click()
    expect(page.get_by_text("Erfolgreich überprüft.")).to_be_visible(timeout=20_000)


def test_walk_with_captcha_books_and_activates(replica: Replica, page: Page) -> None:
    slot = berlin_slot(days_ahead=2, hour=10)
    replica.add_slots(ORLEANSPLATZ, [slot, slot + 900])
    calls = record_api_calls(page)
    calendar = record_calendar_queries(page)

    page.goto(replica.deep_link(WOHNSITZANMELDUNG, ORLEANSPLATZ))
    expect(page.locator("zms-appointment")).to_have_count(1)
    next_button = page.get_by_role("button", name="Weiter")
    expect(next_button).to_have_attribute("aria-disabled", "true")
    expect(next_button).to_have_class(re.compile(r"\bm-button--primary\b.*\bdisabled\b"))
    expect(page.get_by_text("Voraussichtliche Termindauer:")).to_be_visible()
    pass_captcha(page)
    expect(next_button).not_to_have_attribute("aria-disabled", "true")

    next_button.first.click()
    page.locator("button.timeslot").first.wait_for()
    expect(page.locator("#checkbox-provider-102522")).to_be_checked()
    expect(page.locator(f"div.grid-item[data-provider-id='102522'][data-timeslot='{slot}']")).to_have_count(1)
    expect(page.locator("#timeslot-grid-provider-102522")).to_be_visible()
    expect(page.locator(".muc-calendar-item.selected")).to_have_count(1)
    page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{slot}").click()
    expect(page.get_by_text("Ausgewählter Termin")).to_be_visible()

    page.get_by_role("button", name="Weiter").last.click()
    expect(page.get_by_role("heading", name="Kontaktdaten")).to_be_visible()
    fill_contact(page)
    page.get_by_role("button", name="Weiter").click()

    expect(page.locator("[id^='process-'][id*='-displayNumber-']")).to_be_visible()
    page.check("#checkbox-electronic-communication")
    page.get_by_role("button", name="Termin reservieren").click()
    expect(page.get_by_text("Aktivieren Sie Ihren Termin.")).to_be_visible()
    assert calls == WALK_CALLS

    # Spec §2.4a: today .. today + 6 months, the slots window first today, then the first bookable day.
    today = datetime.now(BERLIN).date()
    slot_day = datetime.fromtimestamp(slot, BERLIN).date().isoformat()
    first, second = calendar
    assert first["startDate"] == today.isoformat()
    assert date.fromisoformat(first["endDate"]) > today + timedelta(days=180)
    assert (first["slotsStartDate"], first["slotsEndDate"]) == (today.isoformat(), today.isoformat())
    assert (second["slotsStartDate"], second["slotsEndDate"]) == (slot_day, slot_day)
    for query in calendar:
        assert query["officeIds"] == str(ORLEANSPLATZ)
        assert (query["serviceIds"], query["serviceCounts"]) == (str(WOHNSITZANMELDUNG), "1")
        assert query["captchaToken"]

    # The citizen opens the activation link from the e-mail in a new tab.
    link = replica.activation_link(to="erika.mustermann@example.org")
    mail_tab = page.context.new_page()
    mail_tab.goto(link)
    expect(mail_tab.get_by_text("Ihr Termin wurde gebucht.")).to_be_visible()
    expect(mail_tab.get_by_role("button", name="Termin herunterladen (ics)")).to_be_visible()
    expect(mail_tab.get_by_role("button", name="Weiteren Termin vereinbaren")).to_be_visible()
    statuses = {p["timestamp"]: p["status"] for p in replica.processes()}
    assert statuses == {slot: "confirmed"}


def test_fuehrerscheinstelle_without_captcha_needs_birth_date(replica: Replica, page: Page) -> None:
    slot = berlin_slot(days_ahead=3, hour=8, minute=30)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(slot))
    calls = record_api_calls(page)

    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE))
    next_button = page.get_by_role("button", name="Weiter")
    expect(next_button).not_to_have_attribute("aria-disabled", "true")
    expect(page.locator("altcha-widget")).to_have_count(0)
    next_button.click()
    expect(page.locator(f"h3#provider-{FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE}")).to_be_visible()
    page.locator(f"#provider-{FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE}-timeslot-{slot}").click()
    page.get_by_role("button", name="Weiter").last.click()

    fill_contact(page, email="max+test@example.org")
    expect(page.get_by_label("Geburtsdatum")).to_be_visible()
    page.get_by_role("button", name="Weiter").click()
    expect(page.get_by_text("Ihre E-Mail-Adresse entspricht nicht dem vorgegebenen Format")).to_be_visible()
    expect(page.get_by_text("Bitte geben Sie die notwendigen Informationen ein.")).to_be_visible()
    assert "update-appointment" not in calls  # caught in the browser, like the city's UI

    page.fill("#input-mailaddress", "max.test@example.org")
    page.fill("#textarea-remarks", "01.02.1990")
    page.get_by_role("button", name="Weiter").click()
    page.check("#checkbox-electronic-communication")
    page.get_by_role("button", name="Termin reservieren").click()
    expect(page.get_by_text("Aktivieren Sie Ihren Termin.")).to_be_visible()
    expect(page.get_by_text("innerhalb von 60 Minuten")).to_be_visible()
    assert calls == [c for c in WALK_CALLS if not c.startswith("captcha-")]


def test_rate_limit_replaces_the_widget(replica: Replica, page: Page) -> None:
    replica.faults(storm_s=0)
    page.goto(replica.deep_link(WOHNSITZANMELDUNG, ORLEANSPLATZ))
    expect(page.get_by_text("Zu viele Anfragen")).to_be_visible()
    expect(page.get_by_role("button", name="Weiter")).to_have_count(0)


def test_rate_limit_during_the_walk(replica: Replica, page: Page) -> None:
    replica.add_slots(ORLEANSPLATZ, [berlin_slot(days_ahead=1, hour=9)])
    page.goto(replica.deep_link(WOHNSITZANMELDUNG, ORLEANSPLATZ))
    pass_captcha(page)
    replica.faults(storm_s=0, endpoints=["available-calendar"])
    page.get_by_role("button", name="Weiter").click()
    expect(page.get_by_text("Zu viele Anfragen")).to_be_visible()


def test_maintenance_page(replica: Replica, page: Page) -> None:
    replica.faults(maintenance=True)
    page.goto(replica.page_url)
    expect(page.get_by_text("Wir aktualisieren unser System für Sie.")).to_be_visible()


@pytest.mark.parametrize("fault", ["error_500_s", "garbage_s"])
def test_failures_show_function_unavailable(replica: Replica, page: Page, fault: str) -> None:
    replica.faults(**{fault: 0})
    page.goto(replica.page_url)
    expect(page.get_by_text("Diese Funktion ist zur Zeit nicht verfügbar.")).to_be_visible()


def test_invalid_deep_link(replica: Replica, page: Page) -> None:
    page.goto(replica.deep_link(WOHNSITZANMELDUNG, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE))
    expect(page.get_by_text("Diese Ansicht kann nicht geladen werden.")).to_be_visible()
    expect(page.get_by_text("Der Link zu dieser Seite ist leider fehlerhaft.")).to_be_visible()


def test_no_slots_callout(replica: Replica, page: Page) -> None:
    calls = record_api_calls(page)
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE))
    page.get_by_role("button", name="Weiter").click()
    expect(page.get_by_text("Aktuell ist kein Termin verfügbar.")).to_be_visible()
    expect(
        page.get_by_text("Bitte versuchen Sie es noch einmal zu einem späteren Zeitpunkt.")
    ).to_be_visible()
    page.get_by_role("button", name="Wann gibt es neue Termine?").click()
    expect(page.get_by_text("zwischen 7:30 und 8:30 Uhr")).to_be_visible()
    assert calls == ["offices-and-services", "available-calendar"]


def test_slot_lost_between_display_and_reserve(replica: Replica, page: Page) -> None:
    lost, other = berlin_slot(days_ahead=2, hour=9), berlin_slot(days_ahead=2, hour=11)
    office = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE
    replica.add_slots(office, units(lost) + units(other))
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, office))
    page.get_by_role("button", name="Weiter").click()
    page.locator(f"#provider-{office}-timeslot-{lost}").click()
    assert replica.take(office, lost)

    page.get_by_role("button", name="Weiter").last.click()
    expect(page.get_by_text("Ihr gewählter Termin ist nicht mehr verfügbar.")).to_be_visible()
    expect(page.locator(f"#provider-{office}-timeslot-{lost}")).to_have_count(0)
    expect(page.locator(f"#provider-{office}-timeslot-{other}")).to_be_visible()
    expect(page.get_by_role("button", name="Weiter")).to_have_attribute("aria-disabled", "true")


def test_layout_change_renames_slot_ids(replica: Replica, page: Page) -> None:
    slot = berlin_slot(days_ahead=2, hour=10)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(slot))
    replica.faults(layout_variant="renamed-timeslot-ids")
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE))
    page.get_by_role("button", name="Weiter").click()
    expect(page.locator("button.slot-btn")).to_have_count(1)
    expect(page.locator("button.timeslot")).to_have_count(0)
    expect(page.locator(f"#provider-{FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE}-timeslot-{slot}")).to_have_count(0)


def _captcha_token(api: httpx.Client) -> str:
    """Solve the replica's ALTCHA challenge in Python, as a script would."""
    challenge = api.get("/captcha-challenge/").raise_for_status().json()
    solution = altcha.solve_challenge(altcha.Challenge.from_dict(challenge))
    assert solution is not None
    payload = base64.b64encode(json.dumps({"challenge": challenge, "solution": solution.to_dict()}).encode())
    verified = api.post("/captcha-verify/", json={"payload": payload.decode()}).raise_for_status().json()
    return str(verified["token"])


def _preconfirmed_by_api(
    replica: Replica, office: int, service: int, slot: int, *, confirm: bool = False
) -> dict[str, Any]:
    """Book up to the activation mail (or, with ``confirm``, the confirmation) through the API alone."""
    with httpx.Client(base_url=replica.api_url, timeout=10) as api:
        reservation: dict[str, Any] = {
            "timestamp": slot,
            "officeId": office,
            "serviceId": [service],
            "serviceCount": [1],
        }
        if office == ORLEANSPLATZ:
            reservation["captchaToken"] = _captcha_token(api)
        process = api.post("/reserve-appointment/", json=reservation).raise_for_status().json()
        credentials = {"processId": process["processId"], "authKey": process["authKey"]}
        customer = {
            "familyName": "Max Test",
            "email": "max.test@example.org",
            "customTextfield": "01.02.1990",
        }
        api.post("/update-appointment/", json={**credentials, **customer}).raise_for_status()
        api.post("/preconfirm-appointment/", json=credentials).raise_for_status()
        if confirm:
            api.post("/confirm-appointment/", json=credentials).raise_for_status()
    return dict(process)


def _manage_link(replica: Replica) -> str:
    confirmation = replica.mail(kind="confirmation")[-1]
    return str(
        next(link["url"] for link in confirmation["links"] if "/appointment/confirm/" not in link["url"])
    )


def test_activation_link_twice_then_cancel(replica: Replica, page: Page) -> None:
    slot = berlin_slot(days_ahead=4, hour=10)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(slot))
    process = _preconfirmed_by_api(
        replica, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, FUEHRERSCHEIN_UMSCHREIBUNG, slot
    )

    # The hash may arrive URL-encoded and without padding.
    raw = json.dumps({"id": process["processId"], "authKey": process["authKey"]}).encode()
    unpadded = base64.b64encode(raw).decode().rstrip("=").replace("/", "%2F").replace("+", "%2B")
    page.goto(f"{replica.page_url}#/appointment/confirm/{unpadded}")
    expect(page.get_by_text("Ihr Termin wurde gebucht.")).to_be_visible()

    page.goto(replica.activation_link())
    expect(page.locator("[data-test=appointment-already-activated-banner]")).to_have_text(
        "Sie haben Ihren Termin bereits aktiviert."
    )

    page.goto(replica.page_url)  # a fresh document, as from the mail client
    page.goto(_manage_link(replica))
    expect(page.get_by_role("button", name="Termin verschieben")).to_be_visible()
    page.get_by_role("button", name="Termin absagen").click()
    page.get_by_role("button", name="Absagen", exact=True).click()
    expect(page.get_by_text("Sie haben Ihren Termin erfolgreich abgesagt.")).to_be_visible()
    assert {p["status"] for p in replica.processes()} == {"cancelled"}


def test_expired_activation(replica: Replica, page: Page) -> None:
    slot = berlin_slot(days_ahead=4, hour=11)
    replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, units(slot))
    _preconfirmed_by_api(replica, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, FUEHRERSCHEIN_UMSCHREIBUNG, slot)
    replica.control("POST", "/advance", params={"seconds": "61m"})
    page.goto(replica.activation_link())
    expect(page.get_by_text("Ihr Termin kann nicht mehr aktiviert werden.")).to_be_visible()


@pytest.mark.parametrize(
    ("change", "calendar_calls"),
    [
        ({"legacy_api": True}, ["available-days-by-office", "available-appointments-by-office"]),
        ({"calendar_path": "available-calendar-v2"}, ["available-calendar-v2", "available-calendar-v2"]),
        ({"layout_variant": "no-shadow-dom"}, ["available-calendar", "available-calendar"]),
    ],
    ids=["legacy-api", "renamed-endpoint", "no-shadow-dom"],
)
def test_page_follows_the_site_release(
    replica: Replica, page: Page, change: dict[str, Any], calendar_calls: list[str]
) -> None:
    """Older API releases, a renamed endpoint and a light-DOM page all still book for a person."""
    slot = berlin_slot(days_ahead=2, hour=10)
    office = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE
    replica.add_slots(office, units(slot))
    replica.faults(**change)
    calls = record_api_calls(page)
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, office))
    page.get_by_role("button", name="Weiter").click()
    page.locator(f"#provider-{office}-timeslot-{slot}").click()
    page.get_by_role("button", name="Weiter").last.click()
    expect(page.locator("#input-firstname")).to_be_visible()
    assert calls == ["offices-and-services", *calendar_calls, "reserve-appointment"]
    has_shadow = page.evaluate("() => document.querySelector('zms-appointment').shadowRoot !== null")
    assert has_shadow is (change.get("layout_variant") != "no-shadow-dom")


def test_renamed_buttons_variant(replica: Replica, page: Page) -> None:
    replica.faults(layout_variant="renamed-buttons")
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE))
    expect(page.get_by_role("button", name="Fortfahren")).to_be_visible()
    expect(page.get_by_role("button", name="Weiter")).to_have_count(0)


def test_reschedule_from_the_manage_link(replica: Replica, page: Page) -> None:
    """Reading the appointment mints a captcha token, so rescheduling skips the widget."""
    old, new = berlin_slot(days_ahead=3, hour=9), berlin_slot(days_ahead=5, hour=14)
    replica.add_slots(ORLEANSPLATZ, [old, new])
    old_process = _preconfirmed_by_api(replica, ORLEANSPLATZ, WOHNSITZANMELDUNG, old, confirm=True)
    calls = record_api_calls(page)
    page.goto(_manage_link(replica))
    page.get_by_role("button", name="Termin verschieben").click()
    page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{new}").click()
    page.get_by_role("button", name="Weiter").click()
    fill_contact(page)
    page.get_by_role("button", name="Weiter").click()
    page.check("#checkbox-electronic-communication")
    # The old appointment is cancelled once the new one is preconfirmed.
    with page.expect_response(lambda r: "/cancel-appointment/" in r.url) as cancelled:
        page.get_by_role("button", name="Termin reservieren").click()
    assert cancelled.value.ok
    expect(page.get_by_text("Aktivieren Sie Ihren Termin.")).to_be_visible()
    statuses = {p["timestamp"]: p["status"] for p in replica.processes()}
    assert statuses == {old: "cancelled", new: "preconfirmed"}
    assert old_process["timestamp"] == str(old)
    assert not any(c.startswith("captcha-") for c in calls)


def test_captcha_session_expired_on_the_appointment_step(replica: Replica, page: Page) -> None:
    replica.add_slots(ORLEANSPLATZ, [berlin_slot(days_ahead=2, hour=10)])
    page.goto(replica.deep_link(WOHNSITZANMELDUNG, ORLEANSPLATZ))
    pass_captcha(page)
    replica.control("POST", "/advance", params={"seconds": "6m"})  # the token lives 300 s
    page.get_by_role("button", name="Weiter").click()
    expect(page.get_by_text("Ihre Sitzung ist abgelaufen.")).to_be_visible()
    page.get_by_role("button", name="Zurück").click()
    expect(page.get_by_text("Ich bin kein Bot.")).to_be_visible()
    expect(page.get_by_role("button", name="Weiter")).to_have_attribute("aria-disabled", "true")


def test_exclusive_location_hides_alternatives(replica: Replica, page: Page) -> None:
    slot = berlin_slot(days_ahead=2, hour=10)
    replica.add_slots(ORLEANSPLATZ, [slot])
    calls = record_api_calls(page)
    page.goto(replica.deep_link(WOHNSITZANMELDUNG, ORLEANSPLATZ, exclusive=True))
    pass_captcha(page)
    page.get_by_role("button", name="Weiter").click()
    expect(page.locator(f"h3#provider-{ORLEANSPLATZ}")).to_have_text("Bürgerbüro Orleansplatz")
    expect(page.locator("input[id^='checkbox-provider-']")).to_have_count(0)
    expect(page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{slot}")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    calendar_urls = [c for c in calls if c == "available-calendar"]
    assert len(calendar_urls) == 2
