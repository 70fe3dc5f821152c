"""Everything the Munich adapter knows about the city's page and API, in one place.

Each value is a fact from the site's fact sheet (``shared/site/munich-site.md``; section in the
comment), never something our replica happens to do. When the city changes its page, this file and
the adapter's parsing are what change.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.sites import deep_link

SITE = "munich"
# routes (§4.2): deep_link lives in shared.sites (the alert links with it too) and is re-exported here

# --- the citizen API (§1, §2) ---------------------------------------------------------------------
API_MARKER = "/api/citizen/"
"""Every citizen-API URL contains this, whatever host or gateway prefix serves it (§1)."""
CALENDAR_ENDPOINT = "available-calendar"
"""Bookable days plus one day's slot times (>= muc46, §2.4a)."""
LEGACY_DAYS_ENDPOINT = "available-days-by-office"
LEGACY_APPOINTMENTS_ENDPOINT = "available-appointments-by-office"
"""The two legacy availability endpoints (<= muc45, §2.4b)."""
CAPTCHA_VERIFY_ENDPOINT = "captcha-verify"
CATALOG_ENDPOINT = "offices-and-services"
"""The first call of every page load (§2.3)."""
CALENDAR_MONTHS = 6
"""The front end asks from today to today + 6 months (§2.4a)."""

# available-calendar query (§2.4a); the legacy endpoints use the singular names (§2.4b)
Q_START, Q_END = "startDate", "endDate"
Q_OFFICES, Q_SERVICES, Q_COUNTS = "officeIds", "serviceIds", "serviceCounts"
Q_SLOTS_START, Q_SLOTS_END = "slotsStartDate", "slotsEndDate"
Q_TOKEN = "captchaToken"
QL_OFFICE, QL_SERVICE, QL_COUNT, QL_DATE = "officeId", "serviceId", "serviceCount", "date"

# answer fields (§2.4a, §2.4b; zmscitizenview AvailableCalendarDTO, AppointmentSelection.vue)
A_DAYS, A_DATE, A_PROVIDER_IDS = "availableDays", "date", "providerIDs"
A_OFFICES, A_OFFICE_ID, A_APPOINTMENTS = "offices", "officeId", "appointments"
A_SLOTS_START, A_SLOTS_END = "slotsStartDate", "slotsEndDate"
A_PREV_BOOKABLE, A_NEXT_BOOKABLE = "prevBookableDate", "nextBookableDate"
AL_DATE = "time"
"""The legacy day list names a day's date ``time`` (§2.4b)."""

RATE_LIMIT_RESET_HEADER = "x-ratelimit-reset"
"""Epoch seconds when the window resets; only on successful responses (§2.11)."""
RATE_LIMIT_LIMIT_HEADER = "x-ratelimit-limit"
"""N: requests allowed without a 60 s pause (§2.11: default 60, 120 reported live)."""
RATE_LIMIT_REMAINING_HEADER = "x-ratelimit-remaining"
"""N - count - 1: one less than the true remaining (§2.11)."""
RATE_LIMIT_WINDOW_S = 60
"""A block lifts this long after the last allowed request (§2.11)."""

# error codes (§2.10)
RATE_LIMIT_CODE = "rateLimitExceeded"
MAINTENANCE_CODE = "serviceUnavailable"
CAPTCHA_CODES = frozenset({"captchaMissing", "captchaExpired", "captchaInvalid"})
BLOCKED_CODE = "IP_BLACKLISTED"
LEGACY_NO_DAYS_CODE = "noAppointmentForThisDay"
LEGACY_NO_APPOINTMENTS_CODE = "appointmentNotAvailable"
NO_SCOPE_CODE = "noAppointmentForThisScope"


def endpoint_of(url: str) -> str | None:
    """The endpoint name of a citizen-API URL (``.../api/citizen/available-calendar/?...``)."""
    path = urlsplit(url).path
    if API_MARKER not in path:
        return None
    rest = path.split(API_MARKER, 1)[1].strip("/")
    return rest.split("/", 1)[0] or None


# --- the page (§3.4, §4.3) --------------------------------------------------------------------------
NEXT_BUTTON = "Weiter"
"""Step buttons: role button with this name; disabled ones carry aria-disabled (§4.3)."""
COUNTER_INCREASE = "erhöhen auf {n}"
"""Part of the counter's + button aria-label: "Anzahl <name> erhöhen auf N" (§4.3)."""


def counter_value(service_id: int) -> str:
    """The count the service's counter shows: muc-patternlab-vue ``MucCounter`` renders its value as
    text in a ``<strong>`` (after a visually hidden "Aktuell ausgewählte Anzahl für ... ist"), and
    zmscitizenview's ``ServiceFinder.vue`` puts ``id="service-<sid>"`` on the counter, which Vue
    hands to its root element."""
    return f"#service-{service_id} strong"


def provider_checkbox(office_id: int) -> str:
    """One office on the appointment step, when several offer the service (§4.3)."""
    return f"#checkbox-provider-{office_id}"


def timeslot_grid(office_id: int) -> str:
    return f"#timeslot-grid-provider-{office_id}"


TIMESLOT_BUTTON = "button.timeslot"
TIMESLOT_GRID_ANY = "[id^='timeslot-grid-provider-']"
TIMESLOT_ID = re.compile(r"^provider-(\d+)-timeslot-(\d+)$")
"""``button.timeslot#provider-<officeId>-timeslot-<epoch>`` (§4.3)."""
TIMESLOT_PAGING = ("Früher", "Später")
"""Paging buttons: when shown, the grid lists only part of the day's slots."""

# captcha widget (§3.4)
CAPTCHA_WIDGET = "altcha-widget"
CAPTCHA_LABEL = "Ich bin kein Bot."
CAPTCHA_VERIFYING = "Überprüfung läuft..."
CAPTCHA_VERIFIED = "Erfolgreich überprüft."
CAPTCHA_EXPIRED = "Die Zeit ist abgelaufen. Versuchen Sie es erneut."
CAPTCHA_FAILED = "Die Prüfung ist fehlgeschlagen. Versuchen Sie es später erneut."
CAPTCHA_LOAD_FAILED = "Das Widget konnte nicht geladen werden."

# callouts and screens (§2.10, §4.2, §4.3)
NO_SLOTS = "Aktuell ist kein Termin verfügbar."
RATE_LIMIT_SCREEN = "Zu viele Anfragen"
MAINTENANCE_SCREEN = "Wir aktualisieren unser System für Sie."
UNAVAILABLE_SCREEN = "Diese Funktion ist zur Zeit nicht verfügbar."
INVALID_LINK_SCREEN = "Diese Ansicht kann nicht geladen werden."
SESSION_EXPIRED = "Ihre Sitzung ist abgelaufen."

__all__ = [
    "AL_DATE",
    "API_MARKER",
    "A_APPOINTMENTS",
    "A_DATE",
    "A_DAYS",
    "A_NEXT_BOOKABLE",
    "A_OFFICES",
    "A_OFFICE_ID",
    "A_PREV_BOOKABLE",
    "A_PROVIDER_IDS",
    "A_SLOTS_END",
    "A_SLOTS_START",
    "BLOCKED_CODE",
    "CALENDAR_ENDPOINT",
    "CALENDAR_MONTHS",
    "CAPTCHA_CODES",
    "CAPTCHA_EXPIRED",
    "CAPTCHA_FAILED",
    "CAPTCHA_LABEL",
    "CAPTCHA_LOAD_FAILED",
    "CAPTCHA_VERIFIED",
    "CAPTCHA_VERIFYING",
    "CAPTCHA_VERIFY_ENDPOINT",
    "CAPTCHA_WIDGET",
    "CATALOG_ENDPOINT",
    "COUNTER_INCREASE",
    "INVALID_LINK_SCREEN",
    "LEGACY_APPOINTMENTS_ENDPOINT",
    "LEGACY_DAYS_ENDPOINT",
    "LEGACY_NO_APPOINTMENTS_CODE",
    "LEGACY_NO_DAYS_CODE",
    "MAINTENANCE_CODE",
    "MAINTENANCE_SCREEN",
    "NEXT_BUTTON",
    "NO_SCOPE_CODE",
    "NO_SLOTS",
    "QL_COUNT",
    "QL_DATE",
    "QL_OFFICE",
    "QL_SERVICE",
    "Q_COUNTS",
    "Q_END",
    "Q_OFFICES",
    "Q_SERVICES",
    "Q_SLOTS_END",
    "Q_SLOTS_START",
    "Q_START",
    "Q_TOKEN",
    "RATE_LIMIT_CODE",
    "RATE_LIMIT_LIMIT_HEADER",
    "RATE_LIMIT_REMAINING_HEADER",
    "RATE_LIMIT_RESET_HEADER",
    "RATE_LIMIT_SCREEN",
    "RATE_LIMIT_WINDOW_S",
    "SESSION_EXPIRED",
    "SITE",
    "TIMESLOT_BUTTON",
    "TIMESLOT_GRID_ANY",
    "TIMESLOT_ID",
    "TIMESLOT_PAGING",
    "UNAVAILABLE_SCREEN",
    "counter_value",
    "deep_link",
    "endpoint_of",
    "provider_checkbox",
    "timeslot_grid",
]
