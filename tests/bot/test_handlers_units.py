"""The pure parts of the conversations: signed callback data, input parsing, the site's profile rules,
keyboards within Telegram's limits."""

from __future__ import annotations

from datetime import date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.callbacks import MAX_CALLBACK_BYTES, Callback, CallbackDataError, CallbackSigner
from bot.handlers.subscribe import distance_km, frequent_services
from bot.i18n import translator
from bot.keyboards import KeyboardMaker, offices_keyboard, people_keyboard, subscription_keyboard
from bot.validation import (
    InputError,
    check_length,
    parse_count,
    parse_date,
    parse_date_window,
    parse_time_range,
    window_preset,
)
from shared.catalog import get_catalog
from shared.profile_rules import (
    CustomFieldKind,
    ProfileProblem,
    check_custom_field,
    check_email,
    check_name,
    check_phone,
    custom_field_for_service,
    family_name,
    form_custom_fields,
    normalize_phone,
)

SIGNER = CallbackSigner(b"0123456789abcdef0123456789abcdef")
TODAY = date(2026, 11, 29)


# --- callback data --------------------------------------------------------------------------------


def test_signed_callback_round_trips_for_its_user_only() -> None:
    data = SIGNER.sign(42, "lp", 123, "n0nc")
    assert SIGNER.verify(42, data) == Callback("lp", "123", "n0nc")
    assert SIGNER.verify(43, data) is None  # someone else pressing it
    assert CallbackSigner(b"another-secret-of-32-bytes-long!").verify(42, data) is None


@given(st.text(max_size=80))
def test_made_up_callback_data_never_verifies(data: str) -> None:
    assert SIGNER.verify(42, data) is None


def test_tampered_callback_parts_fail() -> None:
    data = SIGNER.sign(42, "ldk", 7)
    action, arg, nonce, mac = data.split("|")
    assert SIGNER.verify(42, "|".join((action, "8", nonce, mac))) is None
    assert SIGNER.verify(42, "|".join(("lp", arg, nonce, mac))) is None
    assert SIGNER.verify(42, data + "x") is None
    assert SIGNER.verify(42, None) is None


def test_callback_data_limits() -> None:
    with pytest.raises(CallbackDataError):
        SIGNER.sign(42, "a|b")
    with pytest.raises(CallbackDataError):
        SIGNER.sign(42, "of", "9" * 60)
    longest = SIGNER.sign(-(10**15), "ldk", 10**12, "abcdef")
    assert len(longest.encode()) <= MAX_CALLBACK_BYTES


def test_every_keyboard_fits_telegrams_limits() -> None:
    """Every office of every service, the largest ids: callback data ≤ 64 bytes, labels shortened."""
    _ = translator("de")
    kb = KeyboardMaker(SIGNER, 10**12, "abcdef")
    catalog = get_catalog()
    for service in catalog.services.values():
        offices = catalog.offices_for_service(service.id)
        markup = offices_keyboard(_, kb, offices, [o.id for o in offices], {o.id: 12.3 for o in offices})
        for row in markup.inline_keyboard:
            for button in row:
                assert button.callback_data is not None
                assert len(str(button.callback_data).encode()) <= MAX_CALLBACK_BYTES
                assert len(button.text) <= 60
    assert len(people_keyboard(_, kb, 25, 3).inline_keyboard) == 6  # 5 rows of numbers + navigation
    assert subscription_keyboard(_, kb, 10**9, active=False).inline_keyboard[0][0].text.endswith("Fortsetzen")


# --- parsing --------------------------------------------------------------------------------------


def test_dates() -> None:
    assert parse_date("24.12.2026") == date(2026, 12, 24)
    assert parse_date(" 1.2.2027 ") == date(2027, 2, 1)
    for bad, message in [
        ("31.02.2027", "does not exist"),
        ("29.02.2027", "does not exist"),
        ("00.01.2027", "does not exist"),
        ("2027-01-05", "is not a date"),
        ("tomorrow", "is not a date"),
    ]:
        with pytest.raises(InputError) as caught:
            parse_date(bad)
        assert message in str(caught.value)
    assert parse_date("29.02.2028") == date(2028, 2, 29)


def test_date_windows() -> None:
    assert parse_date_window("01.12.2026 - 24.12.2026", today=TODAY) == (
        date(2026, 12, 1),
        date(2026, 12, 24),
    )
    assert parse_date_window("01.12.2026 bis 24.12.2026", today=TODAY)[1] == date(2026, 12, 24)
    assert parse_date_window("05.12.2026", today=TODAY) == (date(2026, 12, 5), date(2026, 12, 5))
    assert parse_date_window("20.11.2026-03.12.2026", today=TODAY) == (TODAY, date(2026, 12, 3))
    cases = [
        ("24.12.2026 - 01.12.2026", "before it starts"),
        ("01.11.2026 - 05.11.2026", "in the past"),
        ("01.12.2026 - 01.12.2028", "at most a year"),
        ("1.12.2026 - 2.12.2026 - 3.12.2026", "one date or two dates"),
        ("31.11.2026 - 02.12.2026", "does not exist"),
    ]
    for text, message in cases:
        with pytest.raises(InputError) as caught:
            parse_date_window(text, today=TODAY)
        assert message in str(caught.value)
    assert window_preset("2w", today=TODAY) == (TODAY, date(2026, 12, 12))
    assert window_preset("any", today=TODAY) == (None, None)
    with pytest.raises(InputError):
        window_preset("forever", today=TODAY)


def test_times_counts_and_lengths() -> None:
    assert parse_time_range("8-12") == (time(8), time(12))
    assert parse_time_range("08:15 – 12.45") == (time(8, 15), time(12, 45))
    for bad in ("12:00-08:00", "10:00-10:00", "24:00-25:00", "morning", "8:00"):
        with pytest.raises(InputError):
            parse_time_range(bad)
    assert parse_count("3", 5) == 3
    for bad in ("0", "6", "-1", "two", "1.5"):
        with pytest.raises(InputError):
            parse_count(bad, 5)
    with pytest.raises(InputError) as caught:
        check_length("x" * 301)
    assert "301 characters" in str(caught.value)


# --- the site's profile rules ---------------------------------------------------------------------


def test_email_follows_the_sites_pattern() -> None:
    assert check_email("erika.mustermann@example.org") is None
    assert check_email("a_b-c@sub.example.de") is None
    for bad in (
        "a+b@example.org",
        "a..b@example.org",
        ".a@example.org",
        "a.@example.org",
        "a@example",
        "a b@x.de",
        "a@.example.org",
        "a@example.o",
        "@example.org",
    ):
        assert check_email(bad) == ProfileProblem.INVALID_EMAIL, bad


def test_phone_name_and_custom_fields() -> None:
    assert check_phone("+491511234567") is None
    assert check_phone("0151 / 123 45-67") is None and normalize_phone(
        "0151 / 123 45-67"
    ) == "015112345 67".replace(" ", "")
    for bad in ("+49", "12345", "+49 151 abc", "1" * 16):
        assert check_phone(bad) == ProfileProblem.INVALID_TELEPHONE, bad
    assert check_name("  ") == ProfileProblem.INVALID_FAMILY_NAME
    assert check_name("x" * 51) == ProfileProblem.NAME_TOO_LONG
    assert check_name("Zoë") is None
    assert family_name(" Erika ", "Mustermann") == "Erika Mustermann"
    assert check_custom_field(CustomFieldKind.DATE_OF_BIRTH, "24.12.1990", today=TODAY) is None
    for bad in ("31.02.1990", "01.01.2030", "01.01.1800", "1990-12-24"):
        assert check_custom_field(CustomFieldKind.DATE_OF_BIRTH, bad, today=TODAY) is not None
    assert check_custom_field(CustomFieldKind.CASE_REFERENCE, "x" * 251, today=TODAY) is not None


def test_custom_field_by_service() -> None:
    """Führerschein services need the date of birth in customTextfield; Wohnsitzanmeldung nothing."""
    rule = custom_field_for_service(1071896)
    assert (
        rule is not None and rule.kind is CustomFieldKind.DATE_OF_BIRTH and rule.site_label == "Geburtsdatum"
    )
    assert custom_field_for_service(1063475) is None
    assert form_custom_fields(1071896, {"date_of_birth": "24.12.1990"}) == {"customTextfield": "24.12.1990"}
    assert form_custom_fields(1063475, {"date_of_birth": "24.12.1990"}) == {}


# --- catalogue helpers ----------------------------------------------------------------------------


def test_frequent_services_and_coordinates() -> None:
    names = [s.name for s in frequent_services()]
    assert "Wohnsitzanmeldung" in names and "Reisepass" in names
    catalog = get_catalog()
    assert len([o for o in catalog.offices.values() if o.coordinates is not None]) > 50
    marienplatz = (48.1374, 11.5755)
    orleansplatz = catalog.office(102522)
    assert orleansplatz is not None and orleansplatz.coordinates is not None
    assert 1.5 < distance_km(marienplatz, orleansplatz.coordinates) < 3.5


@given(st.text(max_size=400))
def test_parsers_only_ever_refuse_with_a_message(text: str) -> None:
    """Any text: each parser returns a value or raises InputError with a formattable message."""
    for parse in (
        lambda t: parse_date_window(t, today=TODAY),
        parse_time_range,
        lambda t: parse_count(t, 5),
        check_length,
    ):
        try:
            parse(text)
        except InputError as error:
            assert str(error)
