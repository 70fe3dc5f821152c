"""/list (pause, resume, edit, delete) and /status ("is it working?").

The buttons under /list carry a subscription id; the id is signed for the user, and every action
also looks the row up by (id, user id), so a subscription that is not theirs is never touched.
"""

from __future__ import annotations

from datetime import datetime

from bot.callbacks import Callback
from bot.keyboards import subscription_keyboard, yes_no_keyboard
from bot.services import service_label
from shared.catalog import get_catalog
from shared.db.models import SubscriptionState, TargetState
from shared.domain import SITE_TIMEZONE, utcnow

from . import store, subscribe
from .common import Turn


async def show_list(turn: Turn) -> None:
    """/list"""
    _ = turn._
    subs = await turn.run(store.subscriptions_of, turn.user_id)
    if not subs:
        await turn.say(_("You have no subscriptions. Start one with /subscribe."))
        return
    kb = turn.keys()
    profiles = await turn.run(store.list_profiles, turn.user_id)
    for sub in subs:
        await turn.say(
            subscribe.describe_subscription(turn, sub, profiles),
            subscription_keyboard(_, kb, sub.id, active=sub.state == SubscriptionState.ACTIVE),
        )


async def on_list_button(turn: Turn, cb: Callback) -> None:
    """Pause (lp), resume (lr), edit (le), delete (ld → ldk / lk)."""
    _ = turn._
    try:
        sub_id = int(cb.arg)
    except ValueError:
        sub_id = -1
    sub = await turn.run(store.subscription_of, turn.user_id, sub_id)
    if sub is None:
        await turn.answer(_("That subscription does not exist (any more) or is not yours."), alert=True)
        return
    kb = turn.keys()
    if cb.action in ("lp", "lr"):
        state = SubscriptionState.PAUSED if cb.action == "lp" else SubscriptionState.ACTIVE
        updated = await turn.run(store.set_subscription_state, turn.user_id, sub_id, state)
        if updated is None:
            await turn.answer(_("That subscription does not exist (any more) or is not yours."), alert=True)
            return
        await turn.answer(_("Paused.") if state == SubscriptionState.PAUSED else _("Resumed."))
        await turn.show(
            subscribe.describe_subscription(turn, updated),
            subscription_keyboard(_, kb, sub_id, active=state == SubscriptionState.ACTIVE),
        )
    elif cb.action == "le":
        await subscribe.begin_edit(turn, sub)
    elif cb.action == "ld":
        await turn.show(
            subscribe.describe_subscription(turn, sub) + "\n\n" + _("Delete this subscription?"),
            yes_no_keyboard(
                kb, yes=("🗑 " + _("Yes, delete"), "ldk", sub_id), no=(_("Keep it"), "lk", sub_id)
            ),
        )
    elif cb.action == "lk":
        await turn.show(
            subscribe.describe_subscription(turn, sub),
            subscription_keyboard(_, kb, sub_id, active=sub.state == SubscriptionState.ACTIVE),
        )
    elif cb.action == "ldk":
        deleted = await turn.run(store.delete_subscription, turn.user_id, sub_id)
        if deleted:
            await turn.show(_("Subscription #{id} deleted.").format(id=sub_id))
        else:
            await turn.answer(_("That subscription does not exist (any more) or is not yours."), alert=True)


def _ago(turn: Turn, moment: datetime | None) -> str:
    _ = turn._
    if moment is None:
        return _("never")
    seconds = max(0, int((utcnow() - moment).total_seconds()))
    local = moment.astimezone(SITE_TIMEZONE).strftime("%d.%m. %H:%M")
    if seconds < 120:
        ago = _("{n} s ago").format(n=seconds)
    elif seconds < 7200:
        ago = _("{n} min ago").format(n=seconds // 60)
    else:
        ago = _("{n} h ago").format(n=seconds // 3600)
    return f"{local} ({ago})"


def _state_text(turn: Turn, status: store.TargetStatus) -> str:
    _ = turn._
    if not status.watched:
        return (
            _("not watched (paused)") if status.state is not None or status.office_count else _("not watched")
        )
    if status.site_layout_trouble or status.state == TargetState.CHANGED:
        return _("⚠ the site's layout changed; the operator is told")
    if status.state == TargetState.CAPTCHA:
        return _("⚠ captcha trouble; retrying")
    if status.state in (TargetState.BACKING_OFF, TargetState.BLOCKED):
        until = status.backoff_until
        if until is not None and until > utcnow():
            return _("⏳ backing off (the site asked us to slow down) until {time}").format(
                time=until.astimezone(SITE_TIMEZONE).strftime("%H:%M")
            )
        return _("⏳ backing off (the site asked us to slow down)")
    if status.last_check_at is None:
        return _("waiting for the first check")
    return _("✅ ok")


async def show_status(turn: Turn) -> None:
    """/status"""
    _ = turn._
    statuses = await turn.run(store.status_of, turn.user_id)
    if not statuses:
        await turn.say(
            _("You have no subscriptions, so nothing is being watched for you. Start with /subscribe.")
        )
        return
    catalog = get_catalog()
    blocks: list[str] = []
    for status in statuses:
        service = catalog.service(status.service_id)
        lines = [
            _("#{id} {service}").format(
                id=status.subscription_id,
                service=service_label(service, turn.language) if service else status.service_id,
            ),
            _("People: {count} · offices watched: {offices}").format(
                count=status.service_count, offices=status.office_count
            ),
            _("State: {state}").format(state=_state_text(turn, status)),
            _("Last successful check: {when}").format(when=_ago(turn, status.last_success_at)),
            _("Slots seen in the last 24 h: {count}").format(count=status.recent_slots),
        ]
        if status.latest_slot is not None:
            start, office_id = status.latest_slot
            office = catalog.office(office_id)
            lines.append(
                _("Latest: {time} at {office}").format(
                    time=start.astimezone(SITE_TIMEZONE).strftime("%d.%m.%Y %H:%M"),
                    office=office.display_name if office else office_id,
                )
            )
        blocks.append("\n".join(lines))
    await turn.say("\n\n".join(blocks))


__all__ = ["on_list_button", "show_list", "show_status"]
