"""The alert channel seam: one ``Notifier`` per channel (Telegram, e-mail, the console), called by
the one outbox drain (``bot.sender``), which owns everything that is channel-independent: claiming
rows, marking a row ``sending`` right before it goes on the wire, retries with backoff, ``dead``
after N tries, the fair order, quiet hours, "gone" notices.

A notifier only delivers one rendered message and says how it went: it returns ``Delivered`` or
raises one of the failure types below, each of which maps to one policy in the drain. It calls
``wire.on_wire()`` just before its bytes leave (and ``wire.on_refused()`` when the far side
answered with a refusal), so that a crash in between is settled without sending twice.

Here, in ``shared/``, so that both the bot (which drains the outbox) and ``mta`` (whose console
stands in for Telegram without a token) use the same contract. ``FakeNotifier`` is the fake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    """One rendered message for one recipient on one channel. ``recipient`` is personal data
    (a chat id, an e-mail address): never log it."""

    notification_id: int
    recipient: str
    subject: str
    """A one-line summary (an e-mail's subject; the console's line)."""
    text: str
    html: bool = True
    """``text`` is Telegram's HTML subset (``<b>``, ``<s>``, ``<a href>``); else plain text."""
    edit_of: int | None = None
    """A channel that can edit a sent message (Telegram): the message to replace."""
    markup: object | None = None
    """Channel-specific extras (Telegram's inline keyboard); others ignore it."""
    attachment: tuple[str, bytes] | None = None
    """(file name, content) sent with or after the message; its failure does not fail the message."""


@dataclass(frozen=True)
class Delivered:
    """The channel accepted the message. ``ref``: its id there (Telegram's message id), if any."""

    ref: int | None = None
    note: str | None = None


class DeliveryFailed(Exception):
    """Base of the failures a notifier raises; ``str(exc)`` must not contain the recipient."""


class RetryLater(DeliveryFailed):
    """Not delivered, may work later (flood limit, 5xx, timeout, server down): retried with
    exponential backoff, or after ``wait_s`` when the channel said how long."""

    def __init__(self, error: str, wait_s: float | None = None, *, backoff_steps: int = 0) -> None:
        super().__init__(error)
        self.wait_s = wait_s
        self.backoff_steps = backoff_steps
        """Extra doublings of the backoff (for trouble a quick retry will not fix)."""


class Rejected(DeliveryFailed):
    """The channel refused this message for good (bad request, unknown mailbox): ``dead``."""


class RecipientGone(DeliveryFailed):
    """The person refuses the channel (blocked the bot): ``dead``, and their subscriptions pause."""


@dataclass(frozen=True)
class WireHook:
    """Told when a message's bytes leave (the row turns ``sending``) and when the far side refused
    it (the row is not delivered)."""

    on_wire: Callable[[], Awaitable[None]]
    on_refused: Callable[[], Awaitable[None]]


class Notifier(Protocol):
    """Delivers rendered messages on one channel (``channel``: a ``NotificationChannel`` value)."""

    channel: str

    async def send(self, message: Outgoing, wire: WireHook) -> Delivered: ...


@dataclass
class FakeNotifier:
    """A notifier that records what it is given; ``failures`` are raised, one per call, first."""

    channel: str = "telegram"
    sent: list[Outgoing] = field(default_factory=list)
    failures: list[DeliveryFailed] = field(default_factory=list)

    async def send(self, message: Outgoing, wire: WireHook) -> Delivered:
        await wire.on_wire()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return Delivered(ref=len(self.sent))


__all__ = [
    "Delivered",
    "DeliveryFailed",
    "FakeNotifier",
    "Notifier",
    "Outgoing",
    "RecipientGone",
    "Rejected",
    "RetryLater",
    "WireHook",
]
