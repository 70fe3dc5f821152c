"""Alerts on ``mta up``'s console while no Telegram bot sends them (no token: the demo).

The console is a channel like Telegram and e-mail: ``ConsoleNotifier`` sits behind the same
``Notifier`` seam (``shared.notify``) and stands in for Telegram, and ``ConsoleAlerts`` runs the
bot's own outbox drain (``bot.sender.Sender``) in a thread of ``mta up`` with it (and the e-mail
channel, when SMTP is configured). So the console gets what a Telegram chat would get, once each,
in the person's language and after their quiet hours, and the rows are settled as delivered:
a bot started later with a token does not send them again. Operator alerts without a chat go to
the console too. A "gone" notice is not printed: the console keeps no message to edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import threading
from collections.abc import Callable
from datetime import datetime

from shared.logging import get_logger
from shared.notify import Delivered, Notifier, Outgoing, WireHook
from shared.settings import Settings

log = get_logger("mta.up")
_TAGS = re.compile(r"<[^>]+>")


class ConsoleNotifier:
    """Prints each alert as one line: what, where, when (the rendered alert's first lines, no
    markup); an alert names no person. Stands in for Telegram and takes operator alerts."""

    channel = "console"
    LINES = 4

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.printed = 0

    async def send(self, message: Outgoing, wire: WireHook) -> Delivered:
        await wire.on_wire()
        lines = [_TAGS.sub("", line).strip() for line in message.text.splitlines()]
        text = html.unescape(" — ".join([line for line in lines if line][: self.LINES]))
        self.echo(f"[{datetime.now().strftime('%H:%M:%S')}] {text}")
        self.printed += 1
        return Delivered(note="shown on the mta up console")  # no message id: nothing to edit


class ConsoleAlerts:
    """The outbox drain with the console as its Telegram channel, in a thread of ``mta up``."""

    def __init__(self, settings: Settings, echo: Callable[[str], None], *, poll_s: float = 1.0) -> None:
        self.settings = settings
        self.notifier = ConsoleNotifier(echo)
        self.poll_s = poll_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def printed(self) -> int:
        return self.notifier.printed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-alerts", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # a locked or missing DB must not kill the farm's console
            log.warning("console_alerts_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        from bot.email_notifier import email_notifiers
        from bot.outbox_store import SenderConfig
        from bot.sender import Sender
        from shared.db.database import open_database
        from shared.db.models import NotificationChannel

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        notifiers: dict[str, Notifier] = {
            NotificationChannel.TELEGRAM.value: self.notifier,
            ConsoleNotifier.channel: self.notifier,
            **email_notifiers(self.settings),
        }
        config = SenderConfig(sweep_s=self.poll_s, site_url=self.settings.site_url, operator_console=True)
        db = open_database(self.settings)
        try:
            async with Sender(None, db, config, notifiers=notifiers):
                self._ready.set()
                await self._stop.wait()
        finally:
            db.close()


__all__ = ["ConsoleAlerts", "ConsoleNotifier"]
