"""/profile: the contact details MTA types into the booking form, checked with the site's rules, for
the person themself and the family members they book for (one profile each, with a short label).

```mermaid
stateDiagram-v2
    [*] --> overview: /profile (one profile)
    [*] --> people: /profile (several)
    [*] --> consent: /profile (none yet, not agreed)
    [*] --> first: /profile (none yet, agreed before)
    [*] --> consent: /profile or "Book this" (stored before consent was asked)
    consent --> first: I agree (time of consent stored)
    consent --> [*]: No, thanks (nothing stored)
    consent --> overview: I agree (stored before: their profile)
    consent --> erase: No, thanks (stored before)
    erase --> [*]: Erase them / Keep them (unused)
    people --> overview: a person's button
    overview --> people: « All profiles
    overview --> first: Change
    overview --> remove --> [*]: Remove / Close
    overview --> label: Add a person
    people --> label: Add a person
    label --> first: a short name, or Myself
    first --> last --> email --> phone --> birth --> confirm
    phone --> birth: Skip
    birth --> confirm: Skip
    birth --> case: subscribed to Einbürgerung
    case --> confirm: typed / Skip
    confirm --> [*]: Save (encrypted columns)
```

The first profile is the person themself (no label) and is the default for every subscription; each
further one gets a label the person types ("Anna", "my son"), and ``/subscribe`` asks whom to book
for once there are several. Each value is checked with ``shared.profile_rules`` (the site's own
patterns, e.g. no "+" in an e-mail address) as it is typed, so a refused value is asked again at
once and nothing invalid is ever stored. Values are shown back masked. Before the first value is
typed, the person reads what is kept, why, for how long and how to erase it, and agrees with a
button (``users.consented_at``); removing the last profile withdraws the consent, so a new profile
asks again. Details stored before MTA asked (migration 0004) are not used for a booking until the
person agrees: their next ``/profile`` or "Book this" shows the statement first (an autobook that
meets them tells them so, ``shared.booking``), and declining offers to erase them.
"""

from __future__ import annotations

from typing import Any

from bot.callbacks import Callback
from bot.keyboards import confirm_keyboard, nav_row, skip_keyboard
from bot.validation import N_, InputError, check_length, site_today
from shared.db.models import Subscription
from shared.profile_rules import (
    CustomFieldKind,
    ProfileProblem,
    check_custom_field,
    check_email,
    check_label,
    check_name,
    check_phone,
    custom_field_for_service,
    normalize_phone,
    normalize_text,
)

from . import store
from .common import Flow, Turn, end_flow, start_flow

KIND = "profile"
CONSENT_TEXT = N_(
    "Before you enter anything, what I would keep and why:\n"
    "• What: your name, e-mail address, phone number and, where an office asks for it, your date of "
    "birth or case number.\n"
    "• Why: only to fill in the city's booking form when you ask me to book (or allow me to), and to "
    "tell you how it went. Nobody else gets them.\n"
    "• How: encrypted at rest, never written to logs.\n"
    "• How long: until you remove them (/profile → Remove) or erase everything (/delete). /export shows "
    "you all of it.\n\n"
    "Do you agree that I keep these details for booking?"
)
CONSENT_STORED_TEXT = N_(
    "You stored booking details with me before I asked for consent, and I do not use them for a "
    "booking until you agree. What I keep and why:\n"
    "• What: your name, e-mail address, phone number and, where an office asks for it, your date of "
    "birth or case number.\n"
    "• Why: only to fill in the city's booking form when you ask me to book (or allow me to), and to "
    "tell you how it went. Nobody else gets them.\n"
    "• How: encrypted at rest, never written to logs.\n"
    "• How long: until you remove them (/profile → Remove) or erase everything (/delete). /export shows "
    "you all of it.\n\n"
    "Do you agree that I keep these details for booking?"
)
"""The statement for details stored before consent was asked (the same facts as ``CONSENT_TEXT``)."""
ERASE_STORED_TEXT = N_(
    "Then I do not book with them. Shall I erase the booking details you stored (every profile)? "
    "Alerts keep coming either way."
)
HELP_LINE = N_("/profile also keeps booking details for your partner and children; /subscribe asks for whom.")
STEPS = ("consent", "erase", "label", "first", "last", "email", "phone", "birth", "case", "confirm")

PROBLEM_MESSAGES = {
    ProfileProblem.INVALID_FAMILY_NAME: N_("The name must not be empty."),
    ProfileProblem.NAME_TOO_LONG: N_("The city's form takes at most 50 characters here."),
    ProfileProblem.INVALID_EMAIL: N_(
        "The city's site does not accept this e-mail address. It refuses addresses with “+” or two dots "
        "in a row, and needs the form name@example.org. Please send another one."
    ),
    ProfileProblem.INVALID_TELEPHONE: N_(
        "The city's site does not accept this phone number. Please send 7 to 15 digits, optionally "
        "starting with +, e.g. +491511234567."
    ),
    ProfileProblem.INVALID_DATE_OF_BIRTH: N_(
        "Please send your date of birth like 24.12.1990 (a real day in the past)."
    ),
    ProfileProblem.INVALID_CUSTOM_TEXTFIELD: N_("Please send at most 250 characters."),
    ProfileProblem.INVALID_LABEL: N_("Please send a short name for this person: 1 to 30 characters."),
}


def profile_label(_: Any, profile: store.ProfileData) -> str:
    """How a profile is named on buttons and in lists: its label, or "Myself"."""
    return profile.label or _("Myself")


def _custom_fields(data: dict[str, Any]) -> dict[str, str]:
    fields = {}
    if data.get("birth"):
        fields[CustomFieldKind.DATE_OF_BIRTH.value] = str(data["birth"])
    if data.get("case"):
        fields[CustomFieldKind.CASE_REFERENCE.value] = str(data["case"])
    return fields


def _needs_case_reference(subscriptions: list[Subscription]) -> bool:
    """Only Einbürgerung asks for a case number; ask for it only from people who subscribed to it."""
    for sub in subscriptions:
        rule = custom_field_for_service(sub.service_id)
        if rule is not None and rule.kind is CustomFieldKind.CASE_REFERENCE:
            return True
    return False


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(phone: str | None) -> str:
    return f"…{phone[-3:]}" if phone else "—"


def _overview_text(turn: Turn, profile: store.ProfileData, *, several: bool = False) -> str:
    _ = turn._
    birth = profile.custom_fields.get(CustomFieldKind.DATE_OF_BIRTH.value)
    case = profile.custom_fields.get(CustomFieldKind.CASE_REFERENCE.value)
    heading = _("Your booking profile (stored encrypted):")
    if several or profile.label:
        heading = _("Booking profile “{label}” (stored encrypted):").format(label=profile_label(_, profile))
    lines = [
        heading,
        _("Name: {first} {last}").format(first=profile.first_name, last=profile.last_name),
        _("E-mail: {email}").format(email=mask_email(profile.email)),
        _("Phone: {phone}").format(phone=mask_phone(profile.phone)),
        _("Date of birth: {birth}").format(birth=birth or "—"),
    ]
    if case:
        lines.append(_("Case number: {case}").format(case=case))
    return "\n".join(lines)


def _people_text(turn: Turn, profiles: list[store.ProfileData]) -> str:
    _ = turn._
    lines = [_("Your booking profiles (stored encrypted); MTA books for the person a subscription names:")]
    for number, profile in enumerate(profiles, 1):
        lines.append(
            f"{number}. {profile_label(_, profile)}: {profile.first_name} {profile.last_name}, "
            f"{mask_email(profile.email)}"
        )
    return "\n".join(lines)


def _profile_data(data: dict[str, Any]) -> store.ProfileData:
    return store.ProfileData(
        first_name=data["first"],
        last_name=data["last"],
        email=data["email"],
        phone=data.get("phone"),
        custom_fields=_custom_fields(data),
        label=data.get("label"),
    )


def _fill_from(flow: Flow, profile: store.ProfileData) -> None:
    """Editing starts from the stored label (kept unless changed) and the profile's id."""
    flow.data["profile_id"] = profile.id
    flow.data["label"] = profile.label


async def begin(turn: Turn) -> None:
    """/profile"""
    _ = turn._
    profiles = await turn.run(store.list_profiles, turn.user_id)
    existing = profiles[0] if profiles else None
    subscriptions = await turn.run(store.subscriptions_of, turn.user_id)
    ask_case = _needs_case_reference(subscriptions)
    if existing is not None and not await turn.run(store.has_consented, turn.user_id):
        await ask_stored_consent(turn, after="profile", ask_case=ask_case)
        return
    if existing is None and not await turn.run(store.has_consented, turn.user_id):
        flow = start_flow(turn.context, KIND, "consent", ask_case=ask_case)
        await render(turn, flow, new_message=True)
        return
    if existing is None:
        flow = start_flow(turn.context, KIND, "first", ask_case=ask_case)
        intro = _(
            "MTA fills these details into the city's booking form when it books for you. They are stored "
            "encrypted, and /delete removes them."
        )
        await turn.say(intro)
        await render(turn, flow, new_message=True)
        return
    if len(profiles) > 1:
        flow = start_flow(turn.context, KIND, "people", ask_case=ask_case)
        await render(turn, flow, new_message=True)
        return
    flow = start_flow(turn.context, KIND, "overview", ask_case=ask_case)
    _fill_from(flow, existing)
    await render(turn, flow, new_message=True, profile=existing)


async def ask_stored_consent(turn: Turn, *, after: str, ask_case: bool = False) -> None:
    """Details stored before consent was asked: show the statement before they are used. ``after``
    is where the person came from ("profile", or "book" for a "Book this" press)."""
    flow = start_flow(turn.context, KIND, "consent", ask_case=ask_case, stored=True, after=after)
    await render(turn, flow, new_message=True)


async def render(
    turn: Turn, flow: Flow, *, new_message: bool = False, profile: store.ProfileData | None = None
) -> None:
    _ = turn._
    kb = turn.keys(flow)
    step = flow.step
    markup: Any
    if step == "people":
        profiles = await turn.run(store.list_profiles, turn.user_id)
        if not profiles:
            flow.step = "first"
            await render(turn, flow, new_message=new_message)
            return
        text = _people_text(turn, profiles)
        rows: list[list[tuple[str, str, str | int]]] = [
            [("👤 " + profile_label(_, p)[:40], "pv", p.id or 0)] for p in profiles
        ]
        if len(profiles) < store.MAX_PROFILES_PER_USER:
            rows.append([("➕ " + _("Add a person"), "pad", "")])
        rows.append([("✖ " + _("Close"), "x", "")])
        markup = kb.markup(rows)
    elif step == "overview":
        profile = profile or await turn.run(store.load_profile, turn.user_id, flow.data.get("profile_id"))
        if profile is None:
            flow.step = "first"
            await render(turn, flow, new_message=new_message)
            return
        profiles = await turn.run(store.list_profiles, turn.user_id)
        several = len(profiles) > 1
        text = _overview_text(turn, profile, several=several)
        last_row: list[tuple[str, str, str | int]] = [("✖ " + _("Close"), "x", "")]
        if several:
            last_row.insert(0, ("« " + _("All profiles"), "pl", ""))
        elif len(profiles) < store.MAX_PROFILES_PER_USER:
            last_row.insert(0, ("➕ " + _("Add a person"), "pad", ""))
        markup = kb.markup([[("✏ " + _("Change"), "pc", ""), ("🗑 " + _("Remove"), "pr", "")], last_row])
    elif step == "label":
        text = _(
            "Whom is this profile for? Send a short name that you will recognise, like Anna or My son "
            "(only you see it), or tap Myself."
        )
        markup = kb.markup([[("🙋 " + _("Myself"), "pm", "")], nav_row(_, back=bool(flow.history))])
    elif step == "consent":
        text = _(CONSENT_STORED_TEXT) if flow.data.get("stored") else _(CONSENT_TEXT)
        markup = kb.markup([[("✅ " + _("I agree"), "pa", ""), ("✖ " + _("No, thanks"), "pn", "")]])
    elif step == "erase":
        text = _(ERASE_STORED_TEXT)
        markup = kb.markup([[("🗑 " + _("Erase them"), "pe", ""), (_("Keep them"), "pk", "")]])
    elif step == "remove":
        text = _("Remove your booking profile? MTA can then no longer book for you.")
        if flow.data.get("label"):
            text = _(
                "Remove the booking profile “{label}”? MTA can then no longer book for this person; "
                "subscriptions for them book for your first profile instead."
            ).format(label=flow.data["label"])
        markup = kb.markup([[("🗑 " + _("Yes, remove it"), "prk", "")], nav_row(_)])
    elif step == "first":
        text = _("Your first name (as in your ID)?")
        markup = kb.markup([nav_row(_, back=bool(flow.history))])
    elif step == "last":
        text = _("Your last name?")
        markup = kb.markup([nav_row(_)])
    elif step == "email":
        text = _(
            "Your e-mail address? The city sends the activation link there. (The city refuses addresses "
            "containing “+”.)"
        )
        markup = kb.markup([nav_row(_)])
    elif step == "phone":
        text = _("Your phone number, like +491511234567? Some offices ask for it; you may skip.")
        markup = skip_keyboard(_, kb)
    elif step == "birth":
        text = _(
            "Your date of birth, like 24.12.1990? The driving licence office (Führerscheinstelle) asks for "
            "it; you may skip."
        )
        markup = skip_keyboard(_, kb)
    elif step == "case":
        text = _(
            "The naturalisation office (Einbürgerungsbehörde) asks for your case number and the name of your "
            "caseworker. Please send them (at most 250 characters), or skip."
        )
        markup = skip_keyboard(_, kb)
    elif step == "confirm":
        preview = _profile_data(flow.data)
        details = _overview_text(turn, preview).split("\n", 1)[1]
        text = _("Please check your details:") + "\n"
        if preview.label:
            text += _("For: {label}").format(label=preview.label) + "\n"
        text += details
        markup = confirm_keyboard(_, kb, confirm_label=_("Save"))
    else:
        return
    if new_message or not turn.from_button:
        await turn.say(text, markup)
    else:
        await turn.show(text, markup)


def _next_step(flow: Flow) -> str:
    """After phone comes birth; after birth the case number (only when needed), then confirm."""
    if flow.step == "phone":
        return "birth"
    if flow.step == "birth" and flow.data.get("ask_case"):
        return "case"
    return "confirm"


async def on_callback(turn: Turn, flow: Flow, cb: Callback) -> None:
    _ = turn._
    allowed = {
        "consent": {"pa", "pn"},
        "erase": {"pe", "pk"},
        "people": {"pv", "pad"},
        "overview": {"pc", "pr", "pl", "pad"},
        "label": {"pm"},
        "remove": {"prk"},
        "phone": {"ps"},
        "birth": {"ps"},
        "case": {"ps"},
        "confirm": {"ok"},
    }.get(flow.step, set())
    if cb.action not in allowed:
        await turn.answer(
            _("That button belongs to an earlier step; please use the latest message."), alert=True
        )
        return
    if cb.action == "pa" and flow.data.get("stored"):
        await turn.run(store.record_consent, turn.user_id)
        if flow.data.get("after") == "book":
            end_flow(turn.context)
            await turn.show(
                _(
                    "Thank you: I may now book with your stored details. Press “Book this” under the "
                    "alert again if you still want that appointment."
                )
            )
            return
        await turn.show(_("Thank you. You can withdraw at any time with /profile → Remove, or /delete."))
        profiles = await turn.run(store.list_profiles, turn.user_id)
        if len(profiles) == 1:
            _fill_from(flow, profiles[0])
        flow.go("people" if len(profiles) > 1 else "overview")
        await render(turn, flow, new_message=True)
        return
    if cb.action == "pn" and flow.data.get("stored"):
        flow.go("erase")
        await render(turn, flow)
        return
    if cb.action == "pe":
        for stored in await turn.run(store.list_profiles, turn.user_id):
            await turn.run(store.delete_profile, turn.user_id, stored.id or 0)
        end_flow(turn.context)
        await turn.show(
            _(
                "Erased: I keep no booking details of yours. Alerts still come, and you can book "
                "yourself with the link in each one."
            )
        )
        return
    if cb.action == "pk":
        end_flow(turn.context)
        await turn.show(
            _("All right: they stay stored, but I do not book with them. /profile asks again when you like.")
        )
        return
    if cb.action == "pa":
        await turn.run(store.record_consent, turn.user_id)
        await turn.show(_("Thank you. You can withdraw at any time with /profile → Remove, or /delete."))
        flow.go("first")
        await render(turn, flow, new_message=True)
        return
    if cb.action == "pn":
        end_flow(turn.context)
        await turn.show(
            _(
                "All right: I keep none of these details. Alerts still come, and you can book yourself "
                "with the link in each one."
            )
        )
        return
    if cb.action == "pv":
        chosen = await turn.run(store.load_profile, turn.user_id, int(cb.arg or 0))
        if chosen is None:
            await turn.answer(_("That profile is gone."), alert=True)
            flow.step = "people"
        else:
            _fill_from(flow, chosen)
            flow.go("overview")
    elif cb.action == "pl":
        flow.data.pop("profile_id", None)
        flow.go("people")
    elif cb.action == "pad":
        if len(await turn.run(store.list_profiles, turn.user_id)) >= store.MAX_PROFILES_PER_USER:
            await turn.answer(_("You keep the most profiles MTA allows; remove one first."), alert=True)
            return
        flow.data.pop("profile_id", None)
        flow.data.pop("label", None)
        flow.go("label")
    elif cb.action == "pm":
        flow.data["label"] = None
        flow.go("first")
    elif cb.action == "pc":
        flow.go("label" if flow.data.get("label") else "first")
    elif cb.action == "pr":
        flow.go("remove")
    elif cb.action == "prk":
        await turn.run(store.delete_profile, turn.user_id, int(flow.data.get("profile_id") or 0))
        end_flow(turn.context)
        await turn.show(_("Your booking profile is removed."))
        return
    elif cb.action == "ps":
        flow.data.pop(flow.step, None)
        flow.go(_next_step(flow))
    elif cb.action == "ok":
        try:
            saved = await turn.run(
                store.save_profile, turn.user_id, _profile_data(flow.data), flow.data.get("profile_id")
            )
        except store.ProfileLimitError:
            saved = None
        end_flow(turn.context)
        if saved is None:
            await turn.show(_("You keep the most profiles MTA allows; remove one first."))
            return
        await turn.show(_("Saved ✅ Your booking profile is stored encrypted. /profile shows or changes it."))
        return
    await render(turn, flow)


async def on_text(turn: Turn, flow: Flow, text: str) -> None:
    step = flow.step
    try:
        text = check_length(text)
        problem: ProfileProblem | None
        if step == "label":
            problem = check_label(text)
            value = normalize_text(text)
            following = "first"
        elif step in ("first", "last"):
            problem = check_name(text)
            value = normalize_text(text)
            following = "last" if step == "first" else "email"
        elif step == "email":
            problem = check_email(text)
            value = text.strip()
            following = "phone"
        elif step == "phone":
            problem = check_phone(text)
            value = normalize_phone(text)
            following = "birth"
        elif step == "birth":
            problem = check_custom_field(CustomFieldKind.DATE_OF_BIRTH, text, today=site_today())
            value = normalize_text(text)
            following = _next_step(flow)
        elif step == "case":
            problem = check_custom_field(CustomFieldKind.CASE_REFERENCE, text, today=site_today())
            value = normalize_text(text)
            following = "confirm"
        else:
            raise InputError(N_("Please use the buttons above, or /cancel."))
        if problem is not None:
            raise InputError(PROBLEM_MESSAGES[problem])
    except InputError as error:
        await turn.refuse(error)
        return
    flow.data[step] = value
    flow.go(following)
    await render(turn, flow, new_message=True)


__all__ = [
    "HELP_LINE",
    "KIND",
    "PROBLEM_MESSAGES",
    "STEPS",
    "ask_stored_consent",
    "begin",
    "mask_email",
    "on_callback",
    "on_text",
    "profile_label",
]
