"""A confirmed appointment as an iCalendar file (RFC 5545), for the person's own calendar.

One event: the service (with its hint in the reader's language), the office's name and address as
the location, the catalogue's duration (30 minutes when it gives none), and an alarm the day before.
The catalogue lists no documents to bring, so the description points to the city's confirmation
e-mail for that. No personal data goes into the file: it is only sent to the person it is about,
but calendars get synced and shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.i18n import translator
from bot.services import service_label
from shared.catalog import get_catalog
from shared.domain import utcnow

DEFAULT_DURATION = timedelta(minutes=30)
PRODUCT_ID = "-//MTA Munich Termin Automator//EN"
ICS_MIME_TYPE = "text/calendar"


@dataclass(frozen=True)
class Appointment:
    booking_id: int
    site: str
    service_id: int
    office_id: int
    start_at: datetime


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Lines of at most 75 octets, continued with a leading space (RFC 5545 §3.1)."""
    encoded = line.encode("utf-8")
    if len(encoded) <= 75:
        return line
    parts: list[str] = []
    current = ""
    for char in line:
        limit = 75 if not parts else 74
        if len((current + char).encode("utf-8")) > limit:
            parts.append(current)
            current = char
        else:
            current += char
    parts.append(current)
    return "\r\n ".join(parts)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def filename(appointment: Appointment) -> str:
    return f"mta-appointment-{appointment.booking_id}.ics"


def appointment_ics(appointment: Appointment, language: str, now: datetime | None = None) -> bytes:
    """The .ics file's bytes (UTF-8, CRLF line ends)."""
    _ = translator(language)
    catalog = get_catalog(appointment.site)
    service = catalog.service(appointment.service_id)
    office = catalog.office(appointment.office_id)
    title = service_label(service, language) if service else str(appointment.service_id)
    duration = (
        timedelta(minutes=service.duration_min) if service and service.duration_min else DEFAULT_DURATION
    )
    location = ""
    if office is not None:
        location = ", ".join(p for p in (office.display_name or office.name, office.address) if p)
    description = _(
        "Appointment at the City of Munich, booked with MTA. What to bring: see the city's confirmation "
        "e-mail; bring an identity document. To cancel, use /bookings in the bot."
    )
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODUCT_ID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:mta-booking-{appointment.booking_id}@{appointment.site}.mta",
        f"DTSTAMP:{_stamp(now or utcnow())}",
        f"DTSTART:{_stamp(appointment.start_at)}",
        f"DTEND:{_stamp(appointment.start_at + duration)}",
        f"SUMMARY:{_escape(title)}",
        f"LOCATION:{_escape(location)}",
        f"DESCRIPTION:{_escape(description)}",
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        "TRIGGER:-P1D",
        f"DESCRIPTION:{_escape(title)}",
        "END:VALARM",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode("utf-8")


__all__ = ["ICS_MIME_TYPE", "Appointment", "appointment_ics", "filename"]
