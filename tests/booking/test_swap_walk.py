"""An earlier date against the replica in real Chromium: the appointment held (booked elsewhere and
entered by process id and auth key, or booked by MTA), an earlier slot appears, MTA books it, and
only the new booking's confirmation cancels the old one at the city; an expiry keeps the old one.

These call the worker's functions (``worker.swaps.adopt``, ``worker.bookings.run_booking``,
``poll_bookings``, which settles swaps) in the module's event loop with one browser pool, as
``test_booking_walk.py`` does.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared import booking as policy
from shared import swaps
from shared.db.database import Database
from shared.db.models import (
    Booking,
    BookingStatus,
    Notification,
    NotificationKind,
    Subscription,
    SubscriptionState,
)
from tests.booking.conftest import (
    FS_OFFICE,
    FS_SERVICE,
    add_person,
    booking_events,
    bookings,
    fs_slot,
    observe,
    replica_now,
)
from tests.support.replica import Replica

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def booked_elsewhere(replica: Replica, start: int) -> tuple[str, str]:
    """A confirmed appointment made through the city's API by someone else's hands (no MTA)."""
    with httpx.Client(base_url=replica.api_url, timeout=10) as api:
        body = {"timestamp": start, "officeId": FS_OFFICE, "serviceId": [FS_SERVICE], "serviceCount": [1]}
        held = api.post("/reserve-appointment/", json=body).raise_for_status().json()
        credentials = {"processId": held["processId"], "authKey": held["authKey"]}
        customer = {
            "familyName": "Erika Muster",
            "email": "erika@example.org",
            "customTextfield": "01.02.1990",
        }
        api.post("/update-appointment/", json=credentials | customer).raise_for_status()
        api.post("/preconfirm-appointment/", json=credentials).raise_for_status()
        api.post("/confirm-appointment/", json=credentials).raise_for_status()
    return str(held["processId"]), str(held["authKey"])


def follow_activation_link(replica: Replica, email: str) -> None:
    link = replica.activation_link(to=email)
    ref = json.loads(base64.b64decode(link.split("#/appointment/confirm/", 1)[1]))
    answer = httpx.post(
        replica.api_url + "/confirm-appointment/",
        json={"processId": ref["id"], "authKey": ref["authKey"]},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["status"] == "confirmed"


def city_status(replica: Replica, process_id: str) -> str:
    return next(str(p["status"]) for p in replica.processes() if str(p["processId"]) == process_id)


def events(db: Database, user_id: int) -> list[str]:
    return [event for _, event in booking_events(db, user_id)]


async def test_an_earlier_date_replaces_the_old_only_once_it_is_confirmed(
    deps: Any, db: Database, replica: Replica
) -> None:
    """Held: a confirmed appointment booked elsewhere, 12 days ahead, entered by process id and auth
    key (MTA reads service, office, date and time at the city). Then an earlier slot and a later
    one on the held appointment's day appear: only the earlier is alerted (to the swap), autobook
    picks it beside the held one, the walk preconfirms it. A poll before the activation link is
    followed cancels nothing; after it, the new booking is confirmed and only then the old one is
    cancelled at the city. Told, in order: watching, holding, reserved, confirmed, done. Tried:
    settling on a preconfirmed new booking (the old was cancelled before the link was followed:
    the first poll's assertion failed), and ``start_before`` ignored by the matching (the later
    slot was alerted)."""
    from worker.bookings import poll_bookings, run_booking
    from worker.swaps import adopt

    old_start = fs_slot(replica, days_ahead=12, hour=10)
    old_process, old_key = booked_elsewhere(replica, old_start)
    person = add_person(db, 6101, service_id=FS_SERVICE, office_id=FS_OFFICE, autobook=False)
    with db.transaction() as session:  # only the swap watches: its alerts are the ones to see
        ordinary = session.get(Subscription, person.subscription_id)
        assert ordinary is not None
        ordinary.state = SubscriptionState.PAUSED

    watched = await adopt(
        deps,
        user_id=person.user_id,
        profile_id=None,
        sealed=swaps.seal_credentials(old_process, old_key),
        any_office=False,
        autobook=True,
    )
    assert isinstance(watched, int)
    (old,) = bookings(db)
    assert (old.status, old.service_id, old.office_id) == (BookingStatus.CONFIRMED, FS_SERVICE, FS_OFFICE)
    assert old.start_at == datetime.fromtimestamp(old_start, UTC) and old.process_id == old_process

    earlier, later = fs_slot(replica, days_ahead=3, hour=9), fs_slot(replica, days_ahead=12, hour=12)
    slot_ids = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[earlier, later])
    with db.transaction() as session:
        alerts = (
            session.query(Notification).filter_by(kind=NotificationKind.SLOT, user_id=person.user_id).all()
        )
        assert [(a.subscription_id, a.payload["start"]) for a in alerts] == [
            (watched, datetime.fromtimestamp(earlier, UTC).isoformat())
        ]
        (request,) = policy.autobook_requests(session, slot_ids)
    assert request.subscription_id == watched

    report = await run_booking(
        deps,
        user_id=person.user_id,
        slot_id=request.slot_id,
        subscription_id=watched,
        requested_at=datetime.now(UTC),
    )
    assert report.outcome == "preconfirmed"
    _, new = bookings(db)
    assert new.replaces_booking_id == old.id and new.process_id is not None

    await poll_bookings(deps, now=replica_now(replica), min_interval_s=0)
    assert [b.status for b in bookings(db)] == [BookingStatus.CONFIRMED, BookingStatus.PRECONFIRMED]
    assert city_status(replica, old_process) == "confirmed"

    follow_activation_link(replica, person.email)
    await poll_bookings(deps, now=replica_now(replica), min_interval_s=0)

    assert [b.status for b in bookings(db)] == [BookingStatus.CANCELLED, BookingStatus.CONFIRMED]
    assert city_status(replica, old_process) == "cancelled"
    assert city_status(replica, new.process_id) == "confirmed"
    assert events(db, person.user_id) == ["swap_watching", "holding", "reserved", "confirmed", "swap_done"]
    with db.transaction() as session:
        sub = session.get(Subscription, watched)
        assert sub is not None and sub.state is SubscriptionState.DONE


async def test_an_expired_new_booking_keeps_the_old_one(deps: Any, db: Database, replica: Replica) -> None:
    """Held: an appointment MTA booked and the person confirmed; they ask for an earlier date (as
    /bookings does) and press "Book this" on the earlier slot. They never open its activation
    link: after the city's 60 minutes the poll finds it gone, the old appointment stays booked at
    the city and in MTA, the person hears "expired" and then "kept", and the swap ends. Tried:
    ``pending`` cancelling the old one for any ended new booking (the old was cancelled)."""
    from worker.bookings import poll_bookings, run_booking

    old_start = fs_slot(replica, days_ahead=9, hour=11)
    person = add_person(db, 6201, service_id=FS_SERVICE, office_id=FS_OFFICE)
    (old_slot,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[old_start])
    first = await run_booking(
        deps,
        user_id=person.user_id,
        slot_id=old_slot,
        subscription_id=person.subscription_id,
        requested_at=datetime.now(UTC),
    )
    assert first.outcome == "preconfirmed"
    follow_activation_link(replica, person.email)
    await poll_bookings(deps, now=replica_now(replica), min_interval_s=0)
    (old,) = bookings(db)
    assert old.status is BookingStatus.CONFIRMED and old.process_id is not None

    with db.transaction() as session:
        started = swaps.start_swap(
            session,
            user_id=person.user_id,
            booking_id=old.id,
            any_office=True,
            autobook=False,
            now=datetime.now(UTC),
        )
    assert started.subscription_id is not None
    earlier = fs_slot(replica, days_ahead=2, hour=8)
    (slot_id,) = observe(db, office_id=FS_OFFICE, service_id=FS_SERVICE, starts=[earlier])
    tapped = await run_booking(
        deps,
        user_id=person.user_id,
        slot_id=slot_id,
        subscription_id=started.subscription_id,
        requested_at=datetime.now(UTC),
        manual=True,
    )
    assert tapped.outcome == "preconfirmed"

    replica.control("POST", "/clock", json={"advance_s": 61 * 60})
    await poll_bookings(deps, now=replica_now(replica), min_interval_s=0)

    old_row, new_row = bookings(db)
    assert (old_row.status, new_row.status) == (BookingStatus.CONFIRMED, BookingStatus.EXPIRED)
    assert city_status(replica, old.process_id) == "confirmed"
    assert events(db, person.user_id)[-2:] == ["expired", "swap_kept"]
    with db.transaction() as session:
        sub = session.get(Subscription, started.subscription_id)
        assert sub is not None and sub.state is SubscriptionState.DONE
        kept = session.query(Notification).filter(Notification.booking_id == old.id).all()
        assert [n.payload["event"] for n in kept if n.payload["event"].startswith("swap")] == ["swap_kept"]
        assert session.get(Booking, old.id) is not None


async def test_a_wrong_auth_key_or_process_id_is_said_clearly(
    deps: Any, db: Database, replica: Replica
) -> None:
    """An appointment entered with the right number and a wrong code, then with a number the city
    does not know: nothing is kept, nothing watched, and the person is told which it was
    (``swap_lookup_failed`` with ``key_mismatch`` / ``not_found``). Tried: the booker not knowing
    ``authKeyMismatch`` (it became site trouble: the first code was wrong)."""
    from worker.swaps import adopt

    start = fs_slot(replica, days_ahead=6, hour=12)
    process, _key = booked_elsewhere(replica, start)
    person = add_person(db, 6301, service_id=FS_SERVICE, office_id=FS_OFFICE)
    kwargs: dict[str, Any] = {
        "user_id": person.user_id,
        "profile_id": None,
        "any_office": True,
        "autobook": True,
    }

    wrong_key = await adopt(deps, sealed=swaps.seal_credentials(process, "ffff"), **kwargs)
    unknown = await adopt(deps, sealed=swaps.seal_credentials("99999999", "abcd"), **kwargs)

    assert (wrong_key, unknown) == (swaps.LookupCode.KEY_MISMATCH, swaps.LookupCode.NOT_FOUND)
    assert bookings(db) == []
    with db.transaction() as session:
        told = [
            n.payload["code"]
            for n in session.query(Notification)
            .filter(Notification.user_id == person.user_id)
            .order_by(Notification.id)
            if n.payload.get("event") == "swap_lookup_failed"
        ]
        swapping = session.query(Subscription).filter(Subscription.replaces_booking_id.is_not(None)).count()
    assert told == ["key_mismatch", "not_found"] and swapping == 0


async def test_the_kill_switch_holds_the_swaps_requests(deps: Any, db: Database, replica: Replica) -> None:
    """The operator stops the site: reading an appointment booked elsewhere makes no request (the
    person hears "could not read it just now"), and a confirmed swap waits to cancel the old one
    until the site is resumed, then cancels it. Tried: ``adopt`` and ``settle_swaps`` without the
    kill-switch check (requests reached the replica while stopped)."""
    from shared.killswitch import resume_site, stop_site
    from tests.support.replica import api_requests
    from worker.swaps import adopt, settle_swaps

    old_start = fs_slot(replica, days_ahead=8, hour=9)
    old_process, old_key = booked_elsewhere(replica, old_start)
    person = add_person(db, 6401, service_id=FS_SERVICE, office_id=FS_OFFICE)
    kwargs: dict[str, Any] = {
        "user_id": person.user_id,
        "profile_id": None,
        "any_office": True,
        "autobook": True,
    }
    stop_site(deps.redis, "munich", reason="test", by="operator")
    since = datetime.now(UTC)
    try:
        assert (
            await adopt(deps, sealed=swaps.seal_credentials(old_process, old_key), **kwargs)
            is swaps.LookupCode.SITE
        )
        assert api_requests(replica, since) == []
    finally:
        resume_site(deps.redis, "munich")
    assert isinstance(await adopt(deps, sealed=swaps.seal_credentials(old_process, old_key), **kwargs), int)

    (old,) = bookings(db)
    with db.transaction() as session:  # a new booking confirmed for the swap (its walk is tested above)
        session.add(
            Booking(
                user_id=person.user_id,
                profile_id=old.profile_id,
                service_id=FS_SERVICE,
                office_id=FS_OFFICE,
                start_at=datetime.fromtimestamp(old_start, UTC) - timedelta(days=5),
                status=BookingStatus.CONFIRMED,
                replaces_booking_id=old.id,
                updated_at=datetime.now(UTC),
            )
        )
    stop_site(deps.redis, "munich", reason="test", by="operator")
    since = datetime.now(UTC)
    try:
        assert (await settle_swaps(deps)).replaced == 0
        assert api_requests(replica, since) == [] and city_status(replica, old_process) == "confirmed"
    finally:
        resume_site(deps.redis, "munich")
    assert (await settle_swaps(deps)).replaced == 1
    assert city_status(replica, old_process) == "cancelled"
