"""Booking speed: slot released at the replica → reservation held, MTA versus a scripted fast human.

All walks run in real Chromium against the replica (captcha at the city's cost) in the same run:
- MTA: ``worker.bookings.run_booking`` (what the ``book_slot`` actor runs: database, budget, browser
  pool, ``MunichBooker``) with the human pacer at its default settings;
- a scripted "fast human": Playwright doing the same steps with a person's delays (about 1 s reading
  each page, typing 8 characters/s, clicking);
- the machine floor: ``run_booking`` with no pacer.
The clock is the replica's own event log: "released" (the control API added the slot) to
"reserved" (reserve-appointment answered) and to "preconfirmed" (the activation mail went out).
The booking starts the moment the slot is released: detection delay is benchmark b10's figure.

A second table runs the issue's contention case in a real Dramatiq worker: N autobook users
wanting the same few slots, and checks no user and no slot is booked twice.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench._harness import Table, median, percentile, replica
from replica.config import PAGE_PATH
from shared.db.database import Database, open_database
from shared.db.models import (
    ACTIVE_BOOKING_STATUSES,
    Booking,
    BookingProfile,
    BookingStatus,
    Notification,
    Subscription,
    User,
)
from shared.domain import SITE_TIMEZONE
from shared.logging import configure_logging
from shared.settings import Settings, load_settings, reset_settings_cache
from tests.booking.conftest import observe
from tests.conftest import free_port, wait_for_port
from tests.support.replica import berlin_slot
from worker.sites.munich import booking_selectors as bsel
from worker.sites.munich import selectors as sel

ORLEANSPLATZ = 102522
WOHNSITZANMELDUNG = 1063475
"""Bürgerbüro Orleansplatz, Wohnsitzanmeldung: captcha, telephone field, one unit."""
FS_OFFICE = 10308174
FS_SERVICE = 1071896
"""Führerscheinstelle: no captcha, Geburtsdatum field, two units per appointment."""
UNIT_S = 900
PERSON = {
    "first_name": "Erika",
    "last_name": "Mustermann",
    "phone": "+491511234567",
}
READ_S = 1.0
TYPE_CHARS_PER_S = 8.0


# --- plumbing ------------------------------------------------------------------------------------
@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="mta-bench-redis-") as folder:
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


class Site:
    """The replica's control API, synchronously."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.page_url = base_url + PAGE_PATH
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, "/_replica" + path, **kwargs)
        response.raise_for_status()
        return response.json()

    def release(self, office: int, timestamps: list[int]) -> None:
        self.control("POST", "/slots", json={"office": office, "timestamps": timestamps})

    def times(self, office: int, timestamp: int) -> dict[str, float]:
        """Seconds from "released" to "reserved" and "preconfirmed" for the slot at ``timestamp``."""
        events = self.control("GET", "/events")
        released = next(
            e["at"]
            for e in events
            if e["kind"] == "released" and e["officeId"] == office and timestamp in e["timestamps"]
        )
        t0 = datetime.fromisoformat(released)
        out: dict[str, float] = {}
        for p in self.control("GET", "/processes"):
            if p["officeId"] != office or p["timestamp"] != timestamp:
                continue
            out["reserved"] = (datetime.fromisoformat(p["createdAt"]) - t0).total_seconds()
            for item in p["history"]:
                if "preconfirm" in str(item["event"]):
                    out["preconfirmed"] = (datetime.fromisoformat(str(item["at"])) - t0).total_seconds()
        return out


def bench_settings(folder: Path, redis_url: str, site: Site, pacer: str) -> Settings:
    return load_settings(
        data_dir=folder,
        redis_url=redis_url,
        env="test",
        pacer=pacer,
        site_url=site.page_url,
        booking_budget_per_minute=600,
        site_budget_per_minute=600,
        trace_on_failure=False,
        browser_warm_sessions=4,
    )


def add_person(db: Database, user_id: int, service_id: int, office_id: int) -> int:
    """A user with a profile and an autobook subscription; returns the subscription id."""
    with db.transaction() as session:
        session.add(User(id=user_id, language="de", consented_at=datetime.now(UTC)))
        session.flush()
        session.add(
            BookingProfile(
                user_id=user_id,
                first_name=PERSON["first_name"],
                last_name=f"Muster{user_id}",
                email=f"person{user_id}@example.org",
                phone=PERSON["phone"],
                custom_fields={"date_of_birth": "01.02.1990"},
            )
        )
        sub = Subscription(user_id=user_id, service_id=service_id, office_ids=[office_id], autobook=True)
        session.add(sub)
        session.flush()
        return int(sub.id)


def bookings_module(redis_url: str) -> Any:
    """``worker.bookings``, with the broker built from ``MTA_REDIS_URL`` first (as an entry point
    does: the actors declare against it)."""
    from worker.broker import setup_broker

    os.environ.setdefault("MTA_REDIS_URL", redis_url)
    reset_settings_cache()
    setup_broker()
    from worker import bookings

    return bookings


# --- the fast human ------------------------------------------------------------------------------
async def human_walk(
    page: Any, site: Site, office_id: int, service_id: int, timestamp: int, email: str
) -> None:
    """A person who knows the form: reads each page for a second, types 8 characters/s. Each walk
    is another person, with their own e-mail address (the city caps appointments per address)."""
    delay_ms = 1000 / TYPE_CHARS_PER_S
    page.set_default_timeout(60_000)
    await page.goto(sel.deep_link(site.page_url, service_id, office_id), wait_until="domcontentloaded")
    next_button = page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True)
    await next_button.first.wait_for(state="visible")
    await asyncio.sleep(READ_S)
    label = page.get_by_text(sel.CAPTCHA_LABEL, exact=True)
    # a person waits until the page shows the captcha or lets them go on
    deadline = time.monotonic() + 60
    while not await label.count() and await next_button.first.get_attribute("aria-disabled") == "true":
        if time.monotonic() > deadline:
            raise TimeoutError("the service step showed neither the captcha nor an enabled Weiter")
        await asyncio.sleep(0.1)
    if await label.count():
        await label.first.click()
        await page.get_by_text(sel.CAPTCHA_VERIFIED, exact=True).first.wait_for(
            state="visible", timeout=60_000
        )
    await next_button.first.click()
    await page.locator(sel.TIMESLOT_BUTTON).first.wait_for(state="visible", timeout=30_000)
    await asyncio.sleep(READ_S)
    button = page.locator(bsel.timeslot_button(office_id, timestamp))
    if not await button.count():
        day = datetime.fromtimestamp(timestamp, UTC).astimezone(SITE_TIMEZONE).date()
        # a person turns months until the caption names the slot's month (tiles carry only the day
        # number, so the same label stands in every month), then clicks the day
        caption = page.locator(bsel.CALENDAR_CAPTION).first
        for _ in range(7):
            if bsel.parse_month_caption((await caption.inner_text()).strip()) == (day.year, day.month):
                break
            await page.locator(bsel.NEXT_MONTH_BUTTON).first.click()
            await asyncio.sleep(0.3)
        await page.locator(bsel.day_tile(day)).first.click()
        await button.first.wait_for(state="visible", timeout=30_000)
    await button.first.click()
    await page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True).last.click()
    first = page.locator(bsel.FIRST_NAME_INPUT).first
    await first.wait_for(state="visible", timeout=30_000)
    await asyncio.sleep(READ_S)
    for selector, value in (
        (bsel.FIRST_NAME_INPUT, PERSON["first_name"]),
        (bsel.LAST_NAME_INPUT, PERSON["last_name"]),
        (bsel.EMAIL_INPUT, email),
        (bsel.PHONE_INPUT, PERSON["phone"]),
    ):
        field = page.locator(selector)
        if await field.count():
            await field.first.click()
            await field.first.press_sequentially(value, delay=delay_ms)
    await page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True).last.click()
    await page.locator(bsel.SUMMARY).first.wait_for(state="visible", timeout=30_000)
    await asyncio.sleep(READ_S)
    await page.locator(bsel.TERMS_CHECKBOX).first.check()
    await page.get_by_role("button", name=bsel.BOOK_BUTTON, exact=True).first.click()
    await page.get_by_text(bsel.ACTIVATE_CALLOUT, exact=True).first.wait_for(state="visible", timeout=30_000)


# --- table 1: one booking, three ways ------------------------------------------------------------
@dataclass
class Walks:
    times: dict[str, list[dict[str, float]]]
    outcomes: dict[str, Counter[str]]
    errors: dict[str, list[str]]


def _walks(repetitions: int) -> Walks:
    with (
        tempfile.TemporaryDirectory(prefix="mta-bench-book-") as folder,
        redis_server() as redis_url,
        replica() as base_url,
    ):
        site = Site(base_url)
        bookings = bookings_module(redis_url)
        from worker.browser import BrowserPool
        from worker.captcha import InPageAltchaSolver
        from worker.pacer import pacer_from_settings
        from worker.sites.munich.booker import MunichBooker

        human_settings = bench_settings(Path(folder), redis_url, site, pacer="human")
        floor_settings = bench_settings(Path(folder), redis_url, site, pacer="none")
        db = open_database(human_settings, migrate=True)
        client = redis.Redis.from_url(redis_url)
        times: dict[str, list[dict[str, float]]] = {"mta": [], "human": [], "floor": []}
        outcomes: dict[str, Counter[str]] = {k: Counter() for k in times}
        errors: dict[str, list[str]] = {k: [] for k in times}

        async def main() -> None:
            async with BrowserPool(human_settings, trace=False) as pool:

                def deps(settings: Settings) -> Any:
                    booker = MunichBooker(solver=InPageAltchaSolver(), pacer=pacer_from_settings(settings))
                    return bookings.BookingDeps(
                        settings=settings, db=db, redis=client, pool=pool, booker=booker
                    )

                ways = {"mta": deps(human_settings), "floor": deps(floor_settings), "human": None}
                n = 0
                for rep in range(repetitions):
                    for way, way_deps in ways.items():
                        n += 1
                        start = berlin_slot(days_ahead=2 + n // 8, hour=8 + n % 8, minute=15)
                        # each walk is another person (another address): fresh rate-limit counters
                        site.control("POST", "/ratelimit/reset")
                        site.release(ORLEANSPLATZ, [start])
                        try:
                            if way_deps is None:
                                async with pool.session(f"human-{rep}") as session:
                                    await human_walk(
                                        session.page,
                                        site,
                                        ORLEANSPLATZ,
                                        WOHNSITZANMELDUNG,
                                        start,
                                        f"person{60_000 + n}@example.org",
                                    )
                                outcomes[way]["preconfirmed"] += 1
                            else:
                                user_id = 60_000 + n
                                sub_id = await asyncio.to_thread(
                                    add_person, db, user_id, WOHNSITZANMELDUNG, ORLEANSPLATZ
                                )
                                (slot_id,) = await asyncio.to_thread(
                                    observe,
                                    db,
                                    office_id=ORLEANSPLATZ,
                                    service_id=WOHNSITZANMELDUNG,
                                    starts=[start],
                                )
                                report = await bookings.run_booking(
                                    way_deps,
                                    user_id=user_id,
                                    slot_id=slot_id,
                                    subscription_id=sub_id,
                                    requested_at=datetime.now(UTC),
                                )
                                outcomes[way][report.outcome] += 1
                                if report.outcome != "preconfirmed":
                                    errors[way].append(await asyncio.to_thread(_booking_error, db, user_id))
                        except Exception as exc:  # a failed walk is counted, not fatal
                            outcomes[way][type(exc).__name__] += 1
                            errors[way].append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                        measured = await asyncio.to_thread(site.times, ORLEANSPLATZ, start)
                        if "preconfirmed" in measured:
                            times[way].append(measured)

        try:
            asyncio.run(main())
        finally:
            client.close()
            db.close()
        return Walks(times, outcomes, errors)


def _booking_table(quick: bool) -> Table:
    repetitions = 1 if quick else 5
    walks = _walks(repetitions)
    table = Table(
        "Booking: slot released → reservation held (and → activation mail), real Chromium vs the replica",
        [
            "who",
            "walks ok",
            "held p50 (s)",
            "held p95 (s)",
            "mail p50 (s)",
            "mail p95 (s)",
            "outcomes",
        ],
    )
    labels = {
        "mta": "MTA, human pacer (defaults)",
        "human": "scripted fast human",
        "floor": "MTA, no pacer (machine floor)",
    }
    for way in ("mta", "human", "floor"):
        held = [t["reserved"] for t in walks.times[way]]
        mail = [t["preconfirmed"] for t in walks.times[way]]
        table.add(
            labels[way],
            f"{len(held)}/{repetitions}",
            median(held),
            percentile(held, 95),
            median(mail),
            percentile(mail, 95),
            ", ".join(f"{k} {v}" for k, v in sorted(walks.outcomes[way].items())),
        )
    for way in ("mta", "human", "floor"):
        for error in walks.errors[way]:
            table.notes.append(f"{labels[way]}, failed walk: {error}")
    table.notes += [
        "Bürgerbüro Orleansplatz, Wohnsitzanmeldung (captcha at the replica's default cost, contact form "
        "with telephone). Times from the replica's event log: slot released → reserve-appointment "
        "answered (held) → preconfirm-appointment answered (activation mail). The walk starts the moment "
        "the slot is released: detection delay is not included (see the detection benchmark).",
        f"MTA: worker.bookings.run_booking with MunichBooker and the settings' HumanPacer (think "
        f"400-1,500 ms before each action, 40-140 ms per key). Fast human: Playwright, {READ_S:.0f} s "
        f"reading each page, {TYPE_CHARS_PER_S:.0f} chars/s typing, immediate clicks. Walks alternate, "
        f"{repetitions} each, one browser (with so few walks, p95 is the slowest); the replica's per-address "
        "rate-limit counters are reset before each walk, since each walker stands for another person.",
    ]
    return table


# --- table 2: many autobook users, few slots -----------------------------------------------------
def _contention(users: int, slots: int, threads: int) -> dict[str, Any]:
    import dramatiq

    with (
        tempfile.TemporaryDirectory(prefix="mta-bench-contend-") as folder,
        redis_server() as redis_url,
        replica() as base_url,
    ):
        site = Site(base_url)
        bookings = bookings_module(redis_url)
        from worker.broker import BOOKINGS_QUEUE, make_broker

        settings = bench_settings(Path(folder), redis_url, site, pacer="none")
        db = open_database(settings, migrate=True)
        actors = [bookings.book_slot, bookings.cancel_booking, bookings.poll_booking_states]
        previous = [actor.broker for actor in actors]
        # the worker's own middleware opens the runtime (pool, booker, database, Redis) at boot
        broker = make_broker(settings, with_browser=True)
        for actor in actors:
            actor.broker = broker
            broker.declare_actor(actor)
        worker = dramatiq.Worker(broker, queues={BOOKINGS_QUEUE}, worker_threads=threads, worker_timeout=100)
        worker.start()
        try:
            starts = [berlin_slot(days_ahead=3 + i // 8, hour=8 + i % 8) for i in range(slots)]
            site.release(FS_OFFICE, [t for s in starts for t in (s, s + UNIT_S)])
            people = [70_000 + i for i in range(users)]
            for user_id in people:
                add_person(db, user_id, FS_SERVICE, FS_OFFICE)
            slot_ids = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=starts)
            started = time.monotonic()
            queued = bookings.dispatch_autobook(db, slot_ids)
            deadline = started + 120 + users * 6
            while True:
                rows = _bookings(db)
                finished = {b.user_id for b in rows if b.status is BookingStatus.PRECONFIRMED}
                finished |= _told_taken(db)
                active = [b for b in rows if b.status in (BookingStatus.HOLDING, BookingStatus.RESERVED)]
                if len(finished) >= len(people) and not active:
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            total_s = time.monotonic() - started
            rows = _bookings(db)
            won = [b for b in rows if b.status is BookingStatus.PRECONFIRMED]
            active = [b for b in rows if b.status in ACTIVE_BOOKING_STATUSES]
            held = [
                p for p in site.control("GET", "/processes") if p["status"] in ("reserved", "preconfirmed")
            ]
            return {
                "queued": queued,
                "won": len(won),
                "settled": len(finished),
                "per_user": max(Counter(b.user_id for b in active).values(), default=0),
                "per_slot": max(Counter(b.slot_id for b in active).values(), default=0),
                "per_slot_city": max(Counter(p["timestamp"] for p in held).values(), default=0),
                "held_city": len(held),
                "mails": len(site.control("GET", "/mail", params={"kind": "activation"})),
                "total_s": total_s,
                "walks": len(rows),
            }
        finally:
            worker.stop(timeout=10_000)
            broker.close()
            for actor, old in zip(actors, previous, strict=True):
                actor.broker = old
            db.close()


def _booking_error(db: Database, user_id: int) -> str:
    with db.transaction() as session:
        row = session.query(Booking).filter_by(user_id=user_id).order_by(Booking.id.desc()).first()
        return "no booking row" if row is None else f"{row.status.value}: {(row.error or '')[:120]}"


def _bookings(db: Database) -> list[Booking]:
    with db.transaction() as session:
        rows = session.query(Booking).order_by(Booking.id).all()
        for row in rows:
            session.expunge(row)
        return rows


def _told_taken(db: Database) -> set[int]:
    with db.transaction() as session:
        rows = session.query(Notification).filter(Notification.booking_id.is_not(None)).all()
        return {int(n.user_id) for n in rows if n.payload.get("event") == "taken" and n.user_id is not None}


def _contention_table(quick: bool) -> Table:
    users, slots, threads = (12, 3, 3) if quick else (50, 10, 4)
    figures = _contention(users, slots, threads)
    table = Table(
        "Booking contention: autobook users racing for few slots (real Dramatiq worker, no pacer)",
        [
            "users",
            "slots",
            "threads",
            "settled",
            "booked",
            "max per user",
            "max per slot (MTA / city)",
            "activation mails",
            "booking walks",
            "total (s)",
        ],
    )
    table.add(
        users,
        slots,
        threads,
        f"{figures['settled']}/{users}",
        figures["won"],
        figures["per_user"],
        f"{figures['per_slot']} / {figures['per_slot_city']}",
        figures["mails"],
        figures["walks"],
        figures["total_s"],
    )
    table.notes.append(
        "Führerscheinstelle (two units per appointment, no captcha). One check records the slots, "
        "dispatch_autobook queues a book_slot message per user, a Dramatiq worker with the given threads "
        '(one event loop, one browser) walks them; settled = preconfirmed or told "taken" once. '
        "Max per user and per slot must be 1; total = dispatch → every user settled."
    )
    return table


def run(quick: bool) -> list[Table]:
    configure_logging(load_settings(env="test", log_level="WARNING"), role="bench")
    return [_booking_table(quick), _contention_table(quick)]
