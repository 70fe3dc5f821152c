"""/export (everything MTA keeps about the user, as a JSON file) and /delete (erase it all)."""

from __future__ import annotations

import io
import json

from telegram import InputFile

from bot.callbacks import Callback
from bot.keyboards import nav_row

from . import store
from .common import Flow, Turn, end_flow, start_flow

KIND = "erase"
EXPORT_FILE_NAME = "mta-export.json"


async def export(turn: Turn) -> None:
    """/export"""
    _ = turn._
    data = await turn.run(store.export_user, turn.user_id)
    payload = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    await turn.context.bot.send_document(
        turn.chat_id,
        InputFile(io.BytesIO(payload), filename=EXPORT_FILE_NAME),
        caption=_("Everything MTA keeps about you, as JSON."),
    )


async def begin_erase(turn: Turn) -> None:
    """/delete"""
    _ = turn._
    active = await turn.run(store.count_active_bookings, turn.user_id)
    flow = start_flow(turn.context, KIND, "confirm")
    kb = turn.keys(flow)
    text = _(
        "Erase everything MTA keeps about you: your subscriptions, booking profile, bookings and "
        "messages? This cannot be undone."
    )
    if active:
        # erasing drops the keys MTA would need to cancel them: say so before it is too late
        text += "\n\n" + _(
            "⚠️ You have {count} appointment(s) held at the city. Erasing does not cancel them, and "
            "afterwards MTA cannot: cancel them first with /bookings if you do not want them."
        ).format(count=active)
    await turn.say(
        text,
        kb.markup([[("🗑 " + _("Yes, erase everything"), "ek", "")], nav_row(_, back=False)]),
    )


async def on_callback(turn: Turn, flow: Flow, cb: Callback) -> None:
    _ = turn._
    if cb.action != "ek":
        await turn.answer(
            _("That button belongs to an earlier step; please use the latest message."), alert=True
        )
        return
    await turn.run(store.erase_user, turn.user_id)
    end_flow(turn.context)
    turn.forget_user()
    await turn.show(_("Done: everything about you is erased. Send /start if you ever want to come back."))


async def on_text(turn: Turn, flow: Flow, text: str) -> None:
    await turn.say(turn._("Please use the buttons above, or /cancel."))


__all__ = ["KIND", "begin_erase", "export", "on_callback", "on_text"]
