"""What an alert says, in the subscriber's language: pure rendering, no I/O.

A slot alert answers the questions a person has before tapping: what (service), where (office and
address), when (Berlin time), for how many people, which of their filters matched, how long ago MTA
saw it, and where to book (the deep link into the city's page, plus "Book this" when they stored a
booking profile). When the slot is gone the same message is edited to say so and how long it lasted.
Booking progress (holding, reserved, reminder, confirmed, expired, failed), why an autobook did not
book (the e-mail cap, missing consent) and operator alerts are rendered here too. Texts use
Telegram's HTML parse mode; every value from outside is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from babel.dates import format_date, format_datetime, format_time
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import Gettext, normalize_language, translator
from bot.services import service_name
from shared.booking import SubscriberNotice
from shared.catalog import get_catalog
from shared.domain import SITE_TIMEZONE
from shared.sites import deep_link

BOOK_CALLBACK_PREFIX = "book:"
"""Callback data of the "Book this" button: ``book:<slot_id>`` (the booking handler owns it)."""

_DATETIME_FORMAT = {
    "en": "EEE d MMM y, HH:mm",
    "de": "EEE, d. MMM y, HH:mm",
    "ru": "EEE, d MMM y, HH:mm",
    "uk": "EEE, d MMM y, HH:mm",
    "tr": "d MMM y EEE, HH:mm",
}
_DATE_FORMAT = {"en": "d MMM y", "de": "d. MMM y", "ru": "d MMM y", "uk": "d MMM y", "tr": "d MMM y"}


def N_(message: str) -> str:
    """Mark a string for translation without translating it here."""
    return message


WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))


@dataclass(frozen=True)
class Rendered:
    """A message ready for Telegram: HTML text and an optional inline keyboard."""

    text: str
    markup: InlineKeyboardMarkup | None = None
    parse_mode: str = "HTML"


@dataclass(frozen=True)
class Filters:
    """The filters of one subscription, as the alert explains them."""

    office_ids: Sequence[int] = ()
    date_from: date | None = None
    date_to: date | None = None
    weekdays: Sequence[int] = ()
    time_from: time | None = None
    time_to: time | None = None


@dataclass(frozen=True)
class SlotAlert:
    """Everything a slot alert shows; built by the sender from the outbox row and the database."""

    slot_id: int
    site: str
    service_id: int
    service_count: int
    office_id: int
    start_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    site_url: str
    filters: Filters = field(default_factory=Filters)
    has_profile: bool = False
    autobook: bool = False
    gone_at: datetime | None = None


DAY_BEFORE = "day_before"
"""``BookingUpdate.status`` (and a reminder row's payload status) of the reminder the day before a
confirmed appointment."""


@dataclass(frozen=True)
class BookingUpdate:
    """A booking's progress for the person; ``status`` is a ``BookingStatus`` value or "reminder"."""

    status: str
    site: str
    service_id: int
    office_id: int
    start_at: datetime | None
    site_url: str
    service_count: int = 1
    activation_deadline: datetime | None = None
    reason: str | None = None


def _esc(value: object) -> str:
    return html.escape(str(value), quote=False)


def _lang(language: str | None) -> str:
    return normalize_language(language)


def berlin_datetime(moment: datetime, language: str | None) -> str:
    """``moment`` in Berlin time, e.g. "Tue 3 Mar 2026, 09:30" / "Di., 3. März 2026, 09:30"."""
    lang = _lang(language)
    return format_datetime(moment.astimezone(SITE_TIMEZONE), _DATETIME_FORMAT[lang], locale=lang)


def _date(day: date, language: str) -> str:
    return format_date(day, _DATE_FORMAT[language], locale=language)


def _clock(moment: time, language: str) -> str:
    return format_time(moment, "HH:mm", locale=language)


def describe_duration(duration: timedelta, _: Gettext) -> str:
    """A human length of time: "less than a minute", "12 minutes", "2 h 5 min", "3 days"."""
    seconds = max(0, int(duration.total_seconds()))
    minutes = seconds // 60
    if minutes < 1:
        return _("less than a minute")
    if minutes < 60:
        return _.ngettext("{n} minute", "{n} minutes", minutes).format(n=minutes)
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return _("{h} h {m} min").format(h=hours, m=rest) if rest else _("{h} h").format(h=hours)
    days = hours // 24
    return _.ngettext("{n} day", "{n} days", days).format(n=days)


def describe_age(age: timedelta, _: Gettext) -> str:
    """How long ago something was seen: "just now" or "5 minutes ago"."""
    if age < timedelta(minutes=1):
        return _("just now")
    return _("{duration} ago").format(duration=describe_duration(age, _))


def _service_name(site: str, service_id: int, _: Gettext, language: str) -> str:
    """The catalogue's (German) name, with a hint in the reader's language where one is known."""
    name = service_name(service_id, language, site=site)
    return name if name is not None else _("service {id}").format(id=service_id)


def _office_line(site: str, office_id: int, _: Gettext) -> str:
    office = get_catalog(site).office(office_id)
    if office is None:
        return _esc(_("office {id}").format(id=office_id))
    address = f", {_esc(office.address)}" if office.address else ""
    return f"{_esc(office.display_name or office.name)}{address}"


def describe_filters(site: str, filters: Filters, language: str | None) -> list[str]:
    """One short line per filter the subscription sets (all matched, or there would be no alert)."""
    lang = _lang(language)
    _ = translator(lang)
    lines = []
    if filters.office_ids:
        catalog = get_catalog(site)
        names = []
        for office_id in filters.office_ids:
            office = catalog.office(office_id)
            names.append(office.display_name or office.name if office else str(office_id))
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        lines.append(_("offices: {offices}").format(offices=shown))
    else:
        lines.append(_("any office"))
    if filters.date_from or filters.date_to:
        start = _date(filters.date_from, lang) if filters.date_from else "…"
        end = _date(filters.date_to, lang) if filters.date_to else "…"
        lines.append(_("dates: {start} – {end}").format(start=start, end=end))
    if filters.weekdays and len(set(filters.weekdays)) < 7:
        days = ", ".join(_(WEEKDAYS[d]) for d in sorted(set(filters.weekdays)) if 0 <= d < 7)
        lines.append(_("weekdays: {days}").format(days=days))
    if filters.time_from or filters.time_to:
        start = _clock(filters.time_from, lang) if filters.time_from else "00:00"
        end = _clock(filters.time_to, lang) if filters.time_to else "24:00"
        lines.append(_("time of day: {start} – {end}").format(start=start, end=end))
    return [_esc(line) for line in lines]


def _slot_body(alert: SlotAlert, lang: str, _: Gettext, now: datetime) -> list[str]:
    service = _esc(_service_name(alert.site, alert.service_id, _, lang))
    berlin_time = _esc(_("(Berlin time)"))  # outside the f-string, so extraction sees it
    lines = [
        f"🏛 <b>{service}</b>",
        f"📍 {_office_line(alert.site, alert.office_id, _)}",
        f"🕒 {_esc(berlin_datetime(alert.start_at, lang))} {berlin_time}",
    ]
    if alert.service_count > 1:
        people = _.ngettext("for {n} person", "for {n} people", alert.service_count)
        lines.append("👥 " + _esc(people.format(n=alert.service_count)))
    matched = "; ".join(describe_filters(alert.site, alert.filters, lang))
    lines.append("✅ " + _esc(_("Matches your filters:")) + " " + matched)
    if alert.gone_at is None:
        age = describe_age(now - alert.last_seen_at, _)
        lines.append("👀 " + _esc(_("Seen {age}.").format(age=age)))
    return lines


def _link(alert: SlotAlert) -> str:
    return deep_link(alert.site_url, alert.service_id, alert.office_id)


def render_slot_alert(alert: SlotAlert, language: str | None, now: datetime) -> Rendered:
    """The alert for a newly seen slot, with the booking link and (with a profile) "Book this"."""
    lang = _lang(language)
    _ = translator(lang)
    lines = ["🔔 <b>" + _esc(_("Free appointment!")) + "</b>", *_slot_body(alert, lang, _, now)]
    if alert.autobook:
        lines.append("🤖 " + _esc(_("MTA is trying to book it for you; you will hear from me shortly.")))
    else:
        lines.append(_esc(_("Be quick: free slots are usually gone within minutes.")))
    link = _link(alert)
    lines.append(f'👉 <a href="{html.escape(link, quote=True)}">{_esc(_("Open the booking page"))}</a>')
    buttons = [[InlineKeyboardButton(_("Open the booking page"), url=link)]]
    if alert.has_profile and not alert.autobook:
        buttons.append(
            [InlineKeyboardButton(_("Book this"), callback_data=f"{BOOK_CALLBACK_PREFIX}{alert.slot_id}")]
        )
    return Rendered("\n".join(lines), InlineKeyboardMarkup(buttons))


def render_gone(alert: SlotAlert, language: str | None, now: datetime) -> Rendered:
    """The original alert, edited: the slot is gone, and how long it was there. No buttons."""
    lang = _lang(language)
    _ = translator(lang)
    gone_at = alert.gone_at or now
    lasted = describe_duration(gone_at - alert.first_seen_at, _)
    head = "❌ <b>" + _esc(_("Gone after {duration}.").format(duration=lasted)) + "</b>"
    body = _slot_body(alert, lang, _, now)
    note = _esc(_("MTA keeps watching and will tell you about the next one."))
    return Rendered(
        "\n".join([head, *(f"<s>{line}</s>" if i < 3 else line for i, line in enumerate(body)), note])
    )


def render_booking(update: BookingUpdate, language: str | None, now: datetime) -> Rendered:
    """A booking's progress: holding, reserved, preconfirmed, reminder, confirmed, expired, failed,
    cancelled."""
    lang = _lang(language)
    _ = translator(lang)
    service = _esc(_service_name(update.site, update.service_id, _, lang))
    where = _office_line(update.site, update.office_id, _)
    when = _esc(berlin_datetime(update.start_at, lang)) if update.start_at else "?"
    what = f"<b>{service}</b>\n📍 {where}\n🕒 {when}"
    deadline = _esc(berlin_datetime(update.activation_deadline, lang)) if update.activation_deadline else None
    status = update.status
    if status == "holding":
        head = "⏳ " + _esc(_("Booking in progress: holding the slot and filling in your details…"))
    elif status in ("reserved", "preconfirmed"):
        head = "📨 " + _esc(_("Reserved! The city has e-mailed you an activation link."))
        if deadline:
            head += "\n" + _esc(_("Open it before {deadline}, or the reservation lapses.")).format(
                deadline=deadline
            )
    elif status == "reminder":
        head = "⏰ " + _esc(_("Reminder: confirm your appointment with the link in the city's e-mail."))
        if deadline:
            left = (
                describe_duration(update.activation_deadline - now, _) if update.activation_deadline else ""
            )
            head += "\n" + _esc(_("Deadline: {deadline} ({left} left).")).format(
                deadline=deadline, left=_esc(left)
            )
    elif status == "confirmed":
        head = "✅ " + _esc(_("Your appointment is confirmed."))
        head += "\n" + _esc(_("The calendar file follows; /bookings offers it again."))
    elif status == DAY_BEFORE:
        head = "📅 " + _esc(
            _("Your appointment is tomorrow. Bring what the city's confirmation e-mail asks for.")
        )
    elif status == "expired":
        head = "⌛ " + _esc(_("The reservation expired: the activation link was not opened in time."))
    elif status == "cancelled":
        head = "🚫 " + _esc(_("The booking was cancelled."))
    else:
        head = "❌ " + _esc(_("Booking failed."))
        if update.reason == "appointmentNotAvailable":
            head += " " + _esc(_("Someone else took the slot first; MTA keeps watching."))
        elif update.reason:
            head += " " + _esc(update.reason)
    link = deep_link(update.site_url, update.service_id, update.office_id)
    markup = None
    if status in ("failed", "expired"):
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(_("Open the booking page"), url=link)]])
    return Rendered(f"{head}\n{what}", markup)


@dataclass(frozen=True)
class BookingNotice:
    """Why MTA did not book what an autobook subscription found, and what the person can do."""

    reason: SubscriberNotice
    site: str
    service_id: int
    cap: int = 3
    person: str | None = None
    """The profile's label when the booking was for a family member; None: for the user themself."""


def render_booking_notice(notice: BookingNotice, language: str | None) -> Rendered:
    """The e-mail cap or missing consent stopped an autobook (told once per subscription episode)."""
    lang = _lang(language)
    _ = translator(lang)
    service = _service_name(notice.site, notice.service_id, _, lang)
    if notice.reason is SubscriberNotice.CONSENT_NEEDED:
        text = _(
            "I did not book {service} for you: you stored your booking details before I asked for "
            "consent, and I use them only once you agree. Open /profile to read what I keep and agree, "
            "or to erase them. Until then alerts keep coming, and you can book with their link."
        ).format(service=service)
        return Rendered("🔒 " + _esc(text))
    if notice.person:
        text = _(
            "I could not book {service} for “{person}”: MTA already holds {cap} appointments to come "
            "for the e-mail address in that profile (family members who share an address count "
            "together), as many as the city allows per address. Alerts keep coming, and I book as "
            "soon as there is room: give “{person}” an e-mail address of their own in /profile, or "
            "cancel one of those appointments in /bookings."
        ).format(service=service, person=notice.person, cap=notice.cap)
    else:
        text = _(
            "I could not book {service} for you: MTA already holds {cap} appointments to come for the "
            "e-mail address in your profile (family members who share an address count together), as "
            "many as the city allows per address. Alerts keep coming, and I book as soon as there is "
            "room: use another e-mail address in your profile (/profile), or cancel one of those "
            "appointments in /bookings."
        ).format(service=service, cap=notice.cap)
    return Rendered("✋ " + _esc(text))


def render_operator(text: str | None, payload: dict[str, Any]) -> Rendered:
    """An operator alert (English only: operators read logs in English)."""
    body = text or f"MTA operator alert: {payload.get('reason', 'unknown')} {payload}"
    return Rendered("🛠 " + _esc(body))


__all__ = [
    "BOOK_CALLBACK_PREFIX",
    "DAY_BEFORE",
    "BookingNotice",
    "BookingUpdate",
    "Filters",
    "Rendered",
    "SlotAlert",
    "berlin_datetime",
    "describe_age",
    "describe_duration",
    "describe_filters",
    "render_booking",
    "render_booking_notice",
    "render_gone",
    "render_operator",
    "render_slot_alert",
]
