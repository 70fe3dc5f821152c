"""structlog set-up: JSON lines in production, readable on a terminal, personal data scrubbed.

Personal data must never reach a log line, whoever wrote the call: the scrubber masks known
personal keys and anything shaped like an e-mail address or phone number in any string value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from shared.settings import Settings

PERSONAL_KEYS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "family_name",
        "familyname",
        "full_name",
        "email",
        "mail",
        "phone",
        "telephone",
        "birth_date",
        "date_of_birth",
        "custom_field",
        "auth_key",
        "authkey",
        "captcha_token",
        "captchatoken",
        "token",
        "password",
        "secret",
        "encryption_key",
        "profile",
    }
)
REDACTED = "[redacted]"
_EMAIL_RE = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+\.[A-Za-z]{2,}")
# "+49 151 1234567", "0151/1234567", "01511234567": a leading + or 0; bare ids and epochs stay.
_PHONE_RE = re.compile(r"(?<![\w.+])(?:\+\d|0\d)[\d /-]{6,16}\d(?![\w.])")


def scrub_text(text: str) -> str:
    """Mask e-mail addresses and phone-like digit runs in free text."""
    text = _EMAIL_RE.sub("[email]", text)
    return _PHONE_RE.sub("[phone]", text)


def _scrub_value(key: str, value: Any) -> Any:
    if key.lower() in PERSONAL_KEYS and value is not None:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(key, v) for v in value]
    return value


def scrub_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop personal data from every event before it is rendered."""
    for key in list(event_dict):
        event_dict[key] = _scrub_value(key, event_dict[key])
    return event_dict


def configure_logging(settings: Settings, *, role: str = "mta") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and (settings.env == "production" or not sys.stderr.isatty())
    )
    level = getattr(logging, settings.log_level)
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared_processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(role=role)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "asyncio", "telegram.ext.Updater"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def get_logger(name: str | None = None) -> Any:
    """A bound structlog logger."""
    return structlog.get_logger(name)
