"""/quiet and /test: a person's say over when alerts reach them, and a way to see that they do.

/quiet sets hours (Berlin time) in which slot alerts wait until morning; the sender holds them
(``bot.quiet``), except for appointments by the next day. /test sends a sample alert straight away,
shaped like a real one, so a person sees the notification arrive and what it will look like.
Both are stateless buttons, like /language.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from telegram.constants import ParseMode

from bot.alerts import SlotAlert, render_slot_alert
from bot.callbacks import Callback
from bot.keyboards import CHECKED
from bot.quiet import PRESETS
from bot.validation import N_, site_today
from shared.catalog import get_catalog
from shared.domain import DEFAULT_SITE, SITE_TIMEZONE, utcnow
from shared.settings import DEFAULT_SITE_URL

from . import store
from .common import Turn

ACTIONS = frozenset({"qh"})
QUIET_OFF = "off"
SAMPLE_SERVICE_ID = 1063475
"""Wohnsitzanmeldung: the service most people know."""
QUIET_EXPLAINED = N_(
    "Quiet hours: in these hours (Berlin time) I hold alerts until the hours end. An appointment on the "
    "next day or sooner still reaches you at once: it would be gone by morning. Booking news is never "
    "held."
)
TEST_HEAD = N_(
    "🧪 Test alert: not a real appointment. This is how my alerts look; if your phone showed a "
    "notification for this message, alerts reach you."
)


def _clock(value: time) -> str:
    return value.strftime("%H:%M")


def _hours_text(hours: tuple[time, time]) -> str:
    return f"{_clock(hours[0])}–{_clock(hours[1])}"


async def show_quiet(turn: Turn) -> None:
    """/quiet"""
    _ = turn._
    current = await turn.run(store.quiet_hours, turn.user_id)
    now = _("Now: {hours}.").format(hours=_hours_text(current) if current else _("no quiet hours"))
    kb = turn.keys()
    rows = [
        [
            (
                (f"{CHECKED} " if current == hours else "") + _hours_text(hours),
                "qh",
                key,
            )
        ]
        for key, hours in PRESETS.items()
    ]
    rows.append([((f"{CHECKED} " if current is None else "") + _("No quiet hours"), "qh", QUIET_OFF)])
    await turn.say(_(QUIET_EXPLAINED) + "\n\n" + now, kb.markup(rows))


async def on_button(turn: Turn, callback: Callback) -> None:
    _ = turn._
    if callback.arg == QUIET_OFF:
        await turn.run(store.set_quiet_hours, turn.user_id, None)
        await turn.show(_("Quiet hours off: alerts reach you at any hour."))
        return
    hours = PRESETS.get(str(callback.arg))
    if hours is None:
        await turn.answer(_("Unknown choice."), alert=True)
        return
    await turn.run(store.set_quiet_hours, turn.user_id, hours)
    await turn.show(
        _("Quiet hours set: {hours} (Berlin time). /test shows what an alert looks like.").format(
            hours=_hours_text(hours)
        )
    )


async def send_test(turn: Turn) -> None:
    """/test: a sample alert for tomorrow morning at an office offering the sample service."""
    _ = turn._
    catalog = get_catalog()
    offices = catalog.offices_for_service(SAMPLE_SERVICE_ID)
    office_id = offices[0].id if offices else 0
    tomorrow = site_today() + timedelta(days=1)
    start = datetime.combine(tomorrow, time(9, 0), tzinfo=SITE_TIMEZONE)
    now = utcnow()
    settings = turn.settings
    sample = SlotAlert(
        slot_id=0,
        site=DEFAULT_SITE,
        service_id=SAMPLE_SERVICE_ID,
        service_count=1,
        office_id=office_id,
        start_at=start,
        first_seen_at=now,
        last_seen_at=now,
        site_url=settings.site_url if settings else DEFAULT_SITE_URL,
    )
    rendered = render_slot_alert(sample, turn.language, now)
    text = "<b>" + _escape(_(TEST_HEAD)) + "</b>\n\n" + rendered.text
    await turn.context.bot.send_message(turn.chat_id, text, parse_mode=ParseMode.HTML)
    hours = await turn.run(store.quiet_hours, turn.user_id)
    if hours:
        await turn.say(
            _("Your quiet hours are {hours}: real alerts in them wait until they end (see /quiet).").format(
                hours=_hours_text(hours)
            )
        )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["ACTIONS", "on_button", "send_test", "show_quiet"]
