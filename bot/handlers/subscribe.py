"""/subscribe: a subscription in a few taps, and the same steps to edit one from /list.

```mermaid
stateDiagram-v2
    [*] --> service: /subscribe
    service --> people: service button / search result
    people --> offices: number
    offices --> location: "Nearest to me"
    location --> offices: shared location (nearest ticked)
    offices --> window: Done / Any office
    window --> weekdays: preset or typed dates
    weekdays --> time: Done / Any day
    time --> autobook: preset or typed range
    autobook --> confirm: yes / no (one profile or none)
    autobook --> whom: yes, with several booking profiles
    whom --> confirm: the person to book for
    confirm --> [*]: Save (Subscription row, targets re-derived)
```

Every step has Back (to the previous step) and Cancel, and /cancel works anywhere. Typed text is
accepted where it makes sense (a service name, dates, a time range, a number) and otherwise
answered with a hint to use the buttons; the step stays where it was.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any

from bot.alerts import berlin_datetime
from bot.callbacks import Callback
from bot.keyboards import (
    ambiguous_names,
    autobook_keyboard,
    confirm_keyboard,
    describe_window,
    location_request_keyboard,
    nav_row,
    office_label,
    offices_keyboard,
    people_keyboard,
    services_keyboard,
    time_keyboard,
    weekday_names,
    weekdays_keyboard,
    window_keyboard,
)
from bot.services import search_services, service_label
from bot.validation import (
    N_,
    TIME_PRESETS,
    InputError,
    check_length,
    parse_count,
    parse_date_window,
    parse_time_range,
    site_today,
    window_preset,
)
from shared.catalog import Office, Service, get_catalog
from shared.db.models import Subscription
from shared.domain import ensure_utc
from shared.profile_rules import custom_field_for_service

from . import store
from .common import Flow, Turn, end_flow, start_flow
from .profile import profile_label

KIND = "subscribe"
FREQUENT_SERVICE_IDS = (
    1063475,  # Wohnsitzanmeldung
    1063441,  # Personalausweis
    1063453,  # Reisepass
    1063576,  # Meldebescheinigung
    10295182,  # Abholung Personalausweis, Reisepass oder eID-Karte
    1071896,  # Umschreibung eines ausländischen Führerscheins
    1063565,  # Führungszeugnis
    1071907,  # Einbürgerung
)
SEARCH_RESULTS = 8
NEAREST_PRESELECTED = 3
MAX_PEOPLE = 25
"""The site's limit per service count, whatever the catalogue says."""
USE_BUTTONS = N_("Please use the buttons above, or /cancel.")


def frequent_services() -> list[Service]:
    catalog = get_catalog()
    found = (catalog.service(i) for i in FREQUENT_SERVICE_IDS)
    return [s for s in found if s is not None and s.public and catalog.offices_for_service(s.id)]


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def offices_by_distance(offices: list[Office], here: tuple[float, float]) -> dict[int, float]:
    return {o.id: distance_km(here, o.coordinates) for o in offices if o.coordinates is not None}


# --- the draft ------------------------------------------------------------------------------------


def _service(flow: Flow) -> Service | None:
    service_id = flow.data.get("service_id")
    return get_catalog().service(int(service_id)) if service_id is not None else None


def _offices(flow: Flow) -> list[Office]:
    offices = get_catalog().offices_for_service(int(flow.data["service_id"]))
    distances: dict[str, float] = flow.data.get("distances_km") or {}
    if distances:
        offices.sort(key=lambda o: distances.get(str(o.id), math.inf))
    return offices


def _max_people(service: Service) -> int:
    return max(1, min(service.max_quantity, MAX_PEOPLE))


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _time(value: Any) -> time | None:
    return time.fromisoformat(value) if value else None


def _describe_time(turn: Turn, start: time | None, end: time | None) -> str:
    _ = turn._
    if start is None and end is None:
        return _("any time")
    if start is None and end is not None:
        return _("until {end}").format(end=end.strftime("%H:%M"))
    if end is None and start is not None:
        return _("from {start}").format(start=start.strftime("%H:%M"))
    assert start is not None and end is not None
    return f"{start.strftime('%H:%M')}–{end.strftime('%H:%M')}"


def _describe_weekdays(turn: Turn, weekdays: list[int]) -> str:
    if not weekdays:
        return turn._("any day")
    names = weekday_names(turn._)
    return ", ".join(names[d] for d in sorted(weekdays))


def _describe_offices(turn: Turn, office_ids: list[int]) -> str:
    if not office_ids:
        return turn._("any office offering it")
    catalog = get_catalog()
    offices = [o for o in (catalog.office(i) for i in sorted(office_ids)) if o is not None]
    shared_names = ambiguous_names(offices)
    names = [office_label(o, ambiguous=shared_names) for o in offices]
    return "; ".join(names)


def summary_text(turn: Turn, data: dict[str, Any], *, heading: str) -> str:
    _ = turn._
    service = get_catalog().service(int(data["service_id"]))
    lines = [
        heading,
        "",
        _("Service: {name}").format(
            name=service_label(service, turn.language) if service else data["service_id"]
        ),
        _("People: {count}").format(count=data.get("count", 1)),
        _("Offices: {offices}").format(offices=_describe_offices(turn, list(data.get("office_ids") or []))),
        _("Dates: {window}").format(
            window=describe_window(_, _date(data.get("date_from")), _date(data.get("date_to")))
        ),
        _("Weekdays: {days}").format(days=_describe_weekdays(turn, list(data.get("weekdays") or []))),
        _("Time of day: {times}").format(
            times=_describe_time(turn, _time(data.get("time_from")), _time(data.get("time_to")))
        ),
        _("Booking: {mode}").format(
            mode=_("MTA may book for me") if data.get("autobook") else _("alerts only")
        ),
    ]
    if data.get("autobook") and data.get("profile_name"):
        lines.append(_("Books for: {person}").format(person=data["profile_name"]))
    return "\n".join(lines)


def _profile_name(turn: Turn, profiles: list[store.ProfileData], profile_id: int | None) -> str | None:
    """The label of the person a subscription books for (its profile, else the default, oldest)."""
    chosen = next((p for p in profiles if p.id == profile_id), profiles[0] if profiles else None)
    return profile_label(turn._, chosen) if chosen is not None else None


def describe_subscription(
    turn: Turn, sub: Subscription, profiles: list[store.ProfileData] | None = None
) -> str:
    """The subscription as text; with the user's ``profiles`` it also says for whom MTA books."""
    data = _data_from_subscription(sub)
    data["profile_name"] = _profile_name(turn, profiles or [], sub.profile_id)
    state = {"active": turn._("active"), "paused": turn._("paused")}.get(str(sub.state), str(sub.state))
    text = summary_text(
        turn, data, heading=turn._("Subscription #{id} ({state})").format(id=sub.id, state=state)
    )
    if sub.replaces_booking_id is not None and sub.start_before is not None:  # shared.swaps
        text += "\n⏪ " + turn._("An earlier date than booking #{id}: only before {when}.").format(
            id=sub.replaces_booking_id, when=berlin_datetime(sub.start_before, turn.language)
        )
    return text


def _data_from_subscription(sub: Subscription) -> dict[str, Any]:
    return {
        "service_id": sub.service_id,
        "count": sub.service_count,
        "office_ids": [int(i) for i in sub.office_ids or []],
        "date_from": sub.date_from.isoformat() if sub.date_from else None,
        "date_to": sub.date_to.isoformat() if sub.date_to else None,
        "window_set": True,
        "weekdays": [int(d) for d in sub.weekdays or []],
        "time_from": sub.time_from.isoformat() if sub.time_from else None,
        "time_to": sub.time_to.isoformat() if sub.time_to else None,
        "time_set": True,
        "autobook": bool(sub.autobook),
        "profile_id": sub.profile_id,
    }


# --- entry points ---------------------------------------------------------------------------------


async def begin(turn: Turn) -> None:
    """/subscribe"""
    flow = start_flow(turn.context, KIND, "service")
    await render(turn, flow)


SWAP_FIXED = N_(
    "This subscription looks for an earlier date than booking #{id}, so its service, number of people "
    "and the person booked for stay those of that appointment. To watch another service, start a new "
    "subscription with /subscribe."
)
"""A swap's watch (``shared.swaps``) edited in /list: another service would make it look for
something that cannot replace the held appointment (and another person would cancel theirs), so
only where, when and how may change."""


async def begin_edit(turn: Turn, sub: Subscription) -> None:
    """Edit from /list: the same steps, starting at the number of people, with the old values (a
    swap's watch starts at the offices: ``SWAP_FIXED``)."""
    data = _data_from_subscription(sub)
    if sub.replaces_booking_id is not None:
        before = sub.start_before.isoformat() if sub.start_before is not None else None
        flow = start_flow(
            turn.context,
            KIND,
            "offices",
            editing_id=sub.id,
            swap_of=sub.replaces_booking_id,
            swap_before=before,
            **data,
        )
        await render(turn, flow)
        return
    flow = start_flow(turn.context, KIND, "service", editing_id=sub.id, **data)
    flow.go("people")
    await render(turn, flow)


def _swap_note(turn: Turn, flow: Flow) -> str:
    """The line that says a swap's service stays, or nothing for an ordinary subscription."""
    if flow.data.get("swap_of") is None:
        return ""
    return "⏪ " + turn._(SWAP_FIXED).format(id=flow.data["swap_of"]) + "\n\n"


# --- rendering ------------------------------------------------------------------------------------


async def render(turn: Turn, flow: Flow, *, new_message: bool = False) -> None:
    """Show the current step: edit the message the button sits on, or send a new one."""
    text, markup = _view(turn, flow)
    if new_message or not turn.from_button:
        await turn.say(text, markup)
    else:
        await turn.show(text, markup)


def _view(turn: Turn, flow: Flow) -> tuple[str, Any]:
    _ = turn._
    kb = turn.keys(flow)
    step = flow.step
    if step == "service":
        results = flow.data.get("search_results")
        if results:
            catalog = get_catalog()
            services = [s for s in (catalog.service(int(i)) for i in results) if s is not None]
            text = _("Services matching “{query}”. Tap one, or type another search:").format(
                query=flow.data.get("search_query", "")
            )
        else:
            services = frequent_services()
            text = _(
                "Which service do you need an appointment for?\n"
                "Tap a frequent one, or say in your own words what you need, in any of my languages "
                "(e.g. “passport”, “Anmeldung”, “прописка”); typos are fine."
            )
        return text, services_keyboard(_, kb, services, language=turn.language)
    service = _service(flow)
    assert service is not None
    if step == "people":
        text = _("{service}\n\nFor how many people?").format(service=service_label(service, turn.language))
        return text, people_keyboard(_, kb, _max_people(service), flow.data.get("count"))
    if step == "offices":
        offices = _offices(flow)
        distances = {int(k): v for k, v in (flow.data.get("distances_km") or {}).items()}
        text = _swap_note(turn, flow) + _(
            "Which offices? Tick one or more and tap Done, or take any office offering {service}."
        ).format(service=service_label(service, turn.language))
        return text, offices_keyboard(_, kb, offices, flow.data.get("office_ids") or [], distances)
    if step == "location":
        text = _("Share your location with the button below and I will tick the offices nearest to you.")
        return text, kb.markup([nav_row(_)])
    if step == "window":
        keep = None
        if flow.data.get("window_set"):
            keep = describe_window(_, _date(flow.data.get("date_from")), _date(flow.data.get("date_to")))
        text = _("Which dates? Tap a window, or type dates like 01.12.2026 - 24.12.2026 (or one date).")
        return text, window_keyboard(_, kb, keep_label=keep)
    if step == "weekdays":
        text = _("Which weekdays? Tick some and tap Done, or take any day.")
        return text, weekdays_keyboard(_, kb, flow.data.get("weekdays") or [])
    if step == "time":
        keep = None
        if flow.data.get("time_set"):
            keep = _describe_time(turn, _time(flow.data.get("time_from")), _time(flow.data.get("time_to")))
        text = _("Which time of day? Tap one, or type a range like 08:00-12:00.")
        return text, time_keyboard(_, kb, keep_label=keep)
    if step == "autobook":
        text = _(
            "When a matching slot appears, may MTA book it for you right away? The city then e-mails you a "
            "link to activate the appointment. Booking needs your contact details (/profile)."
        )
        return text, autobook_keyboard(_, kb)
    if step == "whom":
        text = _("Whom should MTA book for? Their booking profile goes into the city's form.")
        rows = [[("👤 " + p["name"][:40], "fp", p["id"])] for p in flow.data.get("profiles") or []]
        return text, kb.markup([*rows, nav_row(_)])
    if step == "confirm":
        heading = _("Please check your subscription:")
        text = summary_text(turn, flow.data, heading=heading)
        if flow.data.get("swap_of") is not None and flow.data.get("swap_before"):
            text += "\n⏪ " + _("An earlier date than booking #{id}: only before {when}.").format(
                id=flow.data["swap_of"],
                when=berlin_datetime(
                    ensure_utc(datetime.fromisoformat(flow.data["swap_before"])), turn.language
                ),
            )
        if flow.data.get("autobook") and not flow.data.get("has_profile"):
            text += "\n\n" + _(
                "You have no booking profile yet: set it with /profile, until then I only alert you."
            )
        rule = custom_field_for_service(service.id)
        if flow.data.get("autobook") and rule is not None:
            text += "\n" + _("This office also asks for: {label}.").format(label=rule.site_label)
        return text, confirm_keyboard(_, kb, confirm_label=_("Save"))
    raise InputError(N_("Unknown choice."))


# --- input ----------------------------------------------------------------------------------------


async def on_callback(turn: Turn, flow: Flow, cb: Callback) -> None:
    _ = turn._
    step, action, arg = flow.step, cb.action, cb.arg
    expected = {
        "service": {"sv"},
        "people": {"np"},
        "offices": {"of", "oa", "on", "od"},
        "location": set(),
        "window": {"dw"},
        "weekdays": {"wd", "wa", "wn"},
        "time": {"tm"},
        "autobook": {"ab"},
        "whom": {"fp"},
        "confirm": {"ok"},
    }.get(step, set())
    if action not in expected:
        await turn.answer(
            _("That button belongs to an earlier step; please use the latest message."), alert=True
        )
        return
    if flow.data.get("swap_of") is not None and action in ("sv", "np", "fp"):
        await turn.answer(_(SWAP_FIXED).format(id=flow.data["swap_of"]), alert=True)
        return
    try:
        if action == "sv":
            service = get_catalog().service(int(arg))
            if service is None or not service.public or not get_catalog().offices_for_service(service.id):
                raise InputError(N_("Unknown choice."))
            if flow.data.get("service_id") != service.id:
                for key in ("office_ids", "distances_km", "count"):
                    flow.data.pop(key, None)
            flow.data["service_id"] = service.id
            offices = get_catalog().offices_for_service(service.id)
            if len(offices) == 1:
                flow.data["office_ids"] = [offices[0].id]
            flow.go("people")
        elif action == "np":
            service = _service(flow)
            assert service is not None
            flow.data["count"] = parse_count(arg, _max_people(service))
            flow.go("offices")
        elif action == "of":
            office_id = int(arg)
            if office_id not in {o.id for o in _offices(flow)}:
                raise InputError(N_("Unknown choice."))
            chosen = set(flow.data.get("office_ids") or [])
            chosen.symmetric_difference_update({office_id})
            flow.data["office_ids"] = sorted(chosen)
        elif action == "oa":
            flow.data["office_ids"] = []
            flow.go("window")
        elif action == "on":
            flow.go("location")
            await render(turn, flow)
            await turn.say("📍", location_request_keyboard(_))
            return
        elif action == "od":
            if not flow.data.get("office_ids"):
                await turn.answer(_("Tick at least one office, or tap “Any office”."), alert=True)
                return
            flow.go("window")
        elif action == "dw":
            if arg != "keep":
                start, end = window_preset(arg, today=site_today())
                flow.data["date_from"] = start.isoformat() if start else None
                flow.data["date_to"] = end.isoformat() if end else None
                flow.data["window_set"] = True
            flow.go("weekdays")
        elif action == "wd":
            day = int(arg)
            if not 0 <= day <= 6:
                raise InputError(N_("Unknown choice."))
            days = set(flow.data.get("weekdays") or [])
            days.symmetric_difference_update({day})
            flow.data["weekdays"] = sorted(days)
        elif action == "wa":
            flow.data["weekdays"] = []
            flow.go("time")
        elif action == "wn":
            flow.go("time")
        elif action == "tm":
            if arg != "keep":
                if arg not in TIME_PRESETS:
                    raise InputError(N_("Unknown choice."))
                start_t, end_t = TIME_PRESETS[arg]
                flow.data["time_from"] = start_t.isoformat() if start_t else None
                flow.data["time_to"] = end_t.isoformat() if end_t else None
                flow.data["time_set"] = True
            flow.go("autobook")
        elif action == "ab":
            flow.data["autobook"] = arg == "1"
            profiles = await turn.run(store.list_profiles, turn.user_id)
            flow.data["has_profile"] = bool(profiles)
            flow.data["profiles"] = [{"id": p.id, "name": profile_label(_, p)} for p in profiles]
            if flow.data["autobook"] and len(profiles) > 1 and flow.data.get("swap_of") is None:
                flow.go("whom")
            else:
                if profiles and flow.data.get("profile_id") not in {p.id for p in profiles}:
                    flow.data["profile_id"] = profiles[0].id
                flow.data["profile_name"] = _profile_name(turn, profiles, flow.data.get("profile_id"))
                flow.go("confirm")
        elif action == "fp":
            names = {int(p["id"]): str(p["name"]) for p in flow.data.get("profiles") or []}
            if int(arg) not in names:
                raise InputError(N_("Unknown choice."))
            flow.data["profile_id"] = int(arg)
            flow.data["profile_name"] = names[int(arg)]
            flow.go("confirm")
        elif action == "ok":
            await _save(turn, flow)
            return
    except (InputError, ValueError) as exc:
        error = exc if isinstance(exc, InputError) else InputError(N_("Unknown choice."))
        await turn.answer(_(error.message).format(**error.params), alert=True)
        return
    await render(turn, flow)


async def on_text(turn: Turn, flow: Flow, text: str) -> None:
    _ = turn._
    step = flow.step
    try:
        text = check_length(text)
        if step == "service":
            if len(text) < 2:
                raise InputError(N_("Please type at least two letters of the service's name."))
            found = search_services(text, limit=SEARCH_RESULTS)
            if not found:
                raise InputError(
                    N_("No service matches “{query}”. Try another word, or tap one of the buttons."),
                    {"query": text[:60]},
                )
            flow.data["search_results"] = [s.id for s in found]
            flow.data["search_query"] = text[:60]
        elif step == "people":
            service = _service(flow)
            assert service is not None
            flow.data["count"] = parse_count(text, _max_people(service))
            flow.go("offices")
        elif step == "window":
            start, end = parse_date_window(text, today=site_today())
            flow.data.update(date_from=start.isoformat(), date_to=end.isoformat(), window_set=True)
            flow.go("weekdays")
        elif step == "time":
            start_t, end_t = parse_time_range(text)
            flow.data.update(time_from=start_t.isoformat(), time_to=end_t.isoformat(), time_set=True)
            flow.go("autobook")
        elif step == "location":
            raise InputError(
                N_("Please share your location with the 📍 button, or press Back to pick offices yourself.")
            )
        else:
            raise InputError(USE_BUTTONS)
    except InputError as error:
        await turn.refuse(error)
        return
    await render(turn, flow, new_message=True)


async def on_location(turn: Turn, flow: Flow, latitude: float, longitude: float) -> None:
    _ = turn._
    if flow.step not in ("location", "offices"):
        await turn.refuse(InputError(N_("I only need a location while you choose offices.")))
        return
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        await turn.refuse(InputError(N_("That location is not valid.")))
        return
    offices = get_catalog().offices_for_service(int(flow.data["service_id"]))
    distances = offices_by_distance(offices, (latitude, longitude))
    nearest = sorted(distances, key=lambda i: distances[i])[:NEAREST_PRESELECTED]
    flow.data["distances_km"] = {str(k): round(v, 2) for k, v in distances.items()}
    flow.data["office_ids"] = sorted(nearest)
    if flow.step == "location":
        flow.back()
    await turn.say(_("Thanks. I ticked the offices nearest to you."), _remove_reply_keyboard())
    await render(turn, flow, new_message=True)


def _remove_reply_keyboard() -> Any:
    from telegram import ReplyKeyboardRemove

    return ReplyKeyboardRemove()


async def _save(turn: Turn, flow: Flow) -> None:
    _ = turn._
    data = flow.data
    draft = store.SubscriptionDraft(
        service_id=int(data["service_id"]),
        service_count=int(data.get("count") or 1),
        office_ids=[int(i) for i in data.get("office_ids") or []],
        date_from=_date(data.get("date_from")),
        date_to=_date(data.get("date_to")),
        weekdays=[int(d) for d in data.get("weekdays") or []],
        time_from=_time(data.get("time_from")),
        time_to=_time(data.get("time_to")),
        autobook=bool(data.get("autobook")),
        profile_id=int(data["profile_id"]) if data.get("profile_id") else None,
    )
    editing = data.get("editing_id")
    try:
        saved = await turn.run(store.save_subscription, turn.user_id, draft, editing)
    except store.SubscriptionLimitError:
        await turn.answer(
            _.ngettext(
                "You already have {limit} subscription; delete it in /list first.",
                "You already have {limit} subscriptions; delete one in /list first.",
                store.MAX_SUBSCRIPTIONS_PER_USER,
            ).format(limit=store.MAX_SUBSCRIPTIONS_PER_USER),
            alert=True,
        )
        return
    end_flow(turn.context)
    if saved is None:
        await turn.show(_("That subscription no longer exists. Start a new one with /subscribe."))
        return
    heading = _("Saved ✅ I will message you when a matching appointment appears.")
    await turn.show(
        summary_text(turn, data, heading=heading) + "\n\n" + _("See all with /list, or check /status.")
    )


__all__ = ["KIND", "begin", "begin_edit", "describe_subscription", "on_callback", "on_location", "on_text"]
