"""Booking one slot in real Chromium against the replica: race, refusal, expiry, cancel, redelivery.

These tests call ``worker.bookings.run_booking`` (the body of the ``book_slot`` actor) directly, in
the test's event loop with one browser pool; ``test_booking_worker.py`` runs the actors in a real
Dramatiq worker.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.db.database import Database
from shared.db.models import Booking, BookingStatus, Subscription, SubscriptionState
from tests.booking.conftest import (
    FS_OFFICE,
    FS_SERVICE,
    UNIT_S,
    add_person,
    booking_events,
    bookings,
    fs_slot,
    notification_payloads,
    observe,
    replica_now,
)
from tests.support.replica import Replica, berlin_slot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def book(deps: Any, person: Any, slot_id: int, **kwargs: Any) -> Any:
    from worker.bookings import run_booking

    return await run_booking(
        deps,
        user_id=person.user_id,
        slot_id=slot_id,
        subscription_id=person.subscription_id,
        requested_at=kwargs.pop("requested_at", datetime.now(UTC)),
        **kwargs,
    )


async def test_two_subscribers_race_for_one_slot(deps: Any, db: Database, replica: Replica) -> None:
    """Two autobook subscribers, one slot, two concurrent bookings: one preconfirmed booking (the
    activation mail went to its owner), one failed booking with exactly one "taken" message."""
    start = fs_slot(replica, days_ahead=3, hour=9)
    first = add_person(db, 1001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    second = add_person(db, 1002, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])

    reports = await asyncio.gather(book(deps, first, slot_id), book(deps, second, slot_id))

    assert sorted(r.outcome for r in reports) == ["preconfirmed", "taken"]
    rows = bookings(db)
    won = [b for b in rows if b.status is BookingStatus.PRECONFIRMED]
    lost = [b for b in rows if b.status is BookingStatus.FAILED]
    assert len(won) == 1 and len(lost) == 1
    winner = first if won[0].user_id == first.user_id else second
    loser = second if winner is first else first
    assert [e for _, e in booking_events(db, loser.user_id)] == ["taken"]
    assert [e for _, e in booking_events(db, winner.user_id)] == ["holding", "reserved"]
    held = [p for p in replica.processes() if p["status"] != "cancelled"]
    assert len(held) == 1 and held[0]["status"] == "preconfirmed" and held[0]["timestamp"] == start
    mails = replica.mail(kind="activation")
    assert [m["to"] for m in mails] == [winner.email]
    assert won[0].process_id == str(held[0]["processId"]) and won[0].auth_key == held[0]["authKey"]
    assert won[0].activation_deadline is not None  # Führerscheinstelle: 60 minutes from preconfirm
    left = won[0].activation_deadline - datetime.now(UTC)
    assert timedelta(minutes=55) < left <= timedelta(minutes=60)


async def test_site_refuses_plus_email_names_the_field_and_is_not_retried(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: a stored profile with "max+test@example.org" (the site's pattern refuses '+').
    Asserts: a failed booking naming the e-mail field and the page's reason, the city hold given
    back (no update sent, process cancelled), and a second request for the same profile is not
    walked at all."""
    start = fs_slot(replica, days_ahead=2, hour=10)
    person = add_person(db, 2001, service_id=FS_SERVICE, office_id=FS_OFFICE, email="max+test@example.org")
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])

    report = await book(deps, person, slot_id)

    assert report.outcome == "refused"
    (row,) = bookings(db)
    assert row.status is BookingStatus.FAILED
    (failed,) = notification_payloads(db, "failed")
    assert failed["field"] == "email"
    assert "E-Mail-Adresse" in failed["reason"]
    assert "max+test" not in str(failed)  # the address itself never goes into the outbox
    (process,) = replica.processes()
    assert process["status"] == "cancelled"  # the slot goes back to others
    requests = replica.control("GET", "/requests", params={"path": "update-appointment"})["requests"]
    assert requests == []

    again = await book(deps, person, slot_id)
    assert again.outcome == "profile_refused" and again.attempts == 0
    assert len(bookings(db)) == 1


async def test_expired_reservation_is_detected_and_reported(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: the walk dies right after the city reserved (the hold is recorded, nothing else),
    then the replica clock jumps 16 minutes (Führerscheinstelle reservation: 15). Asserts: the poll
    marks the booking expired (reservation) and queues one "expired" message."""
    from worker.bookings import poll_bookings
    from worker.sites.munich.booker import MunichBooker

    class DiesAfterReserve(MunichBooker):
        async def book(
            self, session: Any, site_url: str, slot: Any, contact: Any, *, on_reserved: Any = None
        ) -> Any:
            async def record_then_die(hold: Any) -> None:
                await on_reserved(hold)
                raise _WorkerKilled

            return await super().book(session, site_url, slot, contact, on_reserved=record_then_die)

    deps.booker = DiesAfterReserve(solver=deps.booker.solver, pacer=deps.booker.pacer)
    start = fs_slot(replica, days_ahead=4, hour=8)
    person = add_person(db, 3001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])
    with pytest.raises(_WorkerKilled):
        await book(deps, person, slot_id)
    (row,) = bookings(db)
    assert row.status is BookingStatus.RESERVED and row.reservation_deadline is not None

    replica.control("POST", "/clock", json={"advance_s": 16 * 60})
    report = await poll_bookings(deps, now=replica_now(replica), min_interval_s=0)

    assert report.expired == 1
    (row,) = bookings(db)
    assert row.status is BookingStatus.EXPIRED
    (expired,) = notification_payloads(db, "expired")
    assert expired["phase"] == "reservation"
    assert [p["status"] for p in replica.processes()] == ["expired"]


async def test_expired_activation_is_detected_with_reminders_first(
    deps: Any, db: Database, replica: Replica
) -> None:
    """A preconfirmed booking nobody activates: a reminder is queued 5 minutes before the deadline;
    injected: the replica clock jumps 61 minutes (activation 60). Asserts: the poll reads the site
    (appointment gone), marks the booking expired (activation) and reports it once."""
    from worker.bookings import poll_bookings

    start = fs_slot(replica, days_ahead=5, hour=11)
    person = add_person(db, 4001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])
    assert (await book(deps, person, slot_id)).outcome == "preconfirmed"
    (row,) = bookings(db)
    assert row.activation_deadline is not None

    early = await poll_bookings(deps, now=row.activation_deadline - timedelta(minutes=5), min_interval_s=0)
    assert early.reminders == 1 and early.checked == 1 and early.expired == 0
    (reminder,) = notification_payloads(db, "reminder")
    assert reminder["minutes_left"] == 5

    replica.control("POST", "/clock", json={"advance_s": 61 * 60})
    late = await poll_bookings(deps, now=replica_now(replica), min_interval_s=0)

    assert late.expired == 1
    (row,) = bookings(db)
    assert row.status is BookingStatus.EXPIRED
    (expired,) = notification_payloads(db, "expired")
    assert expired["phase"] == "activation"
    again = await poll_bookings(deps, now=replica_now(replica), min_interval_s=0)
    assert again.expired == 0 and len(notification_payloads(db, "expired")) == 1


async def test_cancelled_booking_frees_the_slot_at_the_city(
    deps: Any, db: Database, replica: Replica
) -> None:
    """The user no longer wants a preconfirmed appointment: MTA cancels it through the manage link;
    after the city's hold-back the slot is free again for others."""
    from worker.bookings import cancel_at_city

    replica.faults(cancel_holdback_s=60)
    start = fs_slot(replica, days_ahead=6, hour=9)
    person = add_person(db, 5001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])
    assert (await book(deps, person, slot_id)).outcome == "preconfirmed"
    (row,) = bookings(db)

    assert await cancel_at_city(deps, row.id, person.user_id)

    (row,) = bookings(db)
    assert row.status is BookingStatus.CANCELLED
    assert len(notification_payloads(db, "cancelled")) == 1
    assert [p["status"] for p in replica.processes()] == ["cancelled"]
    units = replica.control("GET", "/slots", params={"office": FS_OFFICE})
    assert {u["state"] for u in units if u["timestamp"] in (start, start + UNIT_S)} == {"holdback"}
    replica.control("POST", "/clock", json={"advance_s": 61})
    units = replica.control("GET", "/slots", params={"office": FS_OFFICE})
    assert {u["state"] for u in units if u["timestamp"] in (start, start + UNIT_S)} == {"free"}
    assert not await cancel_at_city(deps, row.id, person.user_id)  # nothing left to cancel


class _WorkerKilled(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


async def test_redelivery_after_a_killed_worker_resumes_without_a_second_hold(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: the worker dies right after the city reserved; the message is delivered again
    (same request time). Asserts: the second delivery finishes the same city process (update +
    preconfirm from the page), one booking row, one process, one activation mail."""
    from worker.sites.munich.booker import MunichBooker

    real_booker = deps.booker

    class DiesAfterReserve(MunichBooker):
        async def book(
            self, session: Any, site_url: str, slot: Any, contact: Any, *, on_reserved: Any = None
        ) -> Any:
            async def record_then_die(hold: Any) -> None:
                await on_reserved(hold)
                raise _WorkerKilled

            return await super().book(session, site_url, slot, contact, on_reserved=record_then_die)

    start = fs_slot(replica, days_ahead=3, hour=14)
    person = add_person(db, 6001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[start])
    requested_at = datetime.now(UTC)
    deps.booker = DiesAfterReserve(solver=real_booker.solver, pacer=real_booker.pacer)
    with pytest.raises(_WorkerKilled):
        await book(deps, person, slot_id, requested_at=requested_at)

    deps.booker = real_booker
    report = await book(deps, person, slot_id, requested_at=requested_at)

    assert report.outcome == "preconfirmed"
    (row,) = bookings(db)
    assert row.status is BookingStatus.PRECONFIRMED
    (process,) = replica.processes()
    assert process["status"] == "preconfirmed" and str(process["processId"]) == row.process_id
    assert len(replica.mail(kind="activation", to=person.email)) == 1
    with db.transaction() as session:
        subscription = session.get(Subscription, person.subscription_id)
        assert subscription is not None and subscription.state is SubscriptionState.DONE
        assert session.query(Booking).count() == 1


async def test_slot_lost_to_someone_else_falls_back_to_the_next_matching_slot(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: a competing booker takes the first slot at the city after MTA saw it. Asserts: the
    autobook request books the next matching slot instead, and the lost race is not reported as
    "taken" (the user only hears about the booking that worked)."""
    first_start = fs_slot(replica, days_ahead=3, hour=8)
    second_start = fs_slot(replica, days_ahead=3, hour=12)
    person = add_person(db, 9001, service_id=FS_SERVICE, office_id=FS_OFFICE)
    first_id, _second_id = observe(
        db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[first_start, second_start]
    )
    assert replica.take(FS_OFFICE, first_start, units=2)

    report = await book(deps, person, first_id)

    assert report.outcome == "preconfirmed" and report.attempts == 2
    lost, won = bookings(db)
    assert lost.status is BookingStatus.FAILED and won.status is BookingStatus.PRECONFIRMED
    assert won.start_at is not None and int(won.start_at.timestamp()) == second_start
    assert [(b, e) for b, e in booking_events(db)] == [(won.id, "holding"), (won.id, "reserved")]
    (process,) = replica.processes()
    assert process["timestamp"] == second_start


EINBUERGERUNG_OFFICE = 10471
EINBUERGERUNG = 1071907
"""No captcha, four units per appointment, 4 appointments per e-mail, "Fallnummer ..." required."""


async def test_too_many_appointments_for_one_email_is_reported_on_the_email_field(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Injected: the subscriber's address already holds the Einbürgerung scope's 4 appointments
    (made through the API beforehand). Asserts: the site's 406 tooManyAppointmentsWithSameMail ends
    the booking as failed on the e-mail field, the new hold is given back, and the office's
    required custom field was filled from the profile's ``case_reference``. Also walks with the
    human pacer (tiny delays): clicks after mouse travel, key-by-key typing."""
    from worker.pacer import HumanPacer
    from worker.sites.munich.booker import MunichBooker

    email = "viele.termine@example.org"
    starts = [berlin_slot(days_ahead=10 + i, hour=9) for i in range(5)]
    for start in starts:
        replica.add_slots(EINBUERGERUNG_OFFICE, [start + k * UNIT_S for k in range(4)])
    async with httpx.AsyncClient(base_url=replica.api_url, timeout=10) as api:
        for start in starts[:4]:
            body: dict[str, Any] = {"timestamp": start, "officeId": EINBUERGERUNG_OFFICE}
            body |= {"serviceId": [EINBUERGERUNG], "serviceCount": [1]}
            held = (await api.post("/reserve-appointment/", json=body)).json()
            customer = {"familyName": "Viele Termine", "email": email, "customTextfield": "F-1 Frau Beispiel"}
            credentials = {"processId": held["processId"], "authKey": held["authKey"]}
            updated = await api.post("/update-appointment/", json=credentials | customer)
            assert updated.status_code == 200, updated.text
    person = add_person(
        db,
        9101,
        service_id=EINBUERGERUNG,
        office_id=EINBUERGERUNG_OFFICE,
        email=email,
        custom_fields={"case_reference": "F-2 Herr Beispiel"},
    )
    (slot_id,) = observe(db, office_id=EINBUERGERUNG_OFFICE, service_id=EINBUERGERUNG, starts=[starts[4]])
    deps.booker = MunichBooker(
        solver=deps.booker.solver,
        pacer=HumanPacer(
            think_time_min_ms=1, think_time_max_ms=5, typing_delay_min_ms=1, typing_delay_max_ms=3, seed=7
        ),
    )

    report = await book(deps, person, slot_id)

    assert report.outcome == "refused"
    (failed,) = notification_payloads(db, "failed")
    assert failed["field"] == "email" and failed["code"] == "tooManyAppointmentsWithSameMail"
    newest = max(replica.processes(), key=lambda p: p["processId"])
    assert newest["timestamp"] == starts[4] and newest["status"] == "cancelled"
    update = replica.control("GET", "/requests", params={"path": "update-appointment"})["requests"]
    assert len(update) == 5  # four made here, one by the walk (the page sent it; the site refused)
