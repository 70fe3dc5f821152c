"""/email: slot alerts also by e-mail, to an address the person proved is theirs.

The address typed is checked for shape, then a six-digit code is mailed to it (through the same
``EmailNotifier`` the outbox uses); only when the code comes back is the address kept
(``users.alert_email``, encrypted). Until then the address and a hash of the code wait in
``users.alert_email_pending`` (encrypted too), so a restart keeps the step; five wrong codes or an
expired one end it. A bad address or a failed code mail changes nothing. /delete erases the address
with the user, /export shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from bot.callbacks import Callback
from bot.email_notifier import EmailConfig, EmailNotifier, valid_address
from bot.validation import N_
from shared.db.database import Database
from shared.db.models import User
from shared.domain import utcnow
from shared.notify import DeliveryFailed, Outgoing, WireHook

from .common import Flow, Turn, current_flow, end_flow, start_flow

KIND = "email"
MAX_TRIES = 5
HELP_LINE = N_("/email – slot alerts also by e-mail")
UNAVAILABLE = N_("E-mail alerts are not available here: this MTA has no mail server configured.")
ASK = N_("Send me the e-mail address that slot alerts should also go to, or /cancel.")
BAD_ADDRESS = N_(
    "That does not look like an e-mail address (like name@example.org). Nothing was changed; "
    "send it again, or /cancel."
)
CODE_SENT = N_(
    "I mailed a 6-digit code to {address}. Type it here to confirm the address (valid {minutes} minutes)."
)
MAIL_FAILED = N_("I could not send mail to {address} just now. Nothing was changed; try again later.")
WRONG_CODE = N_("That code is not right. Please type the 6 digits from the mail, or /cancel.")
TOO_MANY = N_("Too many wrong codes, or the code expired. Nothing was changed; start again with /email.")
CONFIRMED = N_("Done: slot alerts now also go to {address}. /email changes or removes it.")
REMOVED = N_("E-mail alerts are off, and the address is deleted.")
CURRENT = N_("Slot alerts also go by e-mail to {address}.")
NONE_YET = N_("Slot alerts go to this chat only.")
STOP_BUTTON = N_("Stop e-mail alerts")
CODE_SUBJECT = N_("Your MTA code: {code}")
CODE_BODY = N_(
    "Type this code in your Telegram chat with MTA to receive slot alerts at this address: {code}\n\n"
    "If you did not ask for it, ignore this mail: nothing happens without the code."
)
_NO_WIRE = WireHook(on_wire=lambda: _nothing(), on_refused=lambda: _nothing())


async def _nothing() -> None:
    """The code mail is no outbox row: nothing to mark."""


def _digest(address: str, code: str) -> str:
    return hashlib.sha256(f"{address}\n{code}".encode()).hexdigest()


# --- the database -------------------------------------------------------------------------------


def current_address(db: Database, user_id: int) -> str | None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        return user.alert_email if user is not None else None


def set_pending(db: Database, user_id: int, address: str, code: str, ttl_s: int) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None:
            user = User(id=user_id)
            session.add(user)
        expires = utcnow() + timedelta(seconds=ttl_s)
        user.alert_email_pending = {
            "address": address,
            "code_hash": _digest(address, code),
            "expires_at": expires.isoformat(),
            "tries": 0,
        }


def confirm(db: Database, user_id: int, code: str) -> tuple[str | None, bool]:
    """(the confirmed address or None, whether the person may try again)."""
    with db.transaction() as session:
        user = session.get(User, user_id)
        pending = dict(user.alert_email_pending or {}) if user is not None else {}
        if user is None or not pending:
            return None, False
        expired = datetime.fromisoformat(str(pending["expires_at"])) <= utcnow()
        if not expired and hmac.compare_digest(pending["code_hash"], _digest(pending["address"], code)):
            user.alert_email = str(pending["address"])
            user.alert_email_pending = None
            return user.alert_email, False
        tries = int(pending.get("tries", 0)) + 1
        if expired or tries >= MAX_TRIES:
            user.alert_email_pending = None
            return None, False
        user.alert_email_pending = {**pending, "tries": tries}
        return None, True


def drop_pending(db: Database, user_id: int) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is not None:
            user.alert_email_pending = None


def remove(db: Database, user_id: int) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is not None:
            user.alert_email = None
            user.alert_email_pending = None


# --- the conversation ---------------------------------------------------------------------------


def _config(turn: Turn) -> EmailConfig | None:
    return EmailConfig.from_settings(turn.settings) if turn.settings is not None else None


async def begin(turn: Turn) -> None:
    """/email"""
    _ = turn._
    if _config(turn) is None:
        await turn.say(_(UNAVAILABLE))
        return
    address = await turn.run(current_address, turn.user_id)
    flow = start_flow(turn.context, KIND, "address")
    now = _(CURRENT).format(address=address) if address else _(NONE_YET)
    markup = turn.keys(flow).markup([[("✖️ " + _(STOP_BUTTON), "eo", "")]]) if address else None
    await turn.say(now + "\n\n" + _(ASK), markup)


async def on_callback(turn: Turn, flow: Flow, cb: Callback) -> None:
    if cb.action != "eo":
        await turn.answer(
            turn._("That button belongs to an earlier step; please use the latest message."), alert=True
        )
        return
    await turn.run(remove, turn.user_id)
    end_flow(turn.context)
    await turn.show(turn._(REMOVED))


async def on_text(turn: Turn, flow: Flow, text: str) -> None:
    _ = turn._
    config = _config(turn)
    if config is None:
        end_flow(turn.context)
        await turn.say(_(UNAVAILABLE))
        return
    if flow.step == "code":
        address, again = await turn.run(confirm, turn.user_id, text.strip())
        if address is not None:
            end_flow(turn.context)
            await turn.say(_(CONFIRMED).format(address=address))
        elif again:
            await turn.say(_(WRONG_CODE))
        else:
            end_flow(turn.context)
            await turn.say(_(TOO_MANY))
        return
    address = valid_address(text)
    if address is None:
        await turn.say(_(BAD_ADDRESS))
        return
    code = f"{secrets.randbelow(1_000_000):06d}"
    ttl_s = turn.settings.email_code_ttl_s if turn.settings is not None else 1_800
    await turn.run(set_pending, turn.user_id, address, code, ttl_s)
    flow.go("code")
    # mailed beside the handler: the bot answers updates one at a time, and a slow mail server
    # (up to MTA_SMTP_TIMEOUT_S) must not hold up everyone else's messages
    turn.context.application.create_task(_mail_code(turn, flow, config, address, code, ttl_s))


async def _mail_code(
    turn: Turn, flow: Flow, config: EmailConfig, address: str, code: str, ttl_s: int
) -> None:
    """The code mail; then "type the code", or, if the mail did not go out, the step is undone."""
    _ = turn._
    message = Outgoing(
        notification_id=0,
        recipient=address,
        subject=_(CODE_SUBJECT).format(code=code),
        text=_(CODE_BODY).format(code=code),
        html=False,
    )
    try:
        await EmailNotifier(config).send(message, _NO_WIRE)
    except DeliveryFailed:
        await turn.run(drop_pending, turn.user_id)
        current = current_flow(turn.context)
        if current is not None and current.nonce == flow.nonce:
            end_flow(turn.context)
        await turn.say(_(MAIL_FAILED).format(address=address))
        return
    await turn.say(_(CODE_SENT).format(address=address, minutes=ttl_s // 60))


__all__ = ["HELP_LINE", "KIND", "begin", "on_callback", "on_text"]
