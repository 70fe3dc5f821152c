"""Small parts of the booking walk: the page's date labels, the e-mail link hashes, the profile's
custom fields, and the mapping of API answers onto failures (no browser)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from replica.mails import process_hash
from shared.domain import CaptchaRequired, LayoutChanged, RateLimited, SiteUnavailable
from worker.sites.munich import booking_selectors as bsel
from worker.sites.munich.booker import ApiResponse, Contact, raise_for_site


def test_day_labels_match_the_citys_calendar() -> None:
    """The city's tiles say the bare day number (patternlab MucDayTile.vue), the times' heading is
    formatDayFromDate's "Mittwoch, 09.12.2026", the caption "<Monat> <Jahr>" (MucCalendar.vue).
    Asserted: the booker's labels and its caption reading; a caption it cannot read is None."""
    assert bsel.day_tile(date(2027, 3, 1)).endswith('[aria-label="1 auswählen"]')
    assert bsel.DAY_TILE_LABEL.format(day=9) == "9 auswählen"
    assert bsel.day_heading(date(2026, 12, 9)) == "Mittwoch, 09.12.2026"
    assert bsel.day_heading(date(2027, 3, 1)) == "Montag, 01.03.2027"
    assert bsel.parse_month_caption("Dezember 2026") == (2026, 12)
    assert bsel.parse_month_caption("März 2027") == (2027, 3)
    assert bsel.parse_month_caption("December 2026") is None
    assert bsel.parse_month_caption("2026") is None


def test_link_hashes_are_the_citys() -> None:
    assert bsel.appointment_hash(101002, "ab" * 32) == process_hash(101002, "ab" * 32)
    link = bsel.manage_link("https://example.org/t.html#/services/1", 5, "abcd", "cancel")
    assert link.startswith("https://example.org/t.html#/appointment/")


def test_contact_finds_the_offices_custom_field_and_hides_personal_data() -> None:
    contact = Contact(
        "Erika",
        "Mustermann",
        "erika@example.org",
        custom_fields={"date_of_birth": "01.02.1990", "case_reference": "F-7"},
    )
    assert contact.custom_value("customTextfield", "Geburtsdatum") == "01.02.1990"
    assert contact.custom_value("customTextfield", "Fallnummer und Name des Sachbearbeiters") == "F-7"
    assert contact.custom_value("customTextfield", "Zusätzliche Bemerkungen") is None
    plain = Contact("a", "b", "c", custom_fields={"customTextfield": "x"})
    assert plain.custom_value("customTextfield", None) == "x"
    assert "erika" not in repr(contact).lower() and "Mustermann" not in repr(contact)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "rateLimitExceeded", RateLimited),
        (400, "captchaExpired", CaptchaRequired),
        (503, "serviceUnavailable", SiteUnavailable),
        (403, "IP_BLACKLISTED", RateLimited),
        (520, "unknownError", SiteUnavailable),
        (400, "someCodeNobodyKnows", LayoutChanged),
    ],
)
def test_site_trouble_becomes_a_typed_failure(status: int, code: str, expected: type[Exception]) -> None:
    reset = str(int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()))
    response = ApiResponse(
        "reserve-appointment", status, {"errors": [{"errorCode": code}]}, {"x-ratelimit-reset": reset}
    )
    with pytest.raises(expected):
        raise_for_site(response)
