"""Services in a person's own words: the name shown to them, and search that forgives typos.

The city's catalogue names services in German only. Readers of Russian, Ukrainian and Turkish see
the German name (what the city's page and e-mails say) followed by a short hint in their language,
from ``bot/data/services.yaml``; German and English readers see the name alone, as before.

Search (the /subscribe step "say in your own words what you need") matches the query against the German name,
the hints, and the words people use for a service in every language (a Russian speaker may type
"Anmeldung", an English speaker "прописка"); rapidfuzz scores the near misses, so "Reisepas",
"registraton" or "пасспорт" still find their service. A service not in the table is found by its
German name alone, typos forgiven the same way.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from rapidfuzz import fuzz

from shared.catalog import Service, get_catalog

TABLE_PATH = Path(__file__).parent / "data" / "services.yaml"
HINTED_LANGUAGES = frozenset({"ru", "uk", "tr"})
"""Languages whose readers get a hint after the German name."""
MIN_FUZZY_CHARS = 4
"""Shorter queries match only as written (a fuzzy "ab" would match half the catalogue)."""
EXACT_SCORE = 100.0
CONTAINED_SCORE = 95.0
CLOSENESS_BONUS = 4.0
PARTIAL_WEIGHT = 0.97
FUZZY_CUTOFF = 82.0
"""The lowest rapidfuzz score taken as a match; "registraton" scores ~95, "Reisepas" ~94,
unrelated words of similar length stay below ~70."""


@dataclass(frozen=True)
class ServiceWords:
    """What the table knows about one service."""

    hints: dict[str, str]
    words: tuple[str, ...]
    """Every language's words together, folded."""


def fold(text: str) -> str:
    """Case-, accent- and spacing-insensitive form ("Straße" and "strasse", "Ё" and "е" meet)."""
    text = text.casefold().replace("ß", "ss").replace("ё", "е")
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(stripped.replace("-", " ").replace("–", " ").split())


@cache
def service_table() -> dict[int, ServiceWords]:
    """``bot/data/services.yaml``, read once per process."""
    with TABLE_PATH.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    table: dict[int, ServiceWords] = {}
    for service_id, entry in raw.items():
        hints = {str(k): str(v) for k, v in (entry.get("hint") or {}).items()}
        words = [fold(str(w)) for ws in (entry.get("words") or {}).values() for w in ws]
        words += [fold(h) for h in hints.values()]
        table[int(service_id)] = ServiceWords(hints=hints, words=tuple(dict.fromkeys(words)))
    return table


def service_label(service: Service, language: str) -> str:
    """The service's name for this reader: "Reisepass (немецкий паспорт)" or just "Reisepass"."""
    if language not in HINTED_LANGUAGES:
        return service.name
    entry = service_table().get(service.id)
    hint = entry.hints.get(language) if entry else None
    return f"{service.name} ({hint})" if hint else service.name


def service_button_label(service: Service, language: str) -> str:
    """On a button (cut at about 60 characters) the hint comes first, so a long German name cannot
    push out the part the reader understands: "немецкий паспорт · Reisepass"."""
    if language not in HINTED_LANGUAGES:
        return service.name
    entry = service_table().get(service.id)
    hint = entry.hints.get(language) if entry else None
    return f"{hint} · {service.name}" if hint else service.name


def service_name(service_id: int, language: str, *, site: str | None = None) -> str | None:
    """``service_label`` by id; None for an id the catalogue does not know."""
    catalog = get_catalog(site) if site else get_catalog()
    service = catalog.service(service_id)
    return service_label(service, language) if service else None


def _score(query: str, name: str, words: tuple[str, ...]) -> float:
    terms = query.split()
    if query in words:
        return EXACT_SCORE
    containing = [text for text in (name, *words) if all(term in text for term in terms)]
    if containing:
        # the closer the containing text is to the query as a whole, the better: "Reisepass" before
        # "Vorläufiger Reisepass", "водительские права" before "международные водительские права"
        closeness = max(fuzz.ratio(query, text) for text in containing) / 100.0
        return CONTAINED_SCORE + CLOSENESS_BONUS * closeness
    if len(query) < MIN_FUZZY_CHARS:
        return 0.0
    # a misspelt word people use for the service, whole ("registraton")
    best = max((fuzz.ratio(query, w) for w in words), default=0.0)
    # a misspelt part of the name ("reisepas" in "vorlaufiger reisepass") or of a longer phrase: a
    # little less sure than a whole word, so "residense permit" finds the service called that
    # before one whose words merely contain it
    parts = [w for w in (name, *words) if len(w) > len(query)]
    partial = max((fuzz.partial_ratio(query, w) for w in parts), default=0.0)
    return max(best, partial * PARTIAL_WEIGHT, fuzz.ratio(query, name))


def search_services(query: str, *, limit: int = 8) -> list[Service]:
    """The public services with offices that best match ``query``, best first (ties: by name)."""
    folded = fold(query)
    if not folded:
        return []
    catalog = get_catalog()
    table = service_table()
    scored: list[tuple[float, str, Service]] = []
    for service in catalog.services.values():
        if not service.public or not catalog.offices_for_service(service.id):
            continue
        entry = table.get(service.id)
        score = _score(folded, fold(service.name), entry.words if entry else ())
        if score >= FUZZY_CUTOFF:
            scored.append((score, service.name, service))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [service for _, _, service in scored[:limit]]


__all__ = [
    "fold",
    "search_services",
    "service_button_label",
    "service_label",
    "service_name",
    "service_table",
]
