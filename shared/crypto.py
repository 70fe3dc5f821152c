"""Encryption of personal data at rest (names, e-mails, phones, the city's auth keys).

Fernet (AES-128-CBC + HMAC-SHA256). The key comes from ``MTA_ENCRYPTION_KEY`` or, when that is
unset, from ``<data_dir>/encryption.key``, created with mode 0600 on first use. Several
comma-separated keys may be given: the first encrypts, all decrypt (key rotation).

Columns typed ``EncryptedString`` / ``EncryptedJSON`` encrypt through one process-wide cipher,
set once with ``configure_cipher``; using them before that fails loudly rather than storing
plaintext.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Dialect, Text
from sqlalchemy.types import TypeDecorator

from shared.settings import Settings

KEY_FILE_NAME = "encryption.key"


class CryptoError(Exception):
    """Base for key and decryption problems; messages never contain key material or plaintext."""


class InvalidKeyError(CryptoError, ValueError):
    pass


class DecryptionError(CryptoError):
    pass


class CipherNotConfiguredError(CryptoError, RuntimeError):
    pass


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class Cipher:
    """Encrypts and decrypts text; the first key encrypts, any key decrypts."""

    def __init__(
        self, keys: str | bytes | list[str] | list[bytes], *, origin: str = "encryption key"
    ) -> None:
        if isinstance(keys, str | bytes):
            raw = keys.decode("ascii", "replace") if isinstance(keys, bytes) else keys
            key_list = [k.strip() for k in raw.split(",") if k.strip()]
        else:
            key_list = [k.decode("ascii", "replace") if isinstance(k, bytes) else k for k in keys]
        if not key_list:
            raise InvalidKeyError(f"{origin} is empty")
        fernets = []
        for position, key in enumerate(key_list, start=1):
            try:
                fernets.append(Fernet(key.strip().encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise InvalidKeyError(
                    f"{origin} (key #{position}) is not a valid Fernet key: it must be 32 bytes in "
                    "url-safe base64 (44 characters); make one with `python -c "
                    "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.origin = origin

    def __repr__(self) -> str:  # never show keys
        return f"Cipher(origin={self.origin!r})"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError):
            raise DecryptionError(
                f"stored personal data cannot be decrypted with the {self.origin}: "
                "was MTA_ENCRYPTION_KEY or the key file changed?"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        """The key from ``MTA_ENCRYPTION_KEY``, else from (or newly into) the data folder's key file."""
        if settings.encryption_key is not None and settings.encryption_key.get_secret_value().strip():
            return cls(settings.encryption_key.get_secret_value(), origin="MTA_ENCRYPTION_KEY")
        path = Path(settings.data_dir) / KEY_FILE_NAME
        return cls(load_or_create_key_file(path), origin=f"key file {path}")


def load_or_create_key_file(path: Path) -> str:
    """Read the key file, creating it (mode 0600, atomically, race-free) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".encryption-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(generate_key() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o600)
            # link() fails if another process created the file first; then we use theirs
            with contextlib.suppress(FileExistsError):
                os.link(tmp_name, path)
        finally:
            os.unlink(tmp_name)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not text:
        raise InvalidKeyError(f"key file {path} is empty")
    return text


_cipher: Cipher | None = None


def configure_cipher(cipher: Cipher | None) -> None:
    """Set (or, with None, clear) the process-wide cipher used by encrypted columns."""
    global _cipher
    _cipher = cipher


def get_cipher() -> Cipher:
    if _cipher is None:
        raise CipherNotConfiguredError(
            "no cipher configured: call shared.crypto.configure_cipher(Cipher.from_settings(settings)) "
            "at start-up before reading or writing personal data"
        )
    return _cipher


class EncryptedString(TypeDecorator[str]):
    """Text column stored as a Fernet token."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return get_cipher().encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return get_cipher().decrypt(value)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON value (e.g. a dict of custom form fields) stored as one Fernet token."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return get_cipher().encrypt(json.dumps(value, ensure_ascii=False, sort_keys=True))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(get_cipher().decrypt(value))


__all__ = [
    "Cipher",
    "CipherNotConfiguredError",
    "CryptoError",
    "DecryptionError",
    "EncryptedJSON",
    "EncryptedString",
    "InvalidKeyError",
    "configure_cipher",
    "generate_key",
    "get_cipher",
    "load_or_create_key_file",
]
