"""The bot's conversations: commands, one router for buttons, typed text and locations.

``register(application)`` adds every handler (``bot.app.build_application`` calls it). Handlers find
the database in ``application.bot_data["db"]`` and the settings in ``application.bot_data["settings"]``.

Why one router instead of PTB's ``ConversationHandler``: a person has at most one conversation at
a time (``Flow`` in ``user_data``), and every input that does not fit it — a command in the middle
of another conversation, text where a button is expected, a button from an earlier conversation,
forged button data — must get a short answer while the conversation stays where it is. With one
router each of those cases is one visible branch here, not a fallback per state per handler.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Bot, BotCommand, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.callbacks import Callback
from bot.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES, translator
from bot.keyboards import language_keyboard
from bot.validation import MAX_MESSAGE_CHARS, N_, InputError

from . import booking, control, mail, manage, privacy, profile, store, subscribe, swap
from .common import LANGUAGE_KEY, Flow, Turn, current_flow, end_flow, log

CommandFn = Callable[[Turn], Awaitable[None]]
FlowCallback = Callable[[Turn, Flow, Callback], Awaitable[None]]
FlowText = Callable[[Turn, Flow, str], Awaitable[None]]

FLOW_CALLBACKS: dict[str, FlowCallback] = {
    subscribe.KIND: subscribe.on_callback,
    profile.KIND: profile.on_callback,
    privacy.KIND: privacy.on_callback,
    mail.KIND: mail.on_callback,
    swap.KIND: swap.on_callback,
}
FLOW_TEXT: dict[str, FlowText] = {
    subscribe.KIND: subscribe.on_text,
    profile.KIND: profile.on_text,
    privacy.KIND: privacy.on_text,
    mail.KIND: mail.on_text,
    swap.KIND: swap.on_text,
}
FLOW_NAMES = {
    subscribe.KIND: N_("setting up a subscription"),
    profile.KIND: N_("entering your booking profile"),
    privacy.KIND: N_("deleting your data"),
    mail.KIND: N_("setting your alert e-mail"),
    swap.KIND: N_("looking for an earlier date"),
}
SOMETHING = N_("setting something up")
LIST_ACTIONS = frozenset({"lp", "lr", "le", "ld", "ldk", "lk"})
ALWAYS_ALLOWED = frozenset({"cancel", "help"})
NOT_OURS_PATTERN = re.compile(r"^(?!book:)", re.DOTALL)
"""Every button except the alerts' "Book this" (``book:<slot id>``, ``booking.on_book_button``)."""
INVALID_BUTTON = N_("This button is not valid. Please use the buttons of my latest message.")

START_TEXT = N_(
    "Hello! I am MTA, the Munich Termin Automator.\n\n"
    "I watch the appointment calendar of Munich's city offices (Bürgerbüro, Ausländerbehörde, "
    "Führerscheinstelle, …) for you and message you as soon as an appointment that fits you becomes "
    "free, with a link to book it. If you allow it, I book it for you and the city e-mails you the "
    "activation link.\n\n"
    "What I keep: your Telegram id and language, your subscriptions (service, offices, dates, times), "
    "the alerts I sent you, and — only if you enter it with /profile — your name, e-mail, phone and "
    "date of birth for the booking form, stored encrypted. /export sends you all of it, /delete erases "
    "all of it.\n\n"
    "Start with /subscribe."
)
HELP_TEXT = N_(
    "What I can do:\n"
    "/subscribe – watch for an appointment\n"
    "/list – your subscriptions (pause, resume, edit, delete)\n"
    "/status – is it working? last checks and slots seen\n"
    "/profile – your details for booking\n"
    "/quiet – quiet hours: no alerts at night\n"
    "/test – send me a sample alert\n"
    "/export – all your data as a file\n"
    "/delete – erase all your data\n"
    "/language – English, Deutsch, Русский, Українська, Türkçe\n"
    "/cancel – stop the current step"
)


# --- commands -------------------------------------------------------------------------------------


async def _start(turn: Turn) -> None:
    await turn.say(turn._(START_TEXT))


async def _help(turn: Turn) -> None:
    lines = (HELP_TEXT, booking.HELP_LINE, swap.HELP_LINE, mail.HELP_LINE, profile.HELP_LINE)
    await turn.say("\n".join(turn._(line) for line in lines))


async def _cancel(turn: Turn) -> None:
    flow = current_flow(turn.context)
    end_flow(turn.context)
    if flow is None:
        await turn.say(turn._("There is nothing to cancel. /help lists what I can do."))
    else:
        await turn.say(turn._("Cancelled."))


async def _language(turn: Turn) -> None:
    await turn.say(turn._("Which language?"), language_keyboard(turn.keys(), turn.language))


COMMANDS: dict[str, CommandFn] = {
    "start": _start,
    "help": _help,
    "cancel": _cancel,
    "subscribe": subscribe.begin,
    "list": manage.show_list,
    "status": manage.show_status,
    "profile": profile.begin,
    "bookings": booking.show_bookings,
    "earlier": swap.begin,
    "quiet": control.show_quiet,
    "email": mail.begin,
    "test": control.send_test,
    "export": privacy.export,
    "delete": privacy.begin_erase,
    "language": _language,
}


Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


def _command_handler(name: str, fn: CommandFn) -> Handler:
    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        turn = await Turn.load(update, context)
        if turn is None:
            return
        flow = current_flow(context)
        if flow is not None and name not in ALWAYS_ALLOWED:
            what = turn._(FLOW_NAMES.get(flow.kind, SOMETHING))
            await turn.say(
                turn._(
                    "You are in the middle of {what}. Continue with the buttons above, or send /cancel first."
                ).format(what=what)
            )
            return
        await fn(turn)

    handle.__name__ = f"command_{name}"
    return handle


# --- the router -----------------------------------------------------------------------------------


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every inline button press: verify the signature, then hand it to its conversation or action."""
    turn = await Turn.load(update, context)
    query = update.callback_query
    if turn is None or query is None:
        return
    _ = turn._
    callback = turn.signer.verify(turn.user_id, query.data)
    if callback is None:
        log.info("callback_refused", reason="bad_signature")
        await turn.answer(_(INVALID_BUTTON), alert=True)
        return
    if callback.nonce:
        flow = current_flow(context)
        if flow is None or flow.nonce != callback.nonce:
            await turn.answer(
                _("This conversation is over. Start again with a command, e.g. /subscribe."), alert=True
            )
            return
        flow.touch()
        if callback.action == "x":
            end_flow(context)
            await turn.show(_("Cancelled."))
        elif callback.action == "b":
            if flow.back():
                await _render(turn, flow)
            else:
                await turn.answer(_("This is the first step."))
        else:
            await FLOW_CALLBACKS[flow.kind](turn, flow, callback)
    elif callback.action in LIST_ACTIONS:
        await manage.on_list_button(turn, callback)
    elif callback.action in booking.ACTIONS:
        await booking.on_button(turn, callback)
    elif callback.action in swap.ACTIONS:
        await swap.on_list_button(turn, callback)
    elif callback.action in control.ACTIONS:
        await control.on_button(turn, callback)
    elif callback.action == "lg" and callback.arg in SUPPORTED_LANGUAGES:
        await turn.run(store.set_language, turn.user_id, callback.arg)
        turn.set_language(callback.arg)
        # TRANSLATORS: said in the language just chosen; name that language
        await turn.show(turn._("I will speak English with you."))
    else:
        await turn.answer(_(INVALID_BUTTON), alert=True)
    await turn.answer()


async def _render(turn: Turn, flow: Flow) -> None:
    if flow.kind == subscribe.KIND:
        await subscribe.render(turn, flow)
    elif flow.kind == profile.KIND:
        await profile.render(turn, flow)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Typed text: input for the current conversation, or a hint when there is none."""
    message = update.message
    turn = await Turn.load(update, context)
    if turn is None or message is None or message.text is None:
        return
    if len(message.text) > MAX_MESSAGE_CHARS:
        await turn.refuse(
            InputError(
                N_("That message is too long ({length} characters; at most {limit})."),
                {"length": len(message.text), "limit": MAX_MESSAGE_CHARS},
            )
        )
        return
    flow = current_flow(context)
    if flow is None:
        await turn.say(turn._("I did not understand that. /help lists what I can do."))
        return
    flow.touch()
    await FLOW_TEXT[flow.kind](turn, flow, message.text)


async def on_location(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.message
    turn = await Turn.load(update, context)
    if turn is None or message is None or message.location is None:
        return
    flow = current_flow(context)
    if flow is None or flow.kind != subscribe.KIND:
        await turn.say(turn._("I only need a location while you choose offices in /subscribe."))
        return
    flow.touch()
    await subscribe.on_location(turn, flow, message.location.latitude, message.location.longitude)


async def on_unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    turn = await Turn.load(update, context)
    if turn is not None:
        await turn.say(turn._("I do not know that command. /help lists what I can do."))


async def on_other_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    turn = await Turn.load(update, context)
    if turn is not None:
        await turn.say(
            turn._("I can only read text, button presses and locations. /help lists what I can do.")
        )


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure without personal data, and tell the user something went wrong."""
    error = context.error
    update_id = update.update_id if isinstance(update, Update) else None
    log.error(
        "handler_failed",
        update_id=update_id,
        error_type=type(error).__name__ if error else None,
        where=_where(error),
    )
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    try:
        language = context.user_data.get(LANGUAGE_KEY) if context.user_data is not None else None
        _ = translator(language if isinstance(language, str) else None)
        if update.callback_query is not None:
            with contextlib.suppress(Exception):  # already answered, or too old
                await update.callback_query.answer()
        await context.bot.send_message(
            update.effective_chat.id,
            _("Sorry, something went wrong on my side. Your data is safe; please try again, or /cancel."),
        )
    except Exception as exc:  # the error handler must never raise
        log.error("error_reply_failed", update_id=update_id, error_type=type(exc).__name__)


def _where(error: BaseException | None) -> str | None:
    """The innermost frame (file:line) of the error: enough to find it, no values."""
    tb = error.__traceback__ if error else None
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


COMMAND_DESCRIPTIONS = {
    "subscribe": N_("watch for an appointment"),
    "list": N_("your subscriptions"),
    "status": N_("is it working?"),
    "profile": N_("booking details: you and your family"),
    "bookings": N_("your bookings: state, cancel"),
    "earlier": N_("find an earlier date"),
    "quiet": N_("quiet hours: no alerts at night"),
    "email": N_("slot alerts also by e-mail"),
    "test": N_("send me a sample alert"),
    "export": N_("all your data as a file"),
    "delete": N_("erase all your data"),
    "language": N_("choose your language"),
    "cancel": N_("stop the current step"),
    "help": N_("what I can do"),
}


async def set_commands(bot: Bot) -> None:
    """The command menu in Telegram's clients: English by default, and each other supported language
    for clients set to it.

    For the bot's ``post_init``: it is a Bot API call, so ``register`` cannot make it."""
    for language in SUPPORTED_LANGUAGES:
        _ = translator(language)
        commands = [BotCommand(name, _(text)) for name, text in COMMAND_DESCRIPTIONS.items()]
        await bot.set_my_commands(commands, language_code=None if language == DEFAULT_LANGUAGE else language)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Add every conversation handler and the error handler to ``application``."""
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    for name, fn in COMMANDS.items():
        application.add_handler(CommandHandler(name, _command_handler(name, fn), filters=private))
    application.add_handler(CallbackQueryHandler(on_button, pattern=NOT_OURS_PATTERN))
    application.add_handler(CallbackQueryHandler(booking.on_book_button, pattern=booking.BOOK_PATTERN))
    application.add_handler(MessageHandler(private & filters.COMMAND, on_unknown_command))
    application.add_handler(MessageHandler(private & filters.LOCATION, on_location))
    application.add_handler(MessageHandler(private & filters.TEXT, on_text))
    application.add_handler(MessageHandler(private, on_other_message))
    application.add_error_handler(on_error)


__all__ = ["COMMANDS", "register", "set_commands"]
