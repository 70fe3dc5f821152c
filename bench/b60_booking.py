"""Booking speed: one slot released at the replica, MTA and a scripted fast human race for it.

All walks run in real Chromium against the replica (captcha at the city's cost) in the same run,
the same browser and the same two cores. Each race starts the moment the slot is released, with
both sides where they would be:
- MTA: its standby page (``worker.standby.keep_standbys``: the service step with the captcha
  passed, prepared before the release as the booking-state job keeps it) and the slot's alert;
  ``worker.bookings.run_booking`` (what the ``book_slot`` actor runs: database, budget, browser
  pool, ``MunichBooker``) with the default pacing;
- a scripted "fast human" with the booking page open on the calendar, who refreshes it (reload,
  captcha, Weiter) and books with a person's delays (about 1 s reading each page, typing
  8 characters/s, immediate clicks).
Whoever's reserve request the replica answers first holds the slot. Times: each page's reserve
answer, and for the winner the replica's event log ("released" to "reserved" and "preconfirmed").
Detection delay is benchmark b10's figure.

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
from playwright.async_api import Error as PlaywrightError

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
async def human_to_calendar(page: Any, site: Site, office_id: int, service_id: int, *, reload: bool) -> None:
    """A person who knows the page: (re)loads it, reads the service step for a second, passes the
    captcha, presses Weiter and waits for the calendar (times, or the no-slots callout)."""
    page.set_default_timeout(60_000)
    if reload:
        await page.reload(wait_until="domcontentloaded")
    else:
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
    shown = page.locator(sel.TIMESLOT_BUTTON).or_(page.get_by_text(sel.NO_SLOTS, exact=True))
    await shown.first.wait_for(state="visible", timeout=30_000)


async def human_book(page: Any, office_id: int, timestamp: int, email: str) -> bool:
    """From the calendar: read it for a second, turn to the slot's month by the caption, pick the
    day and the time, press Weiter; False when the city answers that the slot is gone. Then type
    the contact details at 8 characters/s and book."""
    delay_ms = 1000 / TYPE_CHARS_PER_S
    await asyncio.sleep(READ_S)
    if await page.get_by_text(sel.NO_SLOTS, exact=True).count():
        return False  # the page says nothing is free: someone was faster
    button = page.locator(bsel.timeslot_button(office_id, timestamp))
    if not await button.count():
        day = datetime.fromtimestamp(timestamp, UTC).astimezone(SITE_TIMEZONE).date()
        try:
            # a person turns months until the caption names the slot's month (tiles carry only the
            # day number, so the same label stands in every month), then clicks the day
            caption = page.locator(bsel.CALENDAR_CAPTION).first
            for _ in range(7):
                shown = bsel.parse_month_caption((await caption.inner_text(timeout=10_000)).strip())
                if shown == (day.year, day.month):
                    break
                await page.locator(bsel.NEXT_MONTH_BUTTON).first.click(timeout=10_000)
                await asyncio.sleep(0.3)
            await page.locator(bsel.day_tile(day)).first.click(timeout=10_000)
            await button.first.wait_for(state="visible", timeout=10_000)
        except PlaywrightError:  # the day or the time is no longer offered: someone was faster
            return False
    await button.first.click()
    async with page.expect_response(lambda r: bsel.RESERVE_ENDPOINT in r.url) as reserved:
        await page.get_by_role("button", name=sel.NEXT_BUTTON, exact=True).last.click()
    if not (await reserved.value).ok:
        return False
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
    return True


def reserve_clock(page: Any, answers: dict[str, tuple[float, bool]], who: str) -> None:
    """Note when ``page`` gets its first reserve-appointment answer (monotonic s) and whether it held."""

    def on_response(response: Any) -> None:
        if bsel.RESERVE_ENDPOINT in response.url and who not in answers:
            answers[who] = (time.monotonic(), response.ok)

    page.on("response", on_response)


# --- table 1: one slot, MTA and the fast human race for it ---------------------------------------
@dataclass
class Races:
    n: int
    won: Counter[str]
    reserve_s: dict[str, list[float]]
    """Seconds from the release to each side's reserve answer (held or refused)."""
    held_s: dict[str, list[float]]
    mail_s: dict[str, list[float]]
    """For the winner: release to held / to the activation mail (the replica's event log)."""
    outcomes: dict[str, Counter[str]]
    errors: list[str]
    standby_requests: list[int]
    standby_from_start: int
    """Races in which MTA found no ready standby (it then walks from the deep link)."""


def _races(n: int) -> Races:
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
        from worker.sites.booking import Standby
        from worker.sites.munich.booker import MunichBooker
        from worker.standby import keep_standbys, wanted_standbys

        settings = bench_settings(Path(folder), redis_url, site, pacer="human")
        db = open_database(settings, migrate=True)
        client = redis.Redis.from_url(redis_url)
        races = Races(
            n,
            Counter(),
            {"mta": [], "human": []},
            {"mta": [], "human": []},
            {"mta": [], "human": []},
            {"mta": Counter(), "human": Counter()},
            [],
            [],
            0,
        )
        target = Standby("munich", WOHNSITZANMELDUNG, ORLEANSPLATZ, 1)

        async def main() -> None:
            async with BrowserPool(settings, trace=False) as pool, pool.session("the-human") as human:
                booker = MunichBooker(solver=InPageAltchaSolver(), pacer=pacer_from_settings(settings))
                deps = bookings.BookingDeps(settings=settings, db=db, redis=client, pool=pool, booker=booker)
                for i in range(n):
                    start = berlin_slot(days_ahead=2 + i // 8, hour=8 + i % 8, minute=15)
                    user_id = 60_000 + i
                    sub_id = await asyncio.to_thread(add_person, db, user_id, WOHNSITZANMELDUNG, ORLEANSPLATZ)
                    # where each stands when the slot comes: MTA's standby (as the booking-state job
                    # keeps it), the person's page on the calendar
                    site.control("POST", "/ratelimit/reset")
                    wanted = await asyncio.to_thread(wanted_standbys, db, settings.booking_standbys)
                    kept = await keep_standbys(deps, wanted)
                    if kept.prepared:
                        races.standby_requests.append(kept.requests)
                    await human_to_calendar(human.page, site, ORLEANSPLATZ, WOHNSITZANMELDUNG, reload=i > 0)
                    standby = pool.warm_session(target.key)
                    if standby is None:
                        races.standby_from_start += 1
                    answers: dict[str, tuple[float, bool]] = {}
                    if standby is not None:
                        reserve_clock(standby.page, answers, "mta")
                    reserve_clock(human.page, answers, "human")
                    # the alert's slot is recorded beforehand: detection is not part of the race
                    (slot_id,) = await asyncio.to_thread(
                        observe, db, office_id=ORLEANSPLATZ, service_id=WOHNSITZANMELDUNG, starts=[start]
                    )
                    await asyncio.sleep(1.0)
                    site.control("POST", "/ratelimit/reset")  # two people, two addresses
                    site.release(ORLEANSPLATZ, [start])
                    t0 = time.monotonic()

                    async def mta(
                        user_id: int = user_id, slot_id: int = slot_id, sub_id: int = sub_id
                    ) -> str:
                        report = await bookings.run_booking(
                            deps,
                            user_id=user_id,
                            slot_id=slot_id,
                            subscription_id=sub_id,
                            requested_at=datetime.now(UTC),
                        )
                        return report.outcome

                    async def person(i: int = i, start: int = start, seen: dict[str, Any] = answers) -> str:
                        await human_to_calendar(
                            human.page, site, ORLEANSPLATZ, WOHNSITZANMELDUNG, reload=True
                        )
                        won = await human_book(
                            human.page, ORLEANSPLATZ, start, f"person{70_000 + i}@example.org"
                        )
                        if won:
                            return "preconfirmed"
                        # lost: told so by the reserve answer, or the page showed the slot gone first
                        return "taken" if "human" in seen else "gone before the pick"

                    results = await asyncio.gather(mta(), person(), return_exceptions=True)
                    for who, result in zip(("mta", "human"), results, strict=True):
                        if isinstance(result, BaseException):
                            races.outcomes[who][type(result).__name__] += 1
                            races.errors.append(
                                f"{who}: {type(result).__name__}: {str(result).splitlines()[0][:120]}"
                            )
                        else:
                            races.outcomes[who][result] += 1
                        if who in answers:
                            races.reserve_s[who].append(answers[who][0] - t0)
                    holders = [who for who, (_, ok) in answers.items() if ok]
                    if len(holders) == 1:
                        winner = holders[0]
                        races.won[winner] += 1
                        measured = await asyncio.to_thread(site.times, ORLEANSPLATZ, start)
                        if "reserved" in measured:
                            races.held_s[winner].append(measured["reserved"])
                        if "preconfirmed" in measured:
                            races.mail_s[winner].append(measured["preconfirmed"])
                    else:
                        races.errors.append(f"race {i}: reserve answers {answers}")

        try:
            asyncio.run(main())
        finally:
            client.close()
            db.close()
        return races


def _booking_table(quick: bool) -> Table:
    n = 2 if quick else 10
    races = _races(n)
    settings = load_settings(env="test")
    table = Table(
        "Booking race: one slot released, MTA (standby page, default pacing) and a scripted fast "
        "human go for it at once",
        [
            "who",
            "races won",
            "reserve answered p50 (s)",
            "reserve answered p95 (s)",
            "held p50 (s, races won)",
            "mail p50 (s, races won)",
            "outcomes",
        ],
    )
    labels = {"mta": "MTA, standby + default pacing", "human": "scripted fast human"}
    for who in ("mta", "human"):
        table.add(
            labels[who],
            f"{races.won[who]}/{n}",
            median(races.reserve_s[who]),
            percentile(races.reserve_s[who], 95),
            median(races.held_s[who]),
            median(races.mail_s[who]),
            ", ".join(f"{k} {v}" for k, v in sorted(races.outcomes[who].items())),
        )
    for error in races.errors:
        table.notes.append(f"failed or undecided: {error}")
    per_prep = (
        sum(races.standby_requests) / len(races.standby_requests) if races.standby_requests else float("nan")
    )
    table.notes += [
        "Bürgerbüro Orleansplatz, Wohnsitzanmeldung (captcha at the replica's default cost). Each race: one "
        "slot released at the replica; both start the moment it is released, from where each would be. "
        "The person has the booking page open on the calendar and refreshes it (reload: the service step, "
        "the captcha again, Weiter, as the city's page asks after a reload); MTA has its standby page (the "
        "service step with the captcha passed, prepared by worker.standby.keep_standbys before the release) "
        "and the slot's alert (detection delay, benchmark b10, is left out). Same replica, same browser, "
        "the same machine's two cores for both; the replica's per-address rate limit is reset before each "
        "race (two people, two addresses). Whoever's reserve-appointment the city answers first holds the "
        "slot; the other is told it is gone.",
        f"MTA: worker.bookings.run_booking (the book_slot actor's body) with MunichBooker and the default "
        f"pacing: {settings.think_time_min_ms}-{settings.think_time_max_ms} ms before each click, "
        f"{settings.typing_delay_min_ms}-{settings.typing_delay_max_ms} ms per key, mouse moved onto each "
        f"element. Fast human: Playwright, {READ_S:.0f} s reading each page, "
        f"{TYPE_CHARS_PER_S:.0f} chars/s typing, immediate clicks.",
        f"Politeness: preparing a standby cost {per_prep:.1f} API requests on average (charged to the site "
        f"budget, with a booking token); a standby waits without requests and is prepared again two "
        f"minutes before its 5-minute captcha token ends (about every 3 min per target); "
        f"{races.standby_from_start} of {n} races found no ready standby.",
        "Reserve answered: release to the reserve-appointment answer each side's page received (the loser's "
        "answer is the refusal). Held and mail: release to the replica's reserved and preconfirmed events.",
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
