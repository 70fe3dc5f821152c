"""/subscribe end to end: the real Application against the fake Bot API, stored in real SQLite."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from sqlalchemy import select

from bot.handlers import START_TEXT
from bot.i18n import translator
from bot.keyboards import ambiguous_names, office_label
from bot.testing import FakeBotApi
from bot.validation import site_today
from shared.catalog import get_catalog
from shared.db.database import Database
from shared.db.models import Subscription, Target, User
from tests.bot.conftest import RunningBot, UserChat

REISEPASS = 1063453
SERVICE_PROMPT = (
    "Which service do you need an appointment for?\n"
    "Tap a frequent one, or say in your own words what you need, in any of my languages "
    "(e.g. “passport”, “Anmeldung”, “прописка”); typos are fine."
)
OFFICES_PROMPT = "Which offices? Tick one or more and tap Done, or take any office offering {service}."
WINDOW_PROMPT = "Which dates? Tap a window, or type dates like 01.12.2026 - 24.12.2026 (or one date)."
WEEKDAYS_PROMPT = "Which weekdays? Tick some and tap Done, or take any day."
TIME_PROMPT = "Which time of day? Tap one, or type a range like 08:00-12:00."
AUTOBOOK_PROMPT = (
    "When a matching slot appears, may MTA book it for you right away? The city then e-mails you a "
    "link to activate the appointment. Booking needs your contact details (/profile)."
)


def _subscriptions(db: Database, user_id: int) -> list[Subscription]:
    with db.transaction() as session:
        return list(session.scalars(select(Subscription).where(Subscription.user_id == user_id)))


@pytest.mark.parametrize("language", ["en", "de"])
def test_full_subscription_is_stored_as_chosen(
    language: str, fake_telegram: FakeBotApi, conversation_bot: RunningBot, bot_db: Database
) -> None:
    """A whole /subscribe in one language (search, count, two offices, typed dates, weekdays, typed
    times, no autobook): every prompt is in that language and the stored row matches every choice."""
    _ = translator(language)
    chat = UserChat(fake_telegram, 1001, language_code=language)
    chat.send("/start", expect=_(START_TEXT)[:40])
    chat.send("/subscribe", expect=_(SERVICE_PROMPT)[:30])
    chat.send("Reisepass", expect=_("Services matching “{query}”. Tap one, or type another search:")[:12])
    chat.press("Reisepass", expect=_("{service}\n\nFor how many people?").format(service="Reisepass"))
    chat.press("2", expect=_(OFFICES_PROMPT)[:12])

    all_offices = get_catalog().offices_for_service(REISEPASS)
    offices = all_offices[:2]  # the two units at Ruppertstraße: same display name
    for office in offices:
        label = office_label(office, ambiguous=ambiguous_names(all_offices))
        chat.press(label, expect_button="✅ " + label)
    chat.press(_("Done"), expect=_(WINDOW_PROMPT)[:16])

    today = site_today()
    start, end = today + timedelta(days=3), today + timedelta(days=20)
    chat.send(f"{start:%d.%m.%Y} - {end:%d.%m.%Y}", expect=_(WEEKDAYS_PROMPT)[:14])
    chat.press(_("Tue"), expect_button="✅ " + _("Tue"))
    chat.press(_("Thu"), expect_button="✅ " + _("Thu"))
    chat.press(_("Done"), expect=_(TIME_PROMPT)[:16])
    chat.send("8:00-12:30", expect=_(AUTOBOOK_PROMPT)[:30])
    chat.press(_("No, only alert me"), expect=_("Please check your subscription:"))
    chat.press(_("Save"), expect=_("Saved ✅ I will message you when a matching appointment appears."))

    [sub] = _subscriptions(bot_db, 1001)
    assert sub.service_id == REISEPASS
    assert sub.service_count == 2
    assert sorted(sub.office_ids) == sorted(o.id for o in offices)
    assert (sub.date_from, sub.date_to) == (start, end)
    assert sorted(sub.weekdays) == [1, 3]
    assert (sub.time_from, sub.time_to) == (time(8, 0), time(12, 30))
    assert sub.autobook is False
    with bot_db.transaction() as session:
        user = session.get(User, 1001)
        assert user is not None and user.language == language
        targets = list(session.scalars(select(Target).where(Target.service_id == REISEPASS)))
    assert len(targets) == 1 and targets[0].active and targets[0].service_count == 2
