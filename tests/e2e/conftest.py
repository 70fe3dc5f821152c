"""Browser tests against the replica: fixtures ``replica_server`` and ``replica`` live in
``tests/conftest.py`` (built on ``tests/support/replica.py``) so every test package can use them."""

from tests.support.replica import (
    CAPTCHA_COST,
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    ORLEANSPLATZ,
    WOHNSITZANMELDUNG,
    Replica,
    berlin_slot,
)

__all__ = [
    "CAPTCHA_COST",
    "FUEHRERSCHEIN_UMSCHREIBUNG",
    "FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE",
    "ORLEANSPLATZ",
    "WOHNSITZANMELDUNG",
    "Replica",
    "berlin_slot",
]
