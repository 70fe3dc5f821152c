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
AUTH_KEY_MISMATCH_CODE = "authKeyMismatch"
"""GET appointment with a known process id and another auth key (406)."""
INVALID_CREDENTIAL_CODES = ("invalidProcessId", "invalidAuthKey")
"""GET appointment with a process id that is no positive 32-bit number, or an empty auth key (400)."""
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
INVALID_FIELD = ".m-form-group.has-error"
"""The page marks a field it refuses before sending anything (the UI uses the API's own patterns):
patternlab MucInput/MucTextArea give the field's group ``has-error`` and put the message in a
FormErrorMessage (``.m-error-message``, role=alert) inside it; the control is not marked itself."""
FIELD_CONTROL = "input, textarea"
FIELD_ERROR_MESSAGE = ".m-error-message"
MAX_NAME_CHARS = 50
MAX_CUSTOM_CHARS = 250

# --- step 1 "Termin" (§4.3) ----------------------------------------------------------------------
SELECTED_APPOINTMENT = "Ausgewählter Termin"
SLOT_LOST = "Ihr gewählter Termin ist nicht mehr verfügbar."
ERROR_CALLOUT = ".m-callout--error"
ANY_PROVIDER_CHECKBOX = "input[id^='checkbox-provider-']"
"""MucCheckbox with id ``provider-<officeId>`` renders ``input#checkbox-provider-<officeId>``."""

# The calendar: patternlab MucCalendar (caption: month buttons around an h3) and MucCalendarDay
# (tiles of the shown month only; zmscitizenview CalendarView.vue does not show adjacent months).
CALENDAR_CAPTION = ".calendar-caption h3"
"""The shown month, "<Monatsname> <Jahr>" (toLocaleDateString de-DE, month long, year numeric)."""
PREV_MONTH = "Vorheriger Monat"
NEXT_MONTH = "Nächster Monat"
"""The month buttons' aria-labels (MucCalendar.vue ariaLabelPrev/Next in the day view)."""
PREV_MONTH_BUTTON = ".calendar-caption button:has(use[href='#icon-chevron-left'])"
NEXT_MONTH_BUTTON = ".calendar-caption button:has(use[href='#icon-chevron-right'])"
"""The month buttons by their icons, as the city's own CalendarView.vue finds them (locale-stable)."""
CALENDAR_DAY = "div.muc-calendar-item[role=button]"
DAY_TILE_LABEL = "{day} auswählen"
"""MucDayTile.vue: aria-label `${date.getDate()} auswählen`, text the bare day number."""
TIMES_PAGER = ".wrapper.m-button-group"
EARLIER_BUTTON = f"{TIMES_PAGER} button:has(use[href='#icon-chevron-left'])"
LATER_BUTTON = f"{TIMES_PAGER} button:has(use[href='#icon-chevron-right'])"
"""Früher/Später (CalendarView.vue): ghost buttons with chevron icons, rendered only when more than
one office offers the service (``providersWithAppointments.length > 1``)."""

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


def parse_month_caption(text: str) -> tuple[int, int] | None:
    """(year, month) of a calendar caption such as "Dezember 2026"; None if it names no month."""
    parts = text.split()
    if len(parts) != 2 or not parts[1].isdigit() or parts[0] not in _MONTHS_DE:
        return None
    return int(parts[1]), _MONTHS_DE.index(parts[0]) + 1


def day_heading(day: date) -> str:
    """The times' heading and the list view's day label, "Mittwoch, 09.12.2026" (zmscitizenview
    formatAppointmentDateTime.ts formatDayFromDate: weekday long, 2-digit day and month)."""
    return f"{_WEEKDAYS_DE[day.weekday()]}, {day:%d.%m.%Y}"


def day_tile(day: date) -> str:
    """The tile of ``day`` in its month's grid (no month or year in the label: pick it by month)."""
    return f'{CALENDAR_DAY}[aria-label="{DAY_TILE_LABEL.format(day=day.day)}"]'


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
    "ANY_PROVIDER_CHECKBOX",
    "APPOINTMENT_ENDPOINT",
    "BOOKING_ENDPOINTS",
    "BOOK_BUTTON",
    "CALENDAR_CAPTION",
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
    "DAY_TILE_LABEL",
    "DEFAULT_ACTIVATION_MIN",
    "DEFAULT_RESERVATION_MIN",
    "EARLIER_BUTTON",
    "EMAIL_INPUT",
    "ERROR_CALLOUT",
    "FIELD_CONTROL",
    "FIELD_ERROR_MESSAGE",
    "FIELD_OF_ELEMENT_ID",
    "FIELD_OF_ERROR_CODE",
    "FIRST_NAME_INPUT",
    "INVALID_FIELD",
    "LAST_NAME_INPUT",
    "LATER_BUTTON",
    "MAX_CUSTOM_CHARS",
    "MAX_NAME_CHARS",
    "NEXT_MONTH",
    "NEXT_MONTH_BUTTON",
    "NOT_FOUND_CODE",
    "PHONE_INPUT",
    "PRECONFIRM_ENDPOINT",
    "PREV_MONTH",
    "PREV_MONTH_BUTTON",
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
    "TIMES_PAGER",
    "UPDATE_ENDPOINT",
    "VIDEO_CHECKBOX",
    "activation_link",
    "appointment_hash",
    "day_heading",
    "day_tile",
    "manage_link",
    "parse_month_caption",
    "timeslot_button",
]
