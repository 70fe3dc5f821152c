"""Signed inline-button data: a button only works for the person it was sent to.

Telegram hands callback data back verbatim, but any client can send any string as callback data.
So every button we make carries an HMAC over (user id, action, argument, conversation nonce): data
that was edited, made up, or taken from someone else's chat fails verification and is refused
before any handler sees it. Handlers still check ownership in the database (defence in depth).

Format: ``action|arg|nonce|mac`` — at most 64 bytes, Telegram's limit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

MAX_CALLBACK_BYTES = 64
MAC_CHARS = 11
"""66 bits of HMAC-SHA256, base64url: forging one by guessing is hopeless."""
SEPARATOR = "|"


class CallbackDataError(ValueError):
    """A button could not be made (a part contains the separator or the data is too long)."""


@dataclass(frozen=True, slots=True)
class Callback:
    action: str
    arg: str = ""
    nonce: str = ""
    """The conversation the button belongs to; empty for buttons that outlive conversations."""


class CallbackSigner:
    """Makes and checks signed callback data with one secret key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("callback secret must be at least 16 bytes")
        self._secret = secret

    @classmethod
    def from_token(cls, token: str | None) -> CallbackSigner:
        """Keyed on the bot token when there is one (buttons survive a restart), else random."""
        if token:
            return cls(hashlib.sha256(b"mta-callback-data\x00" + token.encode()).digest())
        return cls(secrets.token_bytes(32))

    def _mac(self, user_id: int, action: str, arg: str, nonce: str) -> str:
        message = SEPARATOR.join((str(user_id), action, arg, nonce)).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii")[:MAC_CHARS]

    def sign(self, user_id: int, action: str, arg: str | int = "", nonce: str = "") -> str:
        parts = (action, str(arg), nonce)
        if any(SEPARATOR in part for part in parts) or not action:
            raise CallbackDataError("callback parts must be non-empty actions without '|'")
        data = SEPARATOR.join((*parts, self._mac(user_id, *parts)))
        if len(data.encode()) > MAX_CALLBACK_BYTES:
            raise CallbackDataError(f"callback data longer than {MAX_CALLBACK_BYTES} bytes")
        return data

    def verify(self, user_id: int, data: str | None) -> Callback | None:
        """The callback if ``data`` was signed by us for ``user_id``; None for anything else."""
        if not isinstance(data, str) or len(data.encode()) > MAX_CALLBACK_BYTES:
            return None
        parts = data.split(SEPARATOR)
        if len(parts) != 4:
            return None
        action, arg, nonce, mac = parts
        if not action or not hmac.compare_digest(mac, self._mac(user_id, action, arg, nonce)):
            return None
        return Callback(action=action, arg=arg, nonce=nonce)


__all__ = ["MAX_CALLBACK_BYTES", "Callback", "CallbackDataError", "CallbackSigner"]
