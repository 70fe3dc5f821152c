"""Translations for the bot: English source strings; German, Russian, Ukrainian and Turkish from gettext
catalogues.

Each part of the bot keeps its own ``.po`` file under ``bot/locale/<lang>/LC_MESSAGES/`` (for example
``bot.po`` for conversations, ``alerts.po`` for alerts); all files of a language are merged. Catalogues
are read with Babel at first use, so no compile step is needed and a missing translation falls back to
the English source string rather than failing. Plural forms ("1 minute", "5 минут", "2 хвилини")
follow each language's rule as Babel knows it (``Plural-Forms`` in the catalogue header, else Babel's
table for the locale); code asks for them with ``_.ngettext(singular, plural, n)``.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LANGUAGE = "en"
SUPPORTED_LANGUAGES = ("en", "de", "ru", "uk", "tr")
"""English is the source language; its catalogue is the identity."""
LANGUAGE_NAMES = {
    "en": "English",
    "de": "Deutsch",
    "ru": "Русский",
    "uk": "Українська",
    "tr": "Türkçe",
}
"""Each language in its own name: the /language buttons."""


class Gettext(Protocol):
    """The ``_`` handed around: ``_(text)`` translates, ``_.ngettext(one, many, n)`` picks a plural."""

    def __call__(self, message: str, /) -> str: ...

    def ngettext(self, singular: str, plural: str, n: int, /) -> str: ...


@dataclass(frozen=True)
class Translator:
    """One language's ``_``."""

    catalogue: gettext.NullTranslations

    def __call__(self, message: str, /) -> str:
        return self.catalogue.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int, /) -> str:
        return self.catalogue.ngettext(singular, plural, n)


def normalize_language(code: str | None) -> str:
    """Map a Telegram ``language_code`` ("de", "de-AT", "ru", "uk-UA", None) to a supported language."""
    if not code:
        return DEFAULT_LANGUAGE
    base = code.replace("_", "-").split("-", 1)[0].lower()
    return base if base in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE


@cache
def translations(language: str) -> gettext.NullTranslations:
    """All catalogues of one language merged; unknown languages get the English source strings."""
    lang = normalize_language(language)
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    merged: gettext.NullTranslations = gettext.NullTranslations()
    for po_file in sorted(folder.glob("*.po")):
        with po_file.open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        # compiled in memory with Babel's own writer: fuzzy and untranslated entries are left out (the
        # English source shows), the header carries the language's Plural-Forms
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        part = Translations(compiled)
        if isinstance(merged, Translations):
            merged.merge(part)
        else:
            merged = part
    return merged


def translator(language: str | None) -> Gettext:
    """The ``_`` function for one user's language."""
    return Translator(translations(normalize_language(language)))


def reload() -> None:
    """Forget loaded catalogues (tests that edit a ``.po`` file)."""
    translations.cache_clear()
