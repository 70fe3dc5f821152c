"""Booking for the family (shared/booking.py): one active booking per person (profile) and service,
the city's cap per e-mail address across profiles, and autobook requests per person; plus the
migration that turns a single profile of before into the person's own profile.

These run the policy on SQLite and PostgreSQL without a browser; the walk with a child's profile is
in ``test_family_walk.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import IntegrityError

from bot.handlers import store
from shared import booking as policy
from shared.crypto import Cipher, configure_cipher, generate_key
from shared.db.database import Database, open_database
from shared.db.migrate import upgrade
from shared.db.models import Booking, BookingProfile, BookingStatus, Subscription, User
from shared.settings import load_settings
from tests.booking.conftest import FS_OFFICE, FS_SERVICE, POLICY_NOW, add_slot

NOW = POLICY_NOW
OTHER_SERVICE = 1063475
"""Wohnsitzanmeldung: a second service, so one person can hold two bookings."""


def add_family(db: Database, user_id: int, emails: list[str]) -> list[int]:
    """A user with one profile per e-mail (the first is the user themself); returns profile ids."""
    with db.transaction() as session:
        if session.get(User, user_id) is None:
            session.add(User(id=user_id, language="en", consented_at=datetime(2030, 1, 1, tzinfo=UTC)))
            session.flush()
        ids = []
        for number, email in enumerate(emails):
            profile = BookingProfile(
                user_id=user_id,
                label=None if number == 0 else f"Kind {number}",
                first_name="Erika",
                last_name=f"Muster{user_id}{number}",
                email=email,
                custom_fields={"date_of_birth": "01.02.2015"},
            )
            session.add(profile)
            session.flush()
            ids.append(profile.id)
        return ids


def add_subscription(db: Database, user_id: int, profile_id: int | None, service_id: int = FS_SERVICE) -> int:
    with db.transaction() as session:
        sub = Subscription(
            user_id=user_id,
            service_id=service_id,
            office_ids=[FS_OFFICE],
            autobook=True,
            profile_id=profile_id,
        )
        session.add(sub)
        session.flush()
        return sub.id


def start(db: Database, user_id: int, slot_id: int, sub_id: int, at: datetime) -> policy.Start:
    return policy.begin_booking(
        db, user_id=user_id, slot_id=slot_id, subscription_id=sub_id, requested_at=at, now=at
    )


def test_one_active_booking_per_profile_and_service_with_two_profiles(policy_db: Database) -> None:
    """Tried: one user with two profiles (parent, child) and a subscription each for the same service;
    a claim for each, then a second claim for the child, then a raw INSERT of a second active row for
    the child. Asserted: both first claims start, each row names its profile; the second claim for the
    child is ALREADY_ACTIVE (pointing at the child's booking); the database refuses the raw row."""
    parent, child = add_family(policy_db, 10, ["eltern@example.org", "kind@example.org"])
    parent_sub = add_subscription(policy_db, 10, parent)
    child_sub = add_subscription(policy_db, 10, child)
    slots = [add_slot(policy_db, 60 * (i + 1)) for i in range(3)]

    first = start(policy_db, 10, slots[0], parent_sub, NOW)
    second = start(policy_db, 10, slots[1], child_sub, NOW + timedelta(microseconds=1))
    assert first.outcome is policy.StartOutcome.STARTED and first.booking is not None
    assert second.outcome is policy.StartOutcome.STARTED and second.booking is not None
    assert (first.booking.profile_id, second.booking.profile_id) == (parent, child)

    again = start(policy_db, 10, slots[2], child_sub, NOW + timedelta(microseconds=2))
    assert again.outcome is policy.StartOutcome.ALREADY_ACTIVE
    assert again.booking is not None and again.booking.id == second.booking.id

    with pytest.raises(IntegrityError), policy_db.transaction() as session:
        session.add(
            Booking(
                user_id=10,
                profile_id=child,
                service_id=FS_SERVICE,
                office_id=FS_OFFICE,
                status=BookingStatus.RESERVED,
            )
        )


@pytest.mark.parametrize("policy_db", ["sqlite"], indirect=True)
def test_the_cities_cap_per_e_mail_counts_every_profile_with_that_address(policy_db: Database) -> None:
    """Tried: four profiles sharing one e-mail address (three of one user, one of another, written in
    other letter case), each claiming a slot. Asserted: the first ``MAIL_CAP`` (3) start, the fourth
    is MAIL_CAP and makes no row; once one of the three is over (expired), the fourth may start; a
    profile with another address is never held back."""
    assert policy.MAIL_CAP == 3
    family = add_family(policy_db, 20, ["familie@example.org", "familie@example.org", "familie@example.org"])
    (neighbour,) = add_family(policy_db, 21, ["Familie@Example.org"])
    (other,) = add_family(policy_db, 22, ["andere@example.org"])
    subs = [add_subscription(policy_db, 20, p) for p in family]
    neighbour_sub = add_subscription(policy_db, 21, neighbour)
    other_sub = add_subscription(policy_db, 22, other)

    started = [start(policy_db, 20, add_slot(policy_db, 60 * (i + 1)), s, NOW) for i, s in enumerate(subs)]
    assert [s.outcome for s in started] == [policy.StartOutcome.STARTED] * 3
    capped = start(policy_db, 21, add_slot(policy_db, 300), neighbour_sub, NOW)
    assert capped.outcome is policy.StartOutcome.MAIL_CAP and capped.booking is None
    with policy_db.transaction() as session:
        assert session.scalars(select(Booking).where(Booking.user_id == 21)).first() is None
    free = start(policy_db, 22, add_slot(policy_db, 360), other_sub, NOW)
    assert free.outcome is policy.StartOutcome.STARTED

    assert started[0].booking is not None
    with policy_db.transaction() as session:
        policy.record_expired(session, started[0].booking.id, phase="reservation", now=NOW)
    later = NOW + timedelta(seconds=1)
    retry = start(policy_db, 21, add_slot(policy_db, 420), neighbour_sub, later)
    assert retry.outcome is policy.StartOutcome.STARTED


@pytest.mark.parametrize("policy_db", ["sqlite"], indirect=True)
def test_autobook_asks_once_per_person_not_once_per_user(policy_db: Database) -> None:
    """Tried: one user, three autobook subscriptions for one service: two for the child, one for the
    parent, and two new slots. Asserted: two requests (one per person), the parent's and one of the
    child's subscriptions; with the child's booking active, only the parent's."""
    parent, child = add_family(policy_db, 30, ["p30@example.org", "k30@example.org"])
    parent_sub = add_subscription(policy_db, 30, parent)
    child_subs = [add_subscription(policy_db, 30, child) for _ in range(2)]
    slots = [add_slot(policy_db, 60), add_slot(policy_db, 120)]
    with policy_db.transaction() as session:
        requests = policy.autobook_requests(session, slots, now=NOW)
    assert sorted(r.subscription_id for r in requests) == sorted([parent_sub, child_subs[0]])
    assert start(policy_db, 30, slots[0], child_subs[0], NOW).outcome is policy.StartOutcome.STARTED
    with policy_db.transaction() as session:
        requests = policy.autobook_requests(session, slots, now=NOW)
    assert [r.subscription_id for r in requests] == [parent_sub]


def test_an_old_single_profile_becomes_the_persons_own_profile(tmp_path: Path) -> None:
    """Tried: a database at revision 0004 holding a user with the one profile of before (encrypted),
    an autobook subscription and an active booking; then the upgrade to head. Asserted: the profile
    keeps its id and every value (decrypted), has no label ("Myself"); the subscription and the
    booking point at it; the user can now add a second profile; the active booking still blocks a
    second claim for that person and service."""
    cipher = Cipher(generate_key(), origin="test key")
    configure_cipher(cipher)
    try:
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0004")
        engine = create_engine(url)
        created = "2030-03-01 09:00:00.000000+00:00"
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO users (id, language, created_at) VALUES (40, 'de', :t)"), {"t": created}
            )
            conn.execute(
                text(
                    "INSERT INTO booking_profiles (id, user_id, first_name, last_name, email, phone, "
                    "custom_fields, created_at, updated_at) VALUES (7, 40, :f, :l, :e, :p, :c, :t, :t)"
                ),
                {
                    "f": cipher.encrypt("Erika"),
                    "l": cipher.encrypt("Mustermann"),
                    "e": cipher.encrypt("erika@example.org"),
                    "p": cipher.encrypt("+491511234567"),
                    "c": cipher.encrypt('{"date_of_birth": "24.12.1990"}'),
                    "t": created,
                },
            )
            conn.execute(
                text(
                    "INSERT INTO subscriptions (id, user_id, site, service_id, service_count, office_ids, "
                    "weekdays, autobook, state, created_at, updated_at) VALUES "
                    "(3, 40, 'munich', :s, 1, :o, '[]', 1, 'active', :t, :t)"
                ),
                {"s": FS_SERVICE, "o": f"[{FS_OFFICE}]", "t": created},
            )
            conn.execute(
                text(
                    "INSERT INTO bookings (id, user_id, subscription_id, site, service_id, service_count, "
                    "office_id, status, created_at, updated_at) VALUES "
                    "(5, 40, 3, 'munich', :s, 1, :o, 'reserved', :t, :t)"
                ),
                {"s": FS_SERVICE, "o": FS_OFFICE, "t": created},
            )
        engine.dispose()

        settings = load_settings(data_dir=tmp_path, database_url=url, env="test")
        db = open_database(settings, migrate=True)
        configure_cipher(cipher)  # the key the old rows were written with
        try:
            (profile,) = store.list_profiles(db, 40)
            assert profile.id == 7 and profile.label is None
            assert (profile.first_name, profile.last_name, profile.email, profile.phone) == (
                "Erika",
                "Mustermann",
                "erika@example.org",
                "+491511234567",
            )
            assert profile.custom_fields == {"date_of_birth": "24.12.1990"}
            with db.transaction() as session:
                assert session.get(Subscription, 3).profile_id == 7  # type: ignore[union-attr]
                assert session.get(Booking, 5).profile_id == 7  # type: ignore[union-attr]
            child = store.ProfileData("Max", "Mustermann", "erika@example.org", None, {}, label="Max")
            assert store.save_profile(db, 40, child) is not None
            assert [p.label for p in store.list_profiles(db, 40)] == [None, "Max"]
            slot_id = add_slot(db, 60)
            # stored before consent was asked: not used until the person agrees
            assert start(db, 40, slot_id, 3, NOW).outcome is policy.StartOutcome.NO_CONSENT
            store.record_consent(db, 40)
            blocked = start(db, 40, slot_id, 3, NOW)
            assert blocked.outcome is policy.StartOutcome.ALREADY_ACTIVE
            assert blocked.booking is not None and blocked.booking.id == 5
        finally:
            db.close()
    finally:
        configure_cipher(None)
