"""The replica's appointment step renders what the city's source renders (docs/site-conformance.md).

Each expectation below is read from the city's public source, not from the replica:
muc-patternlab-vue ``src/components/Calendar/MucCalendar.vue`` (caption h3, month buttons with
their aria-labels and chevron icons), ``MucCalendarDay.vue`` (spacers, tiles of the shown month
only), ``MucDayTile.vue`` (role=button, aria-label "<day> auswählen", the bare number,
``disabled-tile``/``selected``), ``Form/MucCheckbox.vue``; it-at-m/eappointment zmscitizenview
``CalendarView.vue`` (h4 day heading, TimeSlotGrid per group, Früher/Später only when more than
one office offers the service, month buttons jump to next/prevBookableDate),
``TimeSlotGrid.vue``, ``ListView.vue``, ``CalendarListToggle.vue``, ``formatAppointmentDateTime.ts``
(formatDayFromDate: "Mittwoch, 09.12.2026"), ``Constants.ts`` (more than 18 times: by hour).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import Page, Request, expect

from replica.clock import BERLIN
from tests.e2e.conftest import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    ORLEANSPLATZ,
    WOHNSITZANMELDUNG,
    Replica,
)

pytestmark = [pytest.mark.browser]

FS = FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE
MONTHS = tuple(
    [
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
    ]
)
WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
"""Expected German names (test data: what Intl de-DE prints)."""


@pytest.fixture(autouse=True)
def no_script_errors(page: Page) -> Iterator[None]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield
    assert errors == []


def month_day(months_ahead: int, day: int) -> date:
    today = datetime.now(BERLIN).date()
    month0 = today.month - 1 + months_ahead
    return date(today.year + month0 // 12, month0 % 12 + 1, day)


def at(day: date, hour: int, minute: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).timestamp())


def fs_appointment(replica: Replica, day: date, hour: int) -> int:
    start = at(day, hour)
    replica.add_slots(FS, [start, start + 900])
    return start


def calendar_windows(page: Page) -> list[str]:
    """slotsStartDate of every available-calendar request, in order."""
    windows: list[str] = []

    def on_request(request: Request) -> None:
        url = urlsplit(request.url)
        if url.path.endswith("/available-calendar/"):
            windows.append(dict(parse_qsl(url.query))["slotsStartDate"])

    page.on("request", on_request)
    return windows


def test_day_tiles_caption_heading_and_month_buttons(replica: Replica, page: Page) -> None:
    """One office (no Früher/Später). Bookable: the 3rd (9:00 and 14:00) and the 9th of next month,
    the 15th of the month after next. Asserted: the caption, a tile per day of the shown month after
    the Monday-first spacers, tile labels with the bare day number, disabled and selected classes,
    the h4 day heading, both day parts shown at once, the slot button's classes and label; a tile
    click asks for its day; "Nächster Monat" jumps to nextBookableDate and selects it. Broken once
    by labelling tiles with the ISO date: failed."""
    first, ninth, later = month_day(1, 3), month_day(1, 9), month_day(2, 15)
    morning = fs_appointment(replica, first, 9)
    fs_appointment(replica, first, 14)
    fs_appointment(replica, ninth, 10)
    fs_appointment(replica, later, 10)
    windows = calendar_windows(page)
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, FS))
    page.get_by_role("button", name="Weiter").click()
    expect(page.locator(".calendar-caption h3")).to_have_text(f"{MONTHS[first.month - 1]} {first.year}")

    grid = page.locator(".muc-calendar-view-full-size > .muc-calendar-container:not(.table-header)")
    tiles = grid.locator("div.muc-calendar-item[role=button]")
    expect(tiles).to_have_count(calendar.monthrange(first.year, first.month)[1])
    spacers = date(first.year, first.month, 1).weekday()
    expect(grid.locator("> div")).to_have_count(spacers + calendar.monthrange(first.year, first.month)[1])
    expect(grid.locator("> div").nth(spacers)).to_have_attribute("aria-label", "1 auswählen")
    nine = tiles.nth(8)
    expect(nine).to_have_attribute("aria-label", "9 auswählen")
    expect(nine).to_have_text("9")
    expect(nine).to_have_attribute("aria-disabled", "false")
    expect(tiles.nth(3)).to_have_attribute("aria-disabled", "true")
    expect(tiles.nth(3)).to_have_class("muc-calendar-item disabled-tile")
    expect(page.locator("div.muc-calendar-item.selected")).to_have_text("3")
    expect(page.locator(".muc-calendar-container.table-header .header-item")).to_have_text(
        ["Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"]
    )

    heading = f"{WEEKDAYS[first.weekday()]}, {first:%d.%m.%Y}"
    expect(page.locator("h4")).to_have_text(heading)
    expect(page.locator(".wrapper.m-button-group")).to_have_count(0)
    expect(page.locator(f"#timeslot-grid-provider-{FS} p.left-text")).to_have_text(
        ["Vormittag", "Nachmittag"]
    )
    slot = page.locator(f"#provider-{FS}-timeslot-{morning}")
    expect(slot).to_have_class("m-button m-button--secondary timeslot")
    expect(slot).to_have_attribute("aria-label", "09:00 Uhr, Führerscheinstelle")
    expect(slot).to_have_text("09:00")

    for label, icon in (("Vorheriger Monat", "chevron-left"), ("Nächster Monat", "chevron-right")):
        month_button = page.locator(f'.calendar-caption button[aria-label="{label}"]')
        expect(month_button.locator(f'use[href="#icon-{icon}"]')).to_have_count(1)

    asked = len(windows)
    nine.click()
    expect(page.locator("h4")).to_have_text(f"{WEEKDAYS[ninth.weekday()]}, {ninth:%d.%m.%Y}")
    assert windows[asked:] == [ninth.isoformat()]

    page.locator('.calendar-caption button[aria-label="Nächster Monat"]').click()
    expect(page.locator(".calendar-caption h3")).to_have_text(f"{MONTHS[later.month - 1]} {later.year}")
    expect(page.locator("div.muc-calendar-item.selected")).to_have_text("15")
    assert windows[asked + 1 :] == [later.isoformat()]


def test_frueher_spaeter_page_the_day_parts_when_several_offices_offer_the_service(
    replica: Replica, page: Page
) -> None:
    """Wohnsitz-Anmeldung is offered by every Bürgerbüro: the page lists them as MucCheckboxes and
    shows one day part at a time with Früher/Später. Asserted: checkbox and hint ids, the office
    title, the morning only, Später shows the afternoon and disables itself, Früher goes back.
    Broken once by never paging (every day part at once): failed."""
    day = month_day(1, 5)
    morning, afternoon = at(day, 9), at(day, 16)
    replica.add_slots(ORLEANSPLATZ, [morning, afternoon])
    page.goto(replica.deep_link(WOHNSITZANMELDUNG, ORLEANSPLATZ))
    page.get_by_text("Ich bin kein Bot.").click()
    expect(page.get_by_text("Erfolgreich überprüft.")).to_be_visible(timeout=20_000)
    page.get_by_role("button", name="Weiter").click()

    expect(page.locator(f"input#checkbox-provider-{ORLEANSPLATZ}")).to_be_checked()
    expect(page.locator(f"#checkbox-hint-provider-{ORLEANSPLATZ}")).to_have_count(1)
    expect(page.locator(f"h5#provider-{ORLEANSPLATZ}")).to_have_text("Bürgerbüro Orleansplatz")
    earlier = page.locator(".wrapper.m-button-group button", has_text="Früher")
    later = page.locator(".wrapper.m-button-group button", has_text="Später")
    expect(earlier.locator('use[href="#icon-chevron-left"]')).to_have_count(1)
    expect(later.locator('use[href="#icon-chevron-right"]')).to_have_count(1)
    expect(earlier).to_have_attribute("aria-disabled", "true")
    expect(page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{morning}")).to_be_visible()
    expect(page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{afternoon}")).to_have_count(0)
    expect(page.locator("p.left-text")).to_have_text(["Vormittag"])

    later.click()
    expect(page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{afternoon}")).to_be_visible()
    expect(page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{morning}")).to_have_count(0)
    expect(later).to_have_attribute("aria-disabled", "true")
    earlier.click()
    expect(page.locator(f"#provider-{ORLEANSPLATZ}-timeslot-{morning}")).to_be_visible()


def test_more_than_18_times_are_grouped_by_hour(replica: Replica, page: Page) -> None:
    """19 times on one day at one office (one office offers the service: every hour at once).
    Asserted: one TimeSlotGrid per hour, labelled "8:00-8:59", "9:00-9:59", ... Broken once by
    raising the threshold: failed."""
    day = month_day(1, 6)
    starts = [at(day, 8) + i * 900 for i in range(20)]  # 19 two-unit appointments
    replica.add_slots(FS, starts)
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, FS))
    page.get_by_role("button", name="Weiter").click()
    expect(page.locator(f"#timeslot-grid-provider-{FS} p.left-text")).to_have_text(
        ["8:00-8:59", "9:00-9:59", "10:00-10:59", "11:00-11:59", "12:00-12:59"]
    )


def test_list_view_labels_days_like_the_heading(replica: Replica, page: Page) -> None:
    """The toggle's label says the current view and the action; the list view is an accordion of
    the bookable days, labelled "Montag, 04.01.2027", the first one open with its times. Broken once
    by labelling with the ISO date: failed."""
    first, second = month_day(1, 4), month_day(1, 7)
    start = fs_appointment(replica, first, 9)
    fs_appointment(replica, second, 9)
    page.goto(replica.deep_link(FUEHRERSCHEIN_UMSCHREIBUNG, FS))
    page.get_by_role("button", name="Weiter").click()
    toggle = page.locator("button.m-toggle-switch")
    expect(toggle).to_have_attribute("aria-label", "Kalenderansicht aktiv. Zur Listenansicht wechseln")
    toggle.click()
    expect(toggle).to_have_attribute("aria-label", "Listenansicht aktiv. Zur Kalenderansicht wechseln")
    headers = page.locator("#listViewAccordion button.m-accordion__section-button")
    expect(headers).to_have_text([f"{WEEKDAYS[d.weekday()]}, {d:%d.%m.%Y}" for d in (first, second)])
    expect(headers.first).to_have_attribute("aria-expanded", "true")
    expect(page.locator(f"#listContent-0 #provider-{FS}-timeslot-{start}")).to_be_visible()


def test_the_service_counter_renders_as_the_patternlab_does(replica: Replica, page: Page) -> None:
    """muc-patternlab-vue ``Form/MucCounter.vue``: the id zmscitizenview's ``ServiceFinder.vue``
    gives it (``service-<sid>``) lands on the counter's root element, the count is text in a
    ``<strong>`` after a visually hidden sentence, and the buttons say "Anzahl <name> reduzieren
    auf N" / "... erhöhen auf N". Tried: raising Wohnsitzanmeldung (at most 3) to 2 and back.
    Broken once by rendering the count in an input: failed."""
    page.goto(replica.deep_link(WOHNSITZANMELDUNG, ORLEANSPLATZ))
    counter = page.locator(f"#service-{WOHNSITZANMELDUNG}")
    expect(counter.locator("strong")).to_have_text("Aktuell ausgewählte Anzahl für Wohnsitzanmeldung ist 1")
    assert counter.evaluate("el => el.tagName") == "DIV"
    assert counter.locator("input").count() == 0
    page.get_by_role("button", name="Anzahl Wohnsitzanmeldung erhöhen auf 2").click()
    expect(counter.locator("strong")).to_have_text("Aktuell ausgewählte Anzahl für Wohnsitzanmeldung ist 2")
    page.get_by_role("button", name="Anzahl Wohnsitzanmeldung reduzieren auf 1").click()
    expect(counter.locator("strong")).to_have_text("Aktuell ausgewählte Anzahl für Wohnsitzanmeldung ist 1")
