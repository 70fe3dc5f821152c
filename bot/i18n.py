"""Translations for the bot: English source strings, German (and later more) from gettext catalogues.

Each part of the bot keeps its own ``.po`` file under ``bot/locale/<lang>/LC_MESSAGES/`` (for example
``bot.po`` for conversations, ``alerts.po`` for alerts); all files of a language are merged. Catalogues
are read with Babel at first use, so no compile step is needed and a missing translation falls back to
the English source string rather than failing.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LANGUAGE = "en"
SUPPORTED_LANGUAGES = ("en", "de")
"""English is the source language; its catalogue is the identity."""

Gettext = Callable[[str], str]


def normalize_language(code: str | None) -> str:
    """Map a Telegram ``language_code`` ("de", "de-AT", "en-GB", None) to a supported language."""
    if not code:
        return DEFAULT_LANGUAGE
    base = code.replace("_", "-").split("-", 1)[0].lower()
    return base if base in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE


@cache
def translations(language: str) -> gettext.NullTranslations:
    """All catalogues of one language merged; unknown languages get the English source strings."""
    folder = LOCALE_DIR / normalize_language(language) / "LC_MESSAGES"
    merged: gettext.NullTranslations = gettext.NullTranslations()
    for po_file in sorted(folder.glob("*.po")):
        with po_file.open("rb") as handle:
            catalog = read_po(handle, locale=normalize_language(language))
        part = Translations()
        for message in catalog:
            translated = isinstance(message.string, str) and bool(message.string) and not message.fuzzy
            if isinstance(message.id, str) and translated:
                part._catalog[message.id] = str(message.string)
        if isinstance(merged, Translations):
            merged.merge(part)
        else:
            merged = part
    return merged


def translator(language: str | None) -> Gettext:
    """The ``_`` function for one user's language."""
    return translations(normalize_language(language)).gettext


def reload() -> None:
    """Forget loaded catalogues (tests that edit a ``.po`` file)."""
    translations.cache_clear()
