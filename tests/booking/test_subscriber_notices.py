"""An autobook the policy refuses (the city's cap per e-mail address, details stored before consent
was asked) is told to the subscriber: from the worker's ``run_booking`` through the outbox and the
real bot to the fake Bot API, in every language the bot speaks, once per subscription episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from sqlalchemy import select, update

from bot.i18n import SUPPORTED_LANGUAGES, translator
from bot.services import service_name
from bot.testing import FakeBotApi
from bot.testing.outbox import PASSPORT_SERVICE_ID, add_slot, add_users
from shared.db.database import Database, open_database
from shared.db.models import (
    Booking,
    BookingProfile,
    BookingStatus,
    Notification,
    NotificationStatus,
    Subscription,
    User,
)
from shared.domain import DEFAULT_SITE, utcnow
from shared.settings import load_settings
from tests.bot.conftest import run_bot, until
from worker.sites.base import FakeBooker

REISEPASS = 1063453
"""The service the three appointments that fill the cap are for (not the watched one)."""
MAIL_CAP_SELF = (
    "I could not book {service} for you: MTA already holds {cap} appointments to come for the "
    "e-mail address in your profile (family members who share an address count together), as "
    "many as the city allows per address. Alerts keep coming, and I book as soon as there is "
    "room: use another e-mail address in your profile (/profile), or cancel one of those "
    "appointments in /bookings."
)
MAIL_CAP_PERSON = (
    "I could not book {service} for “{person}”: MTA already holds {cap} appointments to come "
    "for the e-mail address in that profile (family members who share an address count "
    "together), as many as the city allows per address. Alerts keep coming, and I book as "
    "soon as there is room: give “{person}” an e-mail address of their own in /profile, or "
    "cancel one of those appointments in /bookings."
)
CONSENT_NEEDED = (
    "I did not book {service} for you: you stored your booking details before I asked for "
    "consent, and I use them only once you agree. Open /profile to read what I keep and agree, "
    "or to erase them. Until then alerts keep coming, and you can book with their link."
)


def _fill_cap(db: Database, user_id: int, profile_id: int) -> None:
    """Three confirmed appointments to come for ``profile_id`` (the city's cap per address)."""
    with db.transaction() as session:
        for day in (5, 6, 7):
            session.add(
                Booking(
                    user_id=user_id,
                    profile_id=profile_id,
                    site=DEFAULT_SITE,
                    service_id=REISEPASS,
                    office_id=54261,
                    start_at=utcnow() + timedelta(days=day),
                    status=BookingStatus.CONFIRMED,
                )
            )


def _profile_ids(db: Database, user_id: int) -> list[int]:
    with db.transaction() as session:
        return list(
            session.scalars(
                select(BookingProfile.id).where(BookingProfile.user_id == user_id).order_by(BookingProfile.id)
            )
        )


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_refused_autobook_is_told_once_per_subscription_episode(
    language: str, tmp_path: Path, redis_url: str, bookings_module: ModuleType
) -> None:
    """Three people with autobook: one whose own address holds three appointments to come, one whose
    subscription books for "Anna" (her address is shared with the user's own, which holds three),
    and one whose details were stored before consent was asked. Two new slots each go through the
    worker's ``run_booking``: nothing is booked, and each person gets one message (not one per
    slot) in their language saying why and what to do, naming Anna for her. After the first person
    changes the subscription, the next refusal is told again (a new episode), and reaches them by
    the worker's wake-up (the bot's sweep is a minute away). Tried: a dedup key per slot (each
    person gets two messages; fails), no wake-up after the refusal (the last message does not
    arrive in time; fails), and rendering the cap text without the label (Anna's expectation
    fails)."""
    _ = translator(language)
    with FakeBotApi() as fake_telegram:
        settings = load_settings(
            data_dir=tmp_path,
            redis_url=redis_url,
            pacer="none",
            env="test",
            telegram_token=fake_telegram.token,
            telegram_api_base_url=fake_telegram.base_url,
            outbox_sweep_s=60,
        )
        db = open_database(settings, migrate=True)
        base = 9600 + 10 * SUPPORTED_LANGUAGES.index(language)
        capped, family, legacy = base, base + 1, base + 2
        subs = dict(
            zip(
                (capped, family, legacy),
                add_users(db, [capped, family, legacy], language=language, with_profile=True, autobook=True),
                strict=True,
            )
        )
        _fill_cap(db, capped, _profile_ids(db, capped)[0])
        with db.transaction() as session:
            session.execute(
                update(BookingProfile).where(BookingProfile.user_id == capped).values(email="own@example.org")
            )
            anna = BookingProfile(
                user_id=family, label="Anna", first_name="Anna", last_name="Muster", email="e@example.org"
            )
            session.add(anna)
            session.flush()
            session.execute(
                update(Subscription).where(Subscription.id == subs[family]).values(profile_id=anna.id)
            )
            session.execute(update(User).where(User.id == legacy).values(consented_at=None))
        _fill_cap(db, family, _profile_ids(db, family)[0])
        slots = [add_slot(db, start_at=utcnow() + timedelta(days=3, hours=h)) for h in (0, 1)]
        client = redis.Redis.from_url(redis_url)
        deps = bookings_module.BookingDeps(
            settings=settings, db=db, redis=client, pool=None, booker=FakeBooker()
        )

        async def refuse(user_id: int, slot_id: int) -> str:
            report = await bookings_module.run_booking(
                deps,
                user_id=user_id,
                slot_id=slot_id,
                subscription_id=subs[user_id],
                requested_at=datetime.now(UTC),
            )
            return str(report.outcome)

        def settled() -> bool:
            with db.transaction() as session:
                statuses = session.scalars(select(Notification.status)).all()
            return bool(statuses) and all(s == NotificationStatus.SENT for s in statuses)

        service = service_name(PASSPORT_SERVICE_ID, language, site=DEFAULT_SITE)
        expected = {
            capped: "✋ " + _(MAIL_CAP_SELF).format(service=service, cap=3),
            family: "✋ " + _(MAIL_CAP_PERSON).format(service=service, person="Anna", cap=3),
            legacy: "🔒 " + _(CONSENT_NEEDED).format(service=service),
        }

        async def body(application: Any) -> None:
            for slot_id in slots:
                assert [await refuse(u, slot_id) for u in (capped, family, legacy)] == [
                    "mail_cap",
                    "mail_cap",
                    "no_consent",
                ]
            await until(lambda: all(fake_telegram.texts(u) for u in expected) and settled())
            for user_id, text in expected.items():
                assert fake_telegram.texts(user_id) == [text]
            # a new episode: the person changed the subscription
            with db.transaction() as session:
                sub = session.get(Subscription, subs[capped])
                assert sub is not None
                sub.date_to = (utcnow() + timedelta(days=60)).date()
            assert await refuse(capped, slots[0]) == "mail_cap"
            await until(lambda: len(fake_telegram.texts(capped)) == 2, timeout_s=10)

        try:
            run_bot(settings, db, body)
            with db.transaction() as session:
                assert (
                    session.scalars(select(Booking.id).where(Booking.status != BookingStatus.CONFIRMED)).all()
                    == []
                )
            assert fake_telegram.texts(family) == [expected[family]]
        finally:
            client.close()
            db.close()
