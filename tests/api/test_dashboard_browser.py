"""The dashboard in real Chromium (pytest-playwright): it shows the farm's state from the database
and Redis, updates live over Server-Sent Events when a check records a new slot, and fits a phone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from shared.db.database import Database
from shared.domain import SITE_TIMEZONE, Observation, SlotSeen
from shared.recording import record_observation
from tests.api.conftest import OFFICE_ID, PERSONAL_STRINGS, SERVICE_ID, SITE, LiveServer, farm_alive, seed

pytestmark = pytest.mark.browser
WAIT_MS = 20_000


def test_dashboard_shows_state_and_updates_live(
    page: Page, live_server: LiveServer, db: Database, redis_url: str
) -> None:
    seeded = seed(db)
    farm_alive(redis_url)
    page.goto(live_server.url + "/")

    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    targets = page.locator("#sec-targets")
    row = targets.locator(f'tr[data-target="{seeded.target_id}"]')
    expect(row).to_contain_text("Wohnsitzanmeldung")
    expect(row).to_contain_text("Bürgerbüro Orleansplatz")
    expect(row.locator(".state")).to_have_text("ok")
    expect(row).to_contain_text("no slots")
    expect(row.locator('td[data-label="Latency p50 / p95"]')).to_have_text(re.compile(r"\d+ min / \d+ min"))
    expect(page.locator("#sec-summary")).to_contain_text("No Telegram token configured")
    expect(page.locator("#sec-summary .pill", has_text="workers")).to_have_text("workers 1")
    alerts = page.locator("#sec-alerts")
    expect(alerts.locator("li[data-alert]")).to_have_count(3)
    expect(alerts).to_contain_text("Free slot: Wohnsitzanmeldung at Bürgerbüro Orleansplatz")
    expect(page.locator("#sec-farm")).to_contain_text("testhost:101")
    expect(page.locator("#sec-farm tr[data-queue=checks]")).to_be_visible()
    expect(page.locator("#sec-bookings .booking-reserved")).to_have_text("reserved 1")
    expect(page.locator("#sec-latency svg.chart circle")).to_have_count(3)
    heat = page.locator(f'#sec-heatmaps figure[data-service="{SERVICE_ID}"]')
    expect(heat).to_contain_text("3 slots")
    expect(heat.locator("rect.cell")).to_have_count(7 * 24)
    expect(page.locator("time").first).to_have_text(re.compile(r"ago|\d"))
    html = page.content()
    for secret in PERSONAL_STRINGS:
        assert secret not in html

    # a worker records a check that saw a new slot: the page shows it without a reload
    observed = datetime.now(UTC)
    start = (observed + timedelta(days=9)).replace(hour=13, minute=45, second=0, microsecond=0)
    observation = Observation(
        site=SITE,
        service_id=SERVICE_ID,
        service_count=1,
        office_ids=(OFFICE_ID,),
        observed_at=observed,
        slots=[SlotSeen(office_id=OFFICE_ID, service_id=SERVICE_ID, start=start)],
        covered_days=frozenset({start.date()}),
    )
    with db.transaction() as session:
        result = record_observation(
            session, seeded.target_id, observation, worker_id="testhost:101", duration_ms=80
        )
    (new_slot,) = result.new_slot_ids
    page.evaluate("window.__sameDocument = true")

    expect(page.locator(f'#sec-slots li[data-slot="{new_slot}"]')).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(f'#sec-slots li[data-slot="{new_slot}"]')).to_contain_text(
        start.astimezone(SITE_TIMEZONE).strftime("%d.%m.%Y %H:%M")
    )
    expect(alerts.locator("li[data-alert]")).to_have_count(4, timeout=WAIT_MS)
    expect(row.locator('td[data-label="Open"]')).to_have_text("3", timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded


def test_dashboard_fits_a_phone(page: Page, live_server: LiveServer, db: Database) -> None:
    seed(db)
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(live_server.url + "/")
    expect(page.locator("#sec-targets td[data-label=Service]").first).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"page is {overflow}px wider than a phone screen"
    # table rows turn into cards: each cell carries its column name
    label = page.evaluate(
        "getComputedStyle(document.querySelector('#sec-targets td[data-label=State]'), '::before').content"
    )
    assert label == '"State"'
