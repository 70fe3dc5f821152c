"""What the booking walk needs to know about the city's page and API beyond ``selectors``.

Each value is a fact from the site's fact sheet (``shared/site/munich-site.md``; section in the
comment). The checking side's facts (deep link, calendar, captcha, error screens) stay in
``selectors``; this module only adds the contact and overview steps, the booking endpoints
and their error codes, and the e-mail link routes.
"""

from __future__ import annotations

import base64
import json
from datetime import date

# --- booking endpoints (§2.2, §2.5-§2.9) ----------------------------------------------------------
RESERVE_ENDPOINT = "reserve-appointment"
UPDATE_ENDPOINT = "update-appointment"
PRECONFIRM_ENDPOINT = "preconfirm-appointment"
CONFIRM_ENDPOINT = "confirm-appointment"
CANCEL_ENDPOINT = "cancel-appointment"
APPOINTMENT_ENDPOINT = "appointment"
BOOKING_ENDPOINTS = frozenset(
    {
        RESERVE_ENDPOINT,
        UPDATE_ENDPOINT,
        PRECONFIRM_ENDPOINT,
        CONFIRM_ENDPOINT,
        CANCEL_ENDPOINT,
        APPOINTMENT_ENDPOINT,
    }
)

# ThinnedProcess status values (§2.5-§2.8)
STATUS_RESERVED = "reserved"
STATUS_PRECONFIRMED = "preconfirmed"
STATUS_CONFIRMED = "confirmed"

# error codes (§2.10)
SLOT_TAKEN_CODES = frozenset(
    {"appointmentNotAvailable", "noAppointmentForThisDay", "noAppointmentForThisScope"}
)
"""The slot went to someone else: the normal race-lost answer (§2.5)."""
NOT_FOUND_CODE = "appointmentNotFound"
"""Unknown, cancelled or expired process (§2.9)."""
RESERVATION_GONE_CODES = frozenset({"processNotReservedAnymore"})
ACTIVATION_GONE_CODES = frozenset({"processNotPreconfirmedAnymore", "preconfirmationExpired"})
CANNOT_CANCEL_CODE = "appointmentCanNotBeCanceled"
FIELD_OF_ERROR_CODE: dict[str, str] = {
    "invalidFamilyName": "name",
    "invalidEmail": "email",
    "emailIsRequired": "email",
    "tooManyAppointmentsWithSameMail": "email",
    "invalidTelephone": "phone",
    "telephoneIsRequired": "phone",
    "invalidCustomTextfield": "customTextfield",
    "invalidCustomTextfield2": "customTextfield2",
}
"""update-appointment refusals that name a profile field (§2.6): never retried with the same profile."""

# --- step 2 "Kontakt" (§4.3) ---------------------------------------------------------------------
CONTACT_HEADING = "Kontaktdaten"
FIRST_NAME_INPUT = "#input-firstname"
LAST_NAME_INPUT = "#input-lastname"
EMAIL_INPUT = "#input-mailaddress"
PHONE_INPUT = "#input-telephonenumber"
CUSTOM1_TEXTAREA = "#textarea-remarks"
CUSTOM2_TEXTAREA = "#textarea-remarks2"
FIELD_OF_ELEMENT_ID: dict[str, str] = {
    "input-firstname": "first_name",
    "input-lastname": "last_name",
    "input-mailaddress": "email",
    "input-telephonenumber": "phone",
    "textarea-remarks": "customTextfield",
    "textarea-remarks2": "customTextfield2",
}
INVALID_FIELD = "[aria-invalid=true]"
"""The page marks a field it refuses before sending anything (the UI uses the API's own patterns)."""
MAX_NAME_CHARS = 50
MAX_CUSTOM_CHARS = 250

# --- step 1 "Termin" (§4.3) ----------------------------------------------------------------------
SELECTED_APPOINTMENT = "Ausgewählter Termin"
SLOT_LOST = "Ihr gewählter Termin ist nicht mehr verfügbar."
CALENDAR_DAY = "div.muc-calendar-item[role=button]"
PREV_MONTH = "Vorheriger Monat"
NEXT_MONTH = "Nächster Monat"
ERROR_CALLOUT = ".m-callout--error"

_WEEKDAYS_DE = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
_MONTHS_DE = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)


def long_day_de(day: date) -> str:
    """The de-DE long date the calendar uses, e.g. "Donnerstag, 3. Dezember 2026"."""
    return f"{_WEEKDAYS_DE[day.weekday()]}, {day.day}. {_MONTHS_DE[day.month - 1]} {day.year}"


def day_tile(day: date) -> str:
    """The calendar tile of ``day``: ``[role=button]`` with aria-label "<day> auswählen" (§4.3)."""
    return f'{CALENDAR_DAY}[aria-label="{long_day_de(day)} auswählen"]'


def timeslot_button(office_id: int, timestamp: int) -> str:
    """``button.timeslot#provider-<officeId>-timeslot-<epoch>`` (§4.3)."""
    return f"#provider-{office_id}-timeslot-{timestamp}"


# --- step 3 "Übersicht" (§4.3) -------------------------------------------------------------------
SUMMARY = "[id^='process-'][id*='-displayNumber-']"
TERMS_CHECKBOX = "#checkbox-electronic-communication"
VIDEO_CHECKBOX = "#checkbox-video-consultation"
BOOK_BUTTON = "Termin reservieren"
ACTIVATE_CALLOUT = "Aktivieren Sie Ihren Termin."
ACTIVATION_MINUTES_TEXT = r"innerhalb von (\d+) Minuten"
DEFAULT_ACTIVATION_MIN = 30
"""The UI's own fallback when the scope has no activationDuration (§2.7)."""
DEFAULT_RESERVATION_MIN = 15

# --- e-mail links (§4.2) ---------------------------------------------------------------------------
CONFIRMED_TEXT = "Ihr Termin wurde gebucht."
ALREADY_ACTIVATED_TEXT = "Sie haben Ihren Termin bereits aktiviert."
CANCEL_BUTTON = "Termin absagen"
CANCEL_CONFIRM_BUTTON = "Absagen"
CANCELLED_TEXT = "Sie haben Ihren Termin erfolgreich abgesagt."


def appointment_hash(process_id: int | str, auth_key: str, action: str | None = None) -> str:
    """base64 of ``{"id":<processId>,"authKey":"<key>"[,"action":...]}``, as in the city's links."""
    data: dict[str, object] = {"id": int(process_id), "authKey": auth_key}
    if action is not None:
        data["action"] = action
    raw = json.dumps(data, separators=(",", ":"))
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def manage_link(site_url: str, process_id: int | str, auth_key: str, action: str | None = None) -> str:
    """``<page>#/appointment/<hash>``: the page reads (or, with action "cancel", offers to cancel)."""
    return f"{site_url.split('#', 1)[0]}#/appointment/{appointment_hash(process_id, auth_key, action)}"


def activation_link(site_url: str, process_id: int | str, auth_key: str) -> str:
    """``<page>#/appointment/confirm/<hash>``: what the activation e-mail links to."""
    return f"{site_url.split('#', 1)[0]}#/appointment/confirm/{appointment_hash(process_id, auth_key)}"


__all__ = [
    "ACTIVATE_CALLOUT",
    "ACTIVATION_GONE_CODES",
    "ACTIVATION_MINUTES_TEXT",
    "ALREADY_ACTIVATED_TEXT",
    "APPOINTMENT_ENDPOINT",
    "BOOKING_ENDPOINTS",
    "BOOK_BUTTON",
    "CALENDAR_DAY",
    "CANCELLED_TEXT",
    "CANCEL_BUTTON",
    "CANCEL_CONFIRM_BUTTON",
    "CANCEL_ENDPOINT",
    "CANNOT_CANCEL_CODE",
    "CONFIRMED_TEXT",
    "CONFIRM_ENDPOINT",
    "CONTACT_HEADING",
    "CUSTOM1_TEXTAREA",
    "CUSTOM2_TEXTAREA",
    "DEFAULT_ACTIVATION_MIN",
    "DEFAULT_RESERVATION_MIN",
    "EMAIL_INPUT",
    "ERROR_CALLOUT",
    "FIELD_OF_ELEMENT_ID",
    "FIELD_OF_ERROR_CODE",
    "FIRST_NAME_INPUT",
    "INVALID_FIELD",
    "LAST_NAME_INPUT",
    "MAX_CUSTOM_CHARS",
    "MAX_NAME_CHARS",
    "NEXT_MONTH",
    "NOT_FOUND_CODE",
    "PHONE_INPUT",
    "PRECONFIRM_ENDPOINT",
    "PREV_MONTH",
    "RESERVATION_GONE_CODES",
    "RESERVE_ENDPOINT",
    "SELECTED_APPOINTMENT",
    "SLOT_LOST",
    "SLOT_TAKEN_CODES",
    "STATUS_CONFIRMED",
    "STATUS_PRECONFIRMED",
    "STATUS_RESERVED",
    "SUMMARY",
    "TERMS_CHECKBOX",
    "UPDATE_ENDPOINT",
    "VIDEO_CHECKBOX",
    "activation_link",
    "appointment_hash",
    "day_tile",
    "long_day_de",
    "manage_link",
    "timeslot_button",
]
