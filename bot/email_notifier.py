"""E-mail behind the ``Notifier`` seam (``shared.notify``): one alert mail to one verified address,
over SMTP through Apprise (its e-mail plugin builds the MIME message, HTML with a plain-text
alternative, and speaks SMTP with STARTTLS, TLS or neither).

What the outbox guarantees here, and what SMTP lets it guarantee:
- *Once each, retried, then dead*: the drain marks the row ``sending`` right before the mail is
  handed to the server (``WireHook.on_wire``); Apprise answers only "accepted" or "not", so every
  "not" (server down, refused, timed out) is retried with the drain's backoff and the row dies after
  ``max_attempts``. A permanent refusal (unknown mailbox) is retried like a temporary one, because
  Apprise does not tell them apart.
- *After a crash*: a row left ``sending`` counts as delivered, as for Telegram (at most once).
- *No double send*: SMTP has no idempotency key. A mail can arrive twice in one case only: the
  server took the whole message but the connection broke before its "250 OK" came back; that
  counts as a failure here, and the retry sends the mail again. Delivery beyond the first server
  (spam filters, the mailbox) is not seen at all: "sent" means the SMTP server accepted it.

The address never reaches a log: Apprise's own log lines name recipients, so its logger is kept
quiet, and errors raised here name the server, not the person.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import apprise

from shared.db.models import NotificationChannel
from shared.notify import Delivered, Notifier, Outgoing, RetryLater, WireHook
from shared.settings import Settings

_SECURE_MODES = {"starttls": "starttls", "ssl": "ssl", "none": "insecure"}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")


def valid_address(text: str) -> str | None:
    """``text`` as an e-mail address MTA will send to (trimmed, domain lower-cased), or None: one
    local part, one domain with a dot, no spaces, at most 254 characters."""
    address = text.strip()
    if len(address) > 254 or not _ADDRESS.match(address) or ".." in address:
        return None
    local, domain = address.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


@dataclass(frozen=True)
class EmailConfig:
    """The SMTP server alerts go through; built from settings once."""

    host: str
    port: int
    security: str
    """starttls, ssl or none."""
    sender: str
    user: str = ""
    password: str = ""
    timeout_s: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailConfig | None:
        """None when no SMTP server is configured (no e-mail channel)."""
        if not settings.smtp_host or not settings.smtp_from:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            sender=settings.smtp_from,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else "",
            timeout_s=settings.smtp_timeout_s,
        )

    def apprise_url(self, recipient: str) -> str:
        """Apprise's ``mailto``/``mailtos`` URL for one mail to ``recipient``."""
        scheme = "mailtos" if self.security == "ssl" else "mailto"
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@" if self.user else ""
        query = urlencode(
            {
                "smtp": self.host,
                "from": self.sender,
                "to": recipient,
                "mode": _SECURE_MODES[self.security],
                "cto": f"{self.timeout_s:g}",
                "rto": f"{self.timeout_s:g}",
            }
        )
        return f"{scheme}://{auth}{self.host}:{self.port}/?{query}"


class EmailNotifier:
    """Sends alert mails through one SMTP server (``EmailConfig``); the recipient is the address."""

    channel = NotificationChannel.EMAIL.value

    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its lines name the recipient

    async def send(self, message: Outgoing, wire: WireHook) -> Delivered:
        mailer = apprise.Apprise()
        if not mailer.add(self.config.apprise_url(message.recipient)):
            raise RetryLater(f"Apprise refused the SMTP settings for {self.config.host}", backoff_steps=2)
        body = message.text.replace("\n", "<br>\n") if message.html else message.text
        body_format = apprise.NotifyFormat.HTML if message.html else apprise.NotifyFormat.TEXT
        await wire.on_wire()
        accepted = await asyncio.to_thread(
            mailer.notify, body=body, title=message.subject, body_format=body_format
        )
        if not accepted:
            raise RetryLater(f"SMTP server {self.config.host}:{self.config.port} did not accept the mail")
        return Delivered()


def email_notifiers(settings: Settings) -> dict[str, Notifier]:
    """The e-mail channel for the drain's ``notifiers``: empty when no SMTP server is configured."""
    config = EmailConfig.from_settings(settings)
    return {EmailNotifier.channel: EmailNotifier(config)} if config is not None else {}


__all__ = ["EmailConfig", "EmailNotifier", "email_notifiers", "valid_address"]
