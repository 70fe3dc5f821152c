"""The city's own rules for the booking form's contact fields (munich-site.md §2.6 and step 2).

The bot checks a profile with these before storing it, and the booking code can check again before
it types anything into the form: a value the site would refuse (``invalidEmail`` …) is caught when
the person can still fix it, not at booking time when the slot is held. Pure functions, no bot or
database imports, so worker code can use them.

Problems are reported as the site's own error codes (``invalidEmail``, ``invalidTelephone`` …) plus
a few of ours; the bot turns them into translated sentences.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from shared.catalog import Catalog, get_catalog

EMAIL_PATTERN = re.compile(r"^(?!.*\.\.)(?!\.)(?!.*\.$)[^\s@+]+(?<!\.)@(?!\.)[^\s@+]+\.[^\s@]{2,}$")
"""The site's e-mail pattern (update-appointment and the UI): no "+", no "..", no leading dot."""
PHONE_PATTERN = re.compile(r"^\+?[0-9]\d{6,14}$")
"""The site's telephone pattern: optional "+", then 7 to 15 digits."""
NAME_MAX_CHARS = 50
"""The form's ``maxlength`` on first and last name."""
CUSTOM_FIELD_MAX_CHARS = 250
LABEL_MAX_CHARS = 30
"""The backend's limit on customTextfield / customTextfield2 after normalisation."""
DATE_OF_BIRTH_FORMAT = "%d.%m.%Y"


class ProfileProblem(StrEnum):
    """Why a value is refused; the first group are the site's own error codes."""

    INVALID_FAMILY_NAME = "invalidFamilyName"
    INVALID_EMAIL = "invalidEmail"
    INVALID_TELEPHONE = "invalidTelephone"
    INVALID_CUSTOM_TEXTFIELD = "invalidCustomTextfield"
    NAME_TOO_LONG = "nameTooLong"
    INVALID_DATE_OF_BIRTH = "invalidDateOfBirth"
    INVALID_LABEL = "invalidLabel"
    """MTA's own rule: a profile's label (who it is for) is 1 to ``LABEL_MAX_CHARS`` characters."""


class CustomFieldKind(StrEnum):
    """The extra form field some offices ask for, stored under this key in ``custom_fields``."""

    DATE_OF_BIRTH = "date_of_birth"
    CASE_REFERENCE = "case_reference"


@dataclass(frozen=True, slots=True)
class CustomFieldRule:
    kind: CustomFieldKind
    site_label: str
    """The label the site shows above ``customTextfield``."""
    required: bool = True


# offices whose scope asks for customTextfield (munich-site.md, "Scope settings")
_CUSTOM_FIELD_BY_OFFICE_NAME = {
    "Führerscheinstelle": CustomFieldRule(CustomFieldKind.DATE_OF_BIRTH, "Geburtsdatum"),
    "Einbürgerungsbehörde": CustomFieldRule(
        CustomFieldKind.CASE_REFERENCE, "Fallnummer und Name des Sachbearbeiters"
    ),
}


def normalize_text(value: str) -> str:
    """What the site compares: NFC, surrounding white space removed, inner runs collapsed."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def check_name(value: str) -> ProfileProblem | None:
    """First or last name: not blank, at most 50 characters (the form's limit)."""
    text = normalize_text(value)
    if not text:
        return ProfileProblem.INVALID_FAMILY_NAME
    if len(text) > NAME_MAX_CHARS:
        return ProfileProblem.NAME_TOO_LONG
    return None


def check_label(value: str) -> ProfileProblem | None:
    """The short name a person gives a booking profile ("Anna", "my son"); never sent to the city,
    only shown on buttons, so it is kept short."""
    text = normalize_text(value)
    if not text or len(text) > LABEL_MAX_CHARS:
        return ProfileProblem.INVALID_LABEL
    return None


def check_email(value: str) -> ProfileProblem | None:
    """The site refuses addresses its pattern does not match, e.g. any address with "+"."""
    return None if EMAIL_PATTERN.fullmatch(value.strip()) else ProfileProblem.INVALID_EMAIL


def normalize_phone(value: str) -> str:
    """People type spaces, dashes, slashes and brackets; the site wants the digits only."""
    return re.sub(r"[\s\-/()]", "", value.strip())


def check_phone(value: str) -> ProfileProblem | None:
    return None if PHONE_PATTERN.fullmatch(normalize_phone(value)) else ProfileProblem.INVALID_TELEPHONE


def parse_date_of_birth(value: str, *, today: date) -> date | None:
    """DD.MM.YYYY, an existing day, in the past and not before 1900; None when not."""
    try:
        born = datetime.strptime(value.strip(), DATE_OF_BIRTH_FORMAT).date()
    except ValueError:
        return None
    if born >= today or born.year < 1900:
        return None
    return born


def check_custom_field(kind: CustomFieldKind, value: str, *, today: date) -> ProfileProblem | None:
    text = normalize_text(value)
    if kind is CustomFieldKind.DATE_OF_BIRTH:
        return None if parse_date_of_birth(text, today=today) else ProfileProblem.INVALID_DATE_OF_BIRTH
    if not text or len(text) > CUSTOM_FIELD_MAX_CHARS:
        return ProfileProblem.INVALID_CUSTOM_TEXTFIELD
    return None


def custom_field_for_service(service_id: int, catalog: Catalog | None = None) -> CustomFieldRule | None:
    """The extra field the offices of a service ask for, if any (Führerschein: date of birth)."""
    catalog = catalog or get_catalog()
    for office in catalog.offices_for_service(service_id, include_hidden=True):
        rule = _CUSTOM_FIELD_BY_OFFICE_NAME.get(office.display_name)
        if rule is not None:
            return rule
    return None


def form_custom_fields(
    service_id: int, custom_fields: dict[str, str] | None, catalog: Catalog | None = None
) -> dict[str, str]:
    """The site's form fields (``customTextfield``) to fill for a service from a stored profile."""
    rule = custom_field_for_service(service_id, catalog)
    if rule is None or not custom_fields or not custom_fields.get(rule.kind.value):
        return {}
    return {"customTextfield": normalize_text(custom_fields[rule.kind.value])}


def family_name(first_name: str, last_name: str) -> str:
    """The UI sends "Vorname Nachname" in the one ``familyName`` field."""
    return normalize_text(f"{first_name} {last_name}")


__all__ = [
    "CUSTOM_FIELD_MAX_CHARS",
    "EMAIL_PATTERN",
    "LABEL_MAX_CHARS",
    "NAME_MAX_CHARS",
    "PHONE_PATTERN",
    "CustomFieldKind",
    "CustomFieldRule",
    "ProfileProblem",
    "check_custom_field",
    "check_email",
    "check_label",
    "check_name",
    "check_phone",
    "custom_field_for_service",
    "family_name",
    "form_custom_fields",
    "normalize_phone",
    "normalize_text",
    "parse_date_of_birth",
]
