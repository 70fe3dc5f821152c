"""Inline keyboards for the conversations; every button's data is signed for its user.

Builders take the translator ``_`` so labels are in the user's language, and a ``KeyboardMaker``
that signs each button for one user and (inside a conversation) one conversation nonce.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup

from bot.callbacks import CallbackSigner
from bot.i18n import LANGUAGE_NAMES, Gettext
from bot.services import service_button_label
from shared.catalog import Office, Service

ButtonSpec = tuple[str, str, str | int]
"""(label, action, argument)"""

CHECKED = "✅"
UNCHECKED = "▫️"
MAX_LABEL_CHARS = 60


def _short(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


class KeyboardMaker:
    """Signs buttons for one user (and one conversation, when ``nonce`` is set)."""

    def __init__(self, signer: CallbackSigner, user_id: int, nonce: str = "") -> None:
        self.signer = signer
        self.user_id = user_id
        self.nonce = nonce

    def button(self, label: str, action: str, arg: str | int = "") -> InlineKeyboardButton:
        return InlineKeyboardButton(
            _short(label), callback_data=self.signer.sign(self.user_id, action, arg, self.nonce)
        )

    def markup(self, rows: Iterable[Sequence[ButtonSpec]]) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([[self.button(*spec) for spec in row] for row in rows if row])


def nav_row(_: Gettext, *, back: bool = True) -> list[ButtonSpec]:
    row: list[ButtonSpec] = [("« " + _("Back"), "b", "")] if back else []
    row.append(("✖ " + _("Cancel"), "x", ""))
    return row


def services_keyboard(
    _: Gettext, kb: KeyboardMaker, services: Sequence[Service], *, language: str, back: bool = False
) -> InlineKeyboardMarkup:
    rows: list[list[ButtonSpec]] = [[(service_button_label(s, language), "sv", s.id)] for s in services]
    rows.append(nav_row(_, back=back))
    return kb.markup(rows)


def people_keyboard(_: Gettext, kb: KeyboardMaker, maximum: int, current: int | None) -> InlineKeyboardMarkup:
    numbers: list[ButtonSpec] = [
        ((f"{CHECKED} {n}" if n == current else str(n)), "np", n) for n in range(1, maximum + 1)
    ]
    rows = [numbers[i : i + 5] for i in range(0, len(numbers), 5)]
    rows.append(nav_row(_))
    return kb.markup(rows)


def ambiguous_names(offices: Iterable[Office]) -> set[str]:
    """Display names shared by several offices (e.g. two units at Ruppertstraße)."""
    seen: dict[str, int] = {}
    for office in offices:
        seen[office.display_name] = seen.get(office.display_name, 0) + 1
    return {name for name, count in seen.items() if count > 1}


def office_label(
    office: Office, distance_km: float | None = None, *, ambiguous: set[str] | None = None
) -> str:
    """Display name and street; the internal name (with its unit code) where the display name is shared."""
    label = office.name if ambiguous and office.display_name in ambiguous else office.display_name
    if office.street:
        label += f", {office.street} {office.house_number}".rstrip()
    if distance_km is not None:  # first, so a shortened label still shows it
        label = f"{distance_km:.1f} km · {label}"
    return label


def offices_keyboard(
    _: Gettext,
    kb: KeyboardMaker,
    offices: Sequence[Office],
    selected: Iterable[int],
    distances_km: dict[int, float] | None = None,
) -> InlineKeyboardMarkup:
    chosen = set(selected)
    distances_km = distances_km or {}
    shared_names = ambiguous_names(offices)
    rows: list[list[ButtonSpec]] = [
        [
            (
                (CHECKED if o.id in chosen else UNCHECKED)
                + " "
                + office_label(o, distances_km.get(o.id), ambiguous=shared_names),
                "of",
                o.id,
            )
        ]
        for o in offices
    ]
    rows.append([("🏢 " + _("Any office"), "oa", ""), ("📍 " + _("Nearest to me"), "on", "")])
    rows.append([("✔ " + _("Done"), "od", "")])
    rows.append(nav_row(_))
    return kb.markup(rows)


def window_keyboard(_: Gettext, kb: KeyboardMaker, *, keep_label: str | None) -> InlineKeyboardMarkup:
    rows: list[list[ButtonSpec]] = [
        [(_("Next 2 weeks"), "dw", "2w"), (_("Next month"), "dw", "1m")],
        [(_("Next 3 months"), "dw", "3m"), (_("Any date"), "dw", "any")],
    ]
    if keep_label:
        rows.append([(_("Keep: {current}").format(current=keep_label), "dw", "keep")])
    rows.append(nav_row(_))
    return kb.markup(rows)


def weekday_names(_: Gettext) -> list[str]:
    return [_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun")]


def weekdays_keyboard(_: Gettext, kb: KeyboardMaker, selected: Iterable[int]) -> InlineKeyboardMarkup:
    chosen = set(selected)
    names = weekday_names(_)
    days: list[ButtonSpec] = [
        (f"{CHECKED if d in chosen else UNCHECKED} {names[d]}", "wd", d) for d in range(7)
    ]
    rows = [days[:4], days[4:]]
    rows.append([(_("Any day"), "wa", ""), ("✔ " + _("Done"), "wn", "")])
    rows.append(nav_row(_))
    return kb.markup(rows)


def time_keyboard(_: Gettext, kb: KeyboardMaker, *, keep_label: str | None) -> InlineKeyboardMarkup:
    rows: list[list[ButtonSpec]] = [
        [(_("Any time"), "tm", "any")],
        [(_("Before noon"), "tm", "am"), (_("From noon"), "tm", "pm")],
        [(_("Before 10:00"), "tm", "early"), (_("From 16:00"), "tm", "late")],
    ]
    if keep_label:
        rows.append([(_("Keep: {current}").format(current=keep_label), "tm", "keep")])
    rows.append(nav_row(_))
    return kb.markup(rows)


def autobook_keyboard(_: Gettext, kb: KeyboardMaker) -> InlineKeyboardMarkup:
    return kb.markup(
        [
            [(_("Yes, book for me"), "ab", "1")],
            [(_("No, only alert me"), "ab", "0")],
            nav_row(_),
        ]
    )


def confirm_keyboard(_: Gettext, kb: KeyboardMaker, *, confirm_label: str) -> InlineKeyboardMarkup:
    return kb.markup([[("✔ " + confirm_label, "ok", "")], nav_row(_)])


def skip_keyboard(_: Gettext, kb: KeyboardMaker, *, back: bool = True) -> InlineKeyboardMarkup:
    return kb.markup([[(_("Skip"), "ps", "")], nav_row(_, back=back)])


def location_request_keyboard(_: Gettext) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        [[KeyboardButton("📍 " + _("Send my location"), request_location=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def language_keyboard(kb: KeyboardMaker, current: str) -> InlineKeyboardMarkup:
    return kb.markup(
        [
            [(f"{CHECKED} {name}" if code == current else name, "lg", code)]
            for code, name in LANGUAGE_NAMES.items()
        ]
    )


def subscription_keyboard(
    _: Gettext, kb: KeyboardMaker, sub_id: int, *, active: bool
) -> InlineKeyboardMarkup:
    toggle: ButtonSpec = ("⏸ " + _("Pause"), "lp", sub_id) if active else ("▶ " + _("Resume"), "lr", sub_id)
    return kb.markup([[toggle, ("✏ " + _("Edit"), "le", sub_id), ("🗑 " + _("Delete"), "ld", sub_id)]])


def yes_no_keyboard(kb: KeyboardMaker, *, yes: ButtonSpec, no: ButtonSpec) -> InlineKeyboardMarkup:
    return kb.markup([[yes, no]])


def describe_window(_: Gettext, start: date | None, end: date | None) -> str:
    if start is None and end is None:
        return _("any date")
    return _("{start} to {end}").format(
        start=start.strftime("%d.%m.%Y") if start else "…", end=end.strftime("%d.%m.%Y") if end else "…"
    )


__all__ = [
    "KeyboardMaker",
    "ambiguous_names",
    "autobook_keyboard",
    "confirm_keyboard",
    "describe_window",
    "language_keyboard",
    "location_request_keyboard",
    "nav_row",
    "office_label",
    "offices_keyboard",
    "people_keyboard",
    "services_keyboard",
    "skip_keyboard",
    "subscription_keyboard",
    "time_keyboard",
    "weekday_names",
    "weekdays_keyboard",
    "window_keyboard",
    "yes_no_keyboard",
]
