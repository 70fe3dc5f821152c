"""The site registry (what the runtime, the booking actor and the recorder build a site from) and
the booker's fake."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any, cast

from shared.settings import Settings
from worker.pacer import NoPacer
from worker.sites.base import FakeBooker
from worker.sites.booking import CityHold, Contact, Preconfirmed, SlotTaken, SlotToBook
from worker.sites.registry import sites


def test_every_site_builds_its_adapter_and_booker(worker_settings: Settings) -> None:
    """Asserted: the registry knows Munich under the name targets carry; its adapter answers to
    that name and takes a pinned day (the recorder's replays), its booker can book."""
    known = sites()
    assert set(known) == {"munich"}
    pinned = date(2026, 12, 9)
    adapter = known["munich"].make_adapter(settings=worker_settings, pacer=NoPacer(), today=lambda: pinned)
    assert adapter.site == "munich"
    assert cast(Any, adapter).today() == pinned
    assert callable(known["munich"].make_booker(NoPacer()).book)


def test_the_fake_booker_follows_its_script() -> None:
    """Tried: a scripted "taken", then an empty script. Asserted: the first booking is taken, the
    second preconfirms and reports its hold through ``on_reserved`` first."""
    booker = FakeBooker([SlotTaken("appointmentNotAvailable")])
    slot = SlotToBook(10308174, 1071896, datetime(2026, 12, 9, 8, tzinfo=UTC))
    contact = Contact("Ada", "Muster", "ada@example.org")
    holds: list[CityHold] = []

    async def reserved(hold: CityHold) -> None:
        holds.append(hold)

    async def run() -> tuple[object, object]:
        session = cast(Any, None)
        first = await booker.book(session, "http://site", slot, contact, on_reserved=reserved)
        second = await booker.book(session, "http://site", slot, contact, on_reserved=reserved)
        return first, second

    first, second = asyncio.run(run())
    assert isinstance(first, SlotTaken)
    assert isinstance(second, Preconfirmed) and holds == [second.hold]
    assert len(booker.booked) == 2
