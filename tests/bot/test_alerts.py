"""Alert texts in English and German: what, where, when (Berlin), filters, age, link, buttons."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.alerts import (
    BookingUpdate,
    Filters,
    SlotAlert,
    describe_duration,
    render_booking,
    render_gone,
    render_operator,
    render_slot_alert,
)
from bot.i18n import translator
from bot.testing.fake_bot_api import check_html
from bot.testing.outbox import PASING_OFFICE_ID, PASSPORT_SERVICE_ID

SITE_URL = "https://stadt.muenchen.de/buergerservice/terminvereinbarung.html"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _alert(**changes: object) -> SlotAlert:
    base = {
        "slot_id": 77,
        "site": "munich",
        "service_id": PASSPORT_SERVICE_ID,
        "service_count": 1,
        "office_id": PASING_OFFICE_ID,
        "start_at": datetime(2026, 3, 3, 8, 30, tzinfo=UTC),  # 09:30 in Munich (CET)
        "first_seen_at": NOW - timedelta(minutes=5),
        "last_seen_at": NOW - timedelta(minutes=5),
        "site_url": SITE_URL,
        "filters": Filters(
            office_ids=(PASING_OFFICE_ID,),
            date_from=date(2026, 3, 1),
            date_to=date(2026, 3, 31),
            weekdays=(1, 2),
            time_from=time(8, 0),
            time_to=time(12, 0),
        ),
        "has_profile": True,
    }
    base.update(changes)
    return SlotAlert(**base)  # type: ignore[arg-type]


def _buttons(rendered: object) -> list[tuple[str, str | None, str | None]]:
    markup = rendered.markup  # type: ignore[attr-defined]
    return [(b.text, b.url, b.callback_data) for row in markup.inline_keyboard for b in row]


def test_english_alert_says_what_where_when_and_why() -> None:
    rendered = render_slot_alert(_alert(), "en", NOW)
    text = rendered.text
    assert "Free appointment!" in text and "Personalausweis" in text
    assert "Bürgerbüro Pasing, Landsberger Straße 486, 81241 München" in text
    assert "Tue 3 Mar 2026, 09:30" in text and "(Berlin time)" in text
    assert "offices: Bürgerbüro Pasing" in text and "weekdays: Tue, Wed" in text
    assert "time of day: 08:00 – 12:00" in text and "dates: 1 Mar 2026 – 31 Mar 2026" in text
    assert "Seen 5 minutes ago." in text
    link = f"{SITE_URL}#/services/{PASSPORT_SERVICE_ID}/locations/{PASING_OFFICE_ID}"
    assert f'href="{link}"' in text
    assert _buttons(rendered) == [("Open the booking page", link, None), ("Book this", None, "book:77")]
    assert check_html(text) is None


def test_german_alert() -> None:
    rendered = render_slot_alert(_alert(service_count=2), "de-AT", NOW)
    text = rendered.text
    assert "Freier Termin!" in text and "Di., 3. März 2026, 09:30" in text
    assert "Wochentage: Di, Mi" in text and "Uhrzeit: 08:00 – 12:00" in text
    assert "für 2 Personen" in text and "Gesehen vor 5 Minuten." in text
    assert "Passt zu Ihren Filtern:" in text
    assert [b[0] for b in _buttons(rendered)] == ["Zur Buchungsseite", "Diesen Termin buchen"]
    assert check_html(text) is None


def test_no_book_button_without_profile_and_autobook_note() -> None:
    assert [b[0] for b in _buttons(render_slot_alert(_alert(has_profile=False), "en", NOW))] == [
        "Open the booking page"
    ]
    auto = render_slot_alert(_alert(autobook=True), "en", NOW)
    assert "trying to book it for you" in auto.text and len(_buttons(auto)) == 1


def test_any_office_and_just_now() -> None:
    text = render_slot_alert(_alert(filters=Filters(), last_seen_at=NOW), "en", NOW).text
    assert "any office" in text and "Seen just now." in text and "weekdays" not in text


@pytest.mark.parametrize(
    ("language", "expected"), [("en", "Gone after 1 h 5 min."), ("de", "Nach 1 Std. 5 Min. vergeben.")]
)
def test_gone_says_how_long_it_lasted(language: str, expected: str) -> None:
    alert = _alert(gone_at=NOW + timedelta(hours=1))
    rendered = render_gone(alert, language, NOW)
    assert expected in rendered.text and rendered.markup is None
    assert check_html(rendered.text) is None


@pytest.mark.parametrize(
    ("status", "english", "german"),
    [
        ("holding", "holding the slot", "Termin wird gehalten"),
        ("reserved", "activation link", "Aktivierungslink"),
        ("reminder", "Reminder", "Erinnerung"),
        ("confirmed", "confirmed", "bestätigt"),
        ("expired", "expired", "verfallen"),
        ("failed", "Someone else took the slot first", "Jemand anderes war schneller"),
        ("cancelled", "cancelled", "storniert"),
    ],
)
def test_booking_progress_in_both_languages(status: str, english: str, german: str) -> None:
    update = BookingUpdate(
        status=status,
        site="munich",
        service_id=PASSPORT_SERVICE_ID,
        office_id=PASING_OFFICE_ID,
        start_at=datetime(2026, 3, 3, 8, 30, tzinfo=UTC),
        site_url=SITE_URL,
        activation_deadline=NOW + timedelta(hours=2),
        reason="appointmentNotAvailable" if status == "failed" else None,
    )
    for language, expected in (("en", english), ("de", german)):
        text = render_booking(update, language, NOW).text
        assert expected in text and "Personalausweis" in text
        assert check_html(text) is None


def test_durations_and_operator_escaping() -> None:
    _ = translator("en")
    assert describe_duration(timedelta(seconds=30), _) == "less than a minute"
    assert describe_duration(timedelta(minutes=1), _) == "1 minute"
    assert describe_duration(timedelta(hours=2), _) == "2 h"
    assert describe_duration(timedelta(days=3), _) == "3 days"
    assert render_operator("a <b> & c", {}).text == "🛠 a &lt;b&gt; &amp; c"
