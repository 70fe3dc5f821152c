"""``/earlier`` and "Earlier date" under ``/bookings``: look for an earlier date than one you hold.

Two ways in: a booking MTA holds for you (a button under ``/bookings``, or picked in ``/earlier``),
or an appointment booked elsewhere, entered as the process number and code from the city's e-mail
(or the e-mail's link to manage the appointment, which carries both). Then two questions: where
(the same office, or any office offering the service) and how (book an earlier one at once, or
alert and let the person press "Book this"). ``shared.swaps`` has the course of a swap and its
policy; the old appointment is cancelled only once the new one is confirmed.

For a booking MTA holds the watch starts here, in the database. For one booked elsewhere, only the
worker can read it at the city: the bot checks the input's form (clear errors, the conversation
stays at the step), then sends ``adopt_appointment`` by name with the credentials encrypted
(``shared.swaps.seal_credentials``); the outcome (watching, or why not) comes through the outbox.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import re
from dataclasses import dataclass

import redis
from sqlalchemy import select

from bot.callbacks import Callback
from bot.keyboards import ButtonSpec, nav_row
from bot.swaps import appointment_lines, render_swap
from bot.validation import N_, InputError
from shared import enqueue
from shared import swaps as swap_policy
from shared.contracts import ADOPT_APPOINTMENT_ACTOR, BOOKINGS_QUEUE
from shared.db.database import Database
from shared.db.models import Booking, BookingProfile
from shared.domain import utcnow

from . import store
from .common import Flow, Turn, end_flow, log, start_flow
from .profile import profile_label

KIND = "swap"
ACTIONS = frozenset({"ew"})
"""The signed button under /bookings ("Earlier date"); its argument is a booking id."""
HELP_LINE = N_("/earlier – find an earlier date for an appointment you hold")
PROCESS_ID_MAX = 2_147_483_647
"""The city's process ids are positive 32-bit numbers (zmscitizenapi ``invalidProcessId``)."""
AUTH_KEY = re.compile(r"^[0-9A-Za-z]{4,64}$")
"""The code from the city's e-mail: letters and digits (4 hex digits, or 64 in the links)."""
LINK_MARK = "#/appointment/"
REDIS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Held:
    """A booking an earlier date may replace, as the conversation shows it."""

    id: int
    site: str
    service_id: int
    office_id: int
    start: str


# --- reading the input ---------------------------------------------------------------------------
def parse_credentials(text: str) -> tuple[str, str]:
    """Process number and code from what the person typed: the two separated by a space, comma or
    new line, or the e-mail's link (``…#/appointment/<base64 {"id", "authKey"}>``)."""
    text = text.strip()
    if LINK_MARK in text:
        return _from_link(text)
    parts = [p for p in re.split(r"[\s,;:/]+", text) if p]
    if len(parts) != 2:
        raise InputError(
            N_(
                "Please send two things, separated by a space: the process number and the code from "
                "the city's e-mail, e.g. 123456 ab12. You may also paste the e-mail's link to manage "
                "your appointment."
            )
        )
    number, code = parts
    if not number.isascii() or not number.isdigit() or not 0 < int(number) <= PROCESS_ID_MAX:
        raise InputError(
            N_("The process number is digits only, e.g. 123456 (you sent “{value}”)."), {"value": number[:20]}
        )
    if not AUTH_KEY.match(code):
        raise InputError(
            N_("The code is 4 to 64 letters and digits, e.g. ab12 (you sent “{value}”)."),
            {"value": code[:20]},
        )
    return str(int(number)), code


def _from_link(text: str) -> tuple[str, str]:
    tail = text.split(LINK_MARK, 1)[1].split()[0]
    if tail.startswith("confirm/"):
        tail = tail[len("confirm/") :]
    try:
        raw = base64.b64decode(tail + "=" * (-len(tail) % 4), validate=False)
        data = json.loads(raw.decode("utf-8"))
        number, code = str(int(data["id"])), str(data["authKey"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(
            N_("I cannot read that link. Please send the process number and the code instead.")
        ) from None
    if not 0 < int(number) <= PROCESS_ID_MAX or not AUTH_KEY.match(code):
        raise InputError(N_("I cannot read that link. Please send the process number and the code instead."))
    return number, code


# --- the database (in a worker thread) -------------------------------------------------------------
def _held(row: Booking) -> Held:
    assert row.start_at is not None
    return Held(row.id, row.site, row.service_id, row.office_id, row.start_at.isoformat())


def held_bookings(db: Database, user_id: int) -> list[Held]:
    """The user's bookings an earlier date may replace, and not watched for one already."""
    now = utcnow()
    with db.transaction() as session:
        rows = session.scalars(
            select(Booking).where(Booking.user_id == user_id).order_by(Booking.start_at, Booking.id)
        ).all()
        return [
            _held(row)
            for row in rows
            if swap_policy.swappable(session, user_id, row.id, now) is not None
            and swap_policy.watching(session, row.id) is None
        ]


def held_booking(db: Database, user_id: int, booking_id: int) -> Held | None:
    with db.transaction() as session:
        row = swap_policy.swappable(session, user_id, booking_id, utcnow())
        return _held(row) if row is not None else None


def begin_watch(
    db: Database, user_id: int, booking_id: int, any_office: bool, autobook: bool
) -> swap_policy.SwapStart:
    with db.transaction() as session:
        return swap_policy.start_swap(
            session,
            user_id=user_id,
            booking_id=booking_id,
            any_office=any_office,
            autobook=autobook,
            now=utcnow(),
        )


def has_booking_profile(db: Database, user_id: int) -> bool:
    with db.transaction() as session:
        return (
            session.scalar(
                select(BookingProfile.id)
                .where(BookingProfile.user_id == user_id, BookingProfile.last_name.is_not(None))
                .limit(1)
            )
            is not None
        )


def send_adopt(
    redis_url: str,
    user_id: int,
    profile_id: int | None,
    number: str,
    code: str,
    any_office: bool,
    autobook: bool,
) -> None:
    """Queue the worker's read of an appointment booked elsewhere (credentials encrypted)."""
    if not redis_url:
        raise RuntimeError("MTA_REDIS_URL is empty: no queue to send to")
    client = redis.Redis.from_url(
        redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
    )
    try:
        enqueue.send_by_name(
            enqueue.sender_broker(client),
            BOOKINGS_QUEUE,
            ADOPT_APPOINTMENT_ACTOR,
            (user_id, profile_id, swap_policy.seal_credentials(number, code), any_office, autobook),
        )
    finally:
        client.close()


# --- the conversation ------------------------------------------------------------------------------
def _held_label(turn: Turn, held: Held) -> str:
    lines = appointment_lines(held.site, held.service_id, held.office_id, held.start, turn.language, turn._)
    return _plain(lines).replace("\n", " · ")


def _plain(text: str) -> str:
    """HTML made for the outbox (parse mode HTML) as plain text for a conversation reply."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


async def begin(turn: Turn) -> None:
    """/earlier: which appointment? (one MTA holds, or one booked elsewhere)"""
    _ = turn._
    if not await turn.run(has_booking_profile, turn.user_id):
        await turn.say(
            _(
                "To book an earlier date for you I need the details for the city's form. Store them "
                "with /profile first, then send /earlier again."
            )
        )
        return
    held = await turn.run(held_bookings, turn.user_id)
    flow = start_flow(turn.context, KIND, "pick")
    rows: list[list[ButtonSpec]] = [[("⏪ " + _held_label(turn, h), "sb", h.id)] for h in held]
    rows.append([("✍ " + _("An appointment booked elsewhere"), "se", "")])
    rows.append(nav_row(_, back=False))
    await turn.say(
        _(
            "For which appointment shall I look for an earlier date? I book the earlier one and cancel "
            "the old one only once the new one is confirmed, so you always keep one."
        ),
        turn.keys(flow).markup(rows),
    )


async def on_list_button(turn: Turn, cb: Callback) -> None:
    """/bookings → "Earlier date #id"."""
    try:
        booking_id = int(cb.arg)
    except ValueError:
        booking_id = -1
    held = await turn.run(held_booking, turn.user_id, booking_id)
    if held is None:
        await turn.answer(
            turn._("That booking is not an appointment of yours that the city holds for a later date."),
            alert=True,
        )
        return
    flow = start_flow(turn.context, KIND, "where", booking_id=held.id)
    await turn.answer()
    await _ask_where(turn, flow, held)


async def _ask_where(turn: Turn, flow: Flow, held: Held | None) -> None:
    _ = turn._
    flow.go("where")
    same = "📍 " + _("Only at the same office")
    if held is not None:
        text = _("Earlier than this appointment:") + "\n" + _held_label(turn, held) + "\n\n"
    else:
        text = ""
    text += _("Where may the earlier appointment be?")
    rows: list[list[ButtonSpec]] = [
        [(same, "so", "same")],
        [("🏢 " + _("At any office that offers the service"), "so", "any")],
        nav_row(_, back=False),
    ]
    await turn.show(text, turn.keys(flow).markup(rows))


async def _ask_how(turn: Turn, flow: Flow) -> None:
    _ = turn._
    flow.go("how")
    rows: list[list[ButtonSpec]] = [
        [("🤖 " + _("Book it for me at once"), "sa", "1")],
        [("🔔 " + _("Alert me; I press “Book this”"), "sa", "0")],
        nav_row(_, back=False),
    ]
    await turn.show(
        _(
            "When an earlier appointment fits, shall I book it at once? Either way your old one is "
            "cancelled only after you confirmed the new one with the city's activation link."
        ),
        turn.keys(flow).markup(rows),
    )


async def _ask_whom(turn: Turn, flow: Flow) -> bool:
    """For an appointment booked elsewhere, with several profiles: for whom is it? False: one profile."""
    profiles = await turn.run(store.list_profiles, turn.user_id)
    if len(profiles) <= 1:
        flow.data["profile_id"] = profiles[0].id if profiles else None
        return False
    _ = turn._
    flow.go("whom")
    rows: list[list[ButtonSpec]] = [[(profile_label(_, p), "sp", p.id or 0)] for p in profiles]
    rows.append(nav_row(_, back=False))
    await turn.say(
        _("For whom is this appointment? I book the earlier one with that person's details."),
        turn.keys(flow).markup(rows),
    )
    return True


async def on_callback(turn: Turn, flow: Flow, cb: Callback) -> None:
    _ = turn._
    if flow.step == "pick" and cb.action == "sb":
        held = await turn.run(held_booking, turn.user_id, _int(cb.arg))
        if held is None:
            await turn.answer(_("That booking can no longer be replaced (see /bookings)."), alert=True)
            return
        flow.data["booking_id"] = held.id
        await _ask_where(turn, flow, held)
    elif flow.step == "pick" and cb.action == "se":
        flow.go("key")
        await turn.show(
            _(
                "Send me the process number and the code from the city's confirmation e-mail, "
                "separated by a space (e.g. 123456 ab12), or paste the e-mail's link to manage your "
                "appointment. I read the appointment at the city to learn what, where and when."
            )
        )
    elif flow.step == "whom" and cb.action == "sp":
        profiles = await turn.run(store.list_profiles, turn.user_id)
        chosen = next((p for p in profiles if p.id == _int(cb.arg)), None)
        if chosen is None:
            await turn.answer(_("That profile no longer exists."), alert=True)
            return
        flow.data["profile_id"] = chosen.id
        await _ask_where(turn, flow, None)
    elif flow.step == "where" and cb.action == "so":
        flow.data["any_office"] = cb.arg == "any"
        await _ask_how(turn, flow)
    elif flow.step == "how" and cb.action == "sa":
        await _finish(turn, flow, autobook=cb.arg == "1")
    else:
        await turn.answer(
            _("That button belongs to an earlier step; please use the latest message."), alert=True
        )


async def on_text(turn: Turn, flow: Flow, text: str) -> None:
    if flow.step != "key":
        await turn.say(turn._("Please use the buttons above, or /cancel."))
        return
    try:
        number, code = parse_credentials(text)
    except InputError as error:
        await turn.refuse(error)
        return
    flow.data["credentials"] = [number, code]  # the kept conversation is encrypted at rest
    if not await _ask_whom(turn, flow):
        await _ask_where(turn, flow, None)


async def _finish(turn: Turn, flow: Flow, *, autobook: bool) -> None:
    _ = turn._
    any_office = bool(flow.data.get("any_office"))
    booking_id = flow.data.get("booking_id")
    if booking_id is not None:
        started = await turn.run(begin_watch, turn.user_id, int(booking_id), any_office, autobook)
        end_flow(turn.context)
        if started.outcome is swap_policy.SwapOutcome.ALREADY_WATCHING:
            await turn.show(_("I am already looking for an earlier date for this appointment (see /list)."))
            return
        held = await turn.run(held_booking, turn.user_id, int(booking_id))
        if started.outcome is not swap_policy.SwapOutcome.STARTED or held is None:
            await turn.show(_("That booking can no longer be replaced (see /bookings)."))
            return
        log.info("swap_watch_started", booking_id=held.id, autobook=autobook)
        rendered = render_swap(
            {
                "event": swap_policy.SwapEvent.WATCHING.value,
                "site": held.site,
                "service_id": held.service_id,
                "office_id": held.office_id,
                "start": held.start,
                "any_office": any_office,
                "autobook": autobook,
            },
            turn.language,
        )
        await turn.show(_plain(rendered.text))
        return
    number, code = flow.data.get("credentials") or (None, None)
    if not number or not code:
        end_flow(turn.context)
        await turn.show(_("This conversation is over. Start again with a command, e.g. /subscribe."))
        return
    redis_url = turn.settings.redis_url if turn.settings is not None else ""
    profile_id = flow.data.get("profile_id")
    try:
        await asyncio.to_thread(
            send_adopt, redis_url, turn.user_id, profile_id, str(number), str(code), any_office, autobook
        )
    except Exception as exc:  # Redis down: nothing was queued; the person may try again
        log.warning("swap_adopt_request_failed", error=type(exc).__name__)
        await turn.answer(_("I could not send this right now. Please try again in a minute."), alert=True)
        return
    end_flow(turn.context)
    log.info("swap_adopt_requested", autobook=autobook)
    await turn.show(
        _(
            "I am reading your appointment at the city now; I will tell you in a moment what I found and "
            "that I am watching."
        )
    )


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


__all__ = [
    "ACTIONS",
    "HELP_LINE",
    "KIND",
    "begin",
    "held_bookings",
    "on_callback",
    "on_list_button",
    "on_text",
    "parse_credentials",
]
