"""Parsing what people type in the conversations: dates, date windows, times of day, counts.

Each parser returns a value or raises ``InputError`` whose ``message`` is an English source string
(marked with ``N_`` so the catalogue extraction finds it) and whose ``params`` fill its
placeholders; the handler translates it. Nothing here touches Telegram or the database.
Profile fields follow the site's own rules in ``shared.profile_rules``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from shared.domain import SITE_TIMEZONE

MAX_MESSAGE_CHARS = 4096
"""Telegram's limit for one text message; anything longer is refused unread."""
MAX_INPUT_CHARS = 300
"""No answer in these conversations needs more (the longest is a case reference of 250)."""
MAX_WINDOW_DAYS = 366
DATE_FORMAT = "%d.%m.%Y"


def N_(message: str) -> str:
    """Marks a string for translation without translating it (translated where it is shown)."""
    return message


class InputError(ValueError):
    """Input we cannot use; ``message`` is an untranslated source string with ``{placeholders}``."""

    def __init__(self, message: str, params: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.params = params or {}

    def __str__(self) -> str:
        return self.message.format(**self.params)


def check_length(text: str, limit: int = MAX_INPUT_CHARS) -> str:
    """The text, stripped; refuses overlong input before any other parsing."""
    if len(text) > limit:
        raise InputError(
            N_("That message is too long ({length} characters; at most {limit})."),
            {"length": len(text), "limit": limit},
        )
    return text.strip()


_DATE_RE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")


def parse_date(text: str) -> date:
    """DD.MM.YYYY (single-digit day and month allowed); refuses days that do not exist."""
    match = _DATE_RE.fullmatch(text.strip())
    if not match:
        raise InputError(N_("“{text}” is not a date. Please write it like 24.12.2026."), {"text": text[:40]})
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise InputError(N_("{text} does not exist in the calendar."), {"text": text.strip()}) from None


def parse_date_window(text: str, *, today: date) -> tuple[date, date]:
    """ "DD.MM.YYYY - DD.MM.YYYY" or a single day; the end must not be before the start or in the past."""
    text = check_length(text)
    parts = [p for p in re.split(r"\s*(?:-|–|—|\bto\b|\bbis\b)\s*", text) if p]
    if len(parts) == 1:
        start = end = parse_date(parts[0])
    elif len(parts) == 2:
        start, end = parse_date(parts[0]), parse_date(parts[1])
    else:
        raise InputError(N_("Please send one date or two dates like 01.12.2026 - 24.12.2026."))
    if end < start:
        raise InputError(
            N_("The window ends ({end}) before it starts ({start})."),
            {"start": start.strftime(DATE_FORMAT), "end": end.strftime(DATE_FORMAT)},
        )
    if end < today:
        raise InputError(
            N_("That window is over already: {end} is in the past."), {"end": end.strftime(DATE_FORMAT)}
        )
    if (end - max(start, today)).days > MAX_WINDOW_DAYS:
        raise InputError(N_("Please choose a window of at most a year."))
    return max(start, today), end


_TIME_RE = re.compile(r"(\d{1,2})(?::|\.|h)?(\d{2})?")


def parse_time(text: str) -> time:
    match = _TIME_RE.fullmatch(text.strip())
    if not match:
        raise InputError(N_("“{text}” is not a time. Please write it like 08:30."), {"text": text[:20]})
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if hour > 23 or minute > 59:
        raise InputError(N_("{text} is not a time of day."), {"text": text.strip()})
    return time(hour, minute)


def parse_time_range(text: str) -> tuple[time, time]:
    """ "HH:MM-HH:MM" (inclusive); the end must be after the start."""
    text = check_length(text)
    parts = [p for p in re.split(r"\s*(?:-|–|—|\bto\b|\bbis\b)\s*", text) if p]
    if len(parts) != 2:
        raise InputError(N_("Please send a time range like 08:00-12:00."))
    start, end = parse_time(parts[0]), parse_time(parts[1])
    if end <= start:
        raise InputError(
            N_("The time range ends ({end}) before it starts ({start})."),
            {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")},
        )
    return start, end


def parse_count(text: str, maximum: int) -> int:
    text = check_length(text)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise InputError(N_("Please choose a number from 1 to {maximum}."), {"maximum": maximum})
    return int(text)


def window_preset(preset: str, *, today: date) -> tuple[date | None, date | None]:
    """The date windows offered as buttons; inclusive of today."""
    days = {"2w": 14, "1m": 31, "3m": 92}
    if preset == "any":
        return None, None
    if preset not in days:
        raise InputError(N_("Unknown choice."))
    return today, today + timedelta(days=days[preset] - 1)


TIME_PRESETS: dict[str, tuple[time | None, time | None]] = {
    "any": (None, None),
    "am": (None, time(11, 59)),
    "pm": (time(12, 0), None),
    "early": (None, time(9, 59)),
    "late": (time(16, 0), None),
}


def format_date(day: date | None) -> str:
    return day.strftime(DATE_FORMAT) if day else ""


def site_today() -> date:
    """Today in the site's time zone, where date windows are evaluated."""
    return datetime.now(SITE_TIMEZONE).date()


__all__ = [
    "MAX_INPUT_CHARS",
    "MAX_MESSAGE_CHARS",
    "N_",
    "TIME_PRESETS",
    "InputError",
    "check_length",
    "format_date",
    "parse_count",
    "parse_date",
    "parse_date_window",
    "parse_time",
    "parse_time_range",
    "site_today",
    "window_preset",
]
