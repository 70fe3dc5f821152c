"""What the person hears about an earlier date (``shared.swaps``): pure rendering, no I/O.

The worker queues these as outbox rows of kind ``booking`` with ``text`` NULL and the facts in the
payload (``payload["event"]`` one of ``shared.swaps.SWAP_EVENTS``; no personal data, no
credentials); the outbox store hands them here, so they are said in the reader's language. The
bookings' own steps (holding, reserved, confirmed, failed, expired) are the ordinary booking
messages; these add what is particular to a swap: watching, done (old cancelled), old kept, old
not cancelled (two appointments: the person cancels the old one).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.alerts import Rendered, berlin_datetime
from bot.i18n import Gettext, normalize_language, translator
from bot.services import service_label
from bot.validation import N_
from shared.catalog import get_catalog
from shared.domain import DEFAULT_SITE, ensure_utc
from shared.swaps import SWAP_EVENTS, CancelGiveUp, LookupCode, SwapEvent

LOOKUP_TEXTS: dict[str, str] = {
    LookupCode.NOT_FOUND: N_(
        "The city knows no appointment with this process number (or it was cancelled). Please check "
        "the number in the city's e-mail and try again with /earlier."
    ),
    LookupCode.KEY_MISMATCH: N_(
        "The process number exists, but the code does not belong to it. Please check the code in "
        "the city's e-mail (it is part of the link to manage your appointment) and try again with "
        "/earlier."
    ),
    LookupCode.NOT_BOOKED: N_(
        "This appointment is only reserved, not booked yet: confirm it with the link in the city's "
        "e-mail first, then try again with /earlier."
    ),
    LookupCode.PAST: N_("This appointment is in the past: there is no earlier date to look for."),
    LookupCode.KNOWN: N_(
        "I know this appointment already: see /bookings, where you can look for an earlier date."
    ),
    LookupCode.NO_PROFILE: N_(
        "To book an earlier date I need the details for the city's form: store them with /profile, "
        "then try again with /earlier."
    ),
    LookupCode.SITE: N_(
        "I could not read the appointment at the city just now (the site did not answer as "
        "expected). Please try again with /earlier in a few minutes."
    ),
}


def is_swap(payload: Mapping[str, Any] | None) -> bool:
    return bool(payload) and str((payload or {}).get("event")) in SWAP_EVENTS


def _esc(value: object) -> str:
    return html.escape(str(value), quote=False)


def _when(value: object, language: str) -> str:
    if not isinstance(value, str):
        return "?"
    try:
        return berlin_datetime(ensure_utc(datetime.fromisoformat(value)), language)
    except ValueError:
        return "?"


def appointment_lines(
    site: str, service_id: int, office_id: int, start: str | None, language: str, _: Gettext
) -> str:
    """Service (with the reader's hint), office and time, as HTML lines."""
    catalog = get_catalog(site)
    service = catalog.service(service_id)
    office = catalog.office(office_id)
    service_text = service_label(service, language) if service else str(service_id)
    office_text = (office.display_name or office.name) if office else str(office_id)
    return f"<b>{_esc(service_text)}</b>\n📍 {_esc(office_text)}\n🕒 {_esc(_when(start, language))}"


def render_swap(payload: Mapping[str, Any], language: str | None) -> Rendered:
    """One swap message (``payload["event"]``), in ``language``."""
    lang = normalize_language(language)
    _ = translator(lang)
    event = str(payload.get("event"))
    site = str(payload.get("site") or DEFAULT_SITE)
    if event == SwapEvent.LOOKUP_FAILED:
        code = str(payload.get("code") or LookupCode.SITE)
        return Rendered("❌ " + _esc(_(LOOKUP_TEXTS.get(code, LOOKUP_TEXTS[LookupCode.SITE]))))
    what = appointment_lines(
        site,
        int(payload.get("service_id") or 0),
        int(payload.get("office_id") or 0),
        payload.get("start"),
        lang,
        _,
    )
    if event == SwapEvent.WATCHING:
        head = "🔎 " + _esc(_("I keep your appointment and look for an earlier date than this one:"))
        where = _("at any office that offers it") if payload.get("any_office") else _("at this office only")
        if payload.get("autobook"):
            how = _(
                "When an earlier one fits, I book it for you; your old appointment is cancelled only "
                "once the new one is confirmed (you open the city's activation link)."
            )
        else:
            how = _(
                'When an earlier one fits, I alert you; "Book this" books it, and your old appointment '
                "is cancelled only once the new one is confirmed."
            )
        return Rendered(f"{head}\n{what}\n\n{_esc(where)}\n{_esc(how)}")
    if event == SwapEvent.DONE:
        head = "✅ " + _esc(
            _(
                "Done: your earlier appointment is confirmed, and I cancelled the old one ({old}) at "
                "the city. This is your appointment now:"
            ).format(old=_when(payload.get("old_start"), lang))
        )
        return Rendered(f"{head}\n{what}")
    if event == SwapEvent.KEPT:
        if payload.get("new_status") == "expired":
            why = _("the activation link for the earlier one was not opened in time")
        else:
            why = _("the city did not accept the booking of the earlier one")
        head = "↩️ " + _esc(
            _("Your appointment stays as it was: {why}. I stopped looking; /bookings starts again.").format(
                why=why
            )
        )
        return Rendered(f"{head}\n{what}")
    # SwapEvent.CANCEL_FAILED: the old one stays booked at the city (shared.swaps.CancelGiveUp)
    new = _when(payload.get("new_start"), lang)
    reason = str(payload.get("reason") or CancelGiveUp.REFUSED)
    if reason == CancelGiveUp.PAST:
        head = "⚠️ " + _esc(
            _(
                "Your earlier appointment ({new}) is confirmed, but I could not cancel the old one "
                "below at the city before its time came."
            ).format(new=new)
        )
        return Rendered(f"{head}\n{what}")
    if reason == CancelGiveUp.FAILING:
        why = _("the city's site kept failing when I tried")
    else:
        why = _("the city refuses to cancel it")
    head = "⚠️ " + _esc(
        _(
            "Your earlier appointment ({new}) is confirmed, but I could not cancel the old one below "
            "at the city ({why}). You hold two appointments now: please cancel the old one yourself, "
            "with the link in the city's e-mail or in /bookings, so that it goes back to others."
        ).format(new=new, why=why)
    )
    return Rendered(f"{head}\n{what}")


__all__ = ["LOOKUP_TEXTS", "appointment_lines", "is_swap", "render_swap"]
