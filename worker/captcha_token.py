"""The captcha token the page receives: its claims and how long it lives.

A session (``worker.browser``) keeps its token until it nears expiry; a solver logs its lifetime.
Both read it here, so neither imports the other.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Any


def jwt_claims_unverified(token: str) -> dict[str, Any]:
    """The JWT's payload claims, decoded WITHOUT checking the signature (raises ValueError)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT: expected three dot-separated parts")
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment.encode("ascii")))
    except (binascii.Error, UnicodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"JWT payload is not base64 JSON: {exc}") from None
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not an object")
    return claims


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def jwt_expiry(token: str) -> datetime | None:
    """When the token expires by its own ``exp`` claim (site clock), or None if it has none."""
    try:
        exp = _number(jwt_claims_unverified(token).get("exp"))
    except ValueError:
        return None
    return datetime.fromtimestamp(exp, UTC) if exp is not None else None


def token_lifetime_s(token: str, *, now: float | None = None) -> float | None:
    """Seconds the token lives from issue: ``exp - iat``, else ``exp - now``; None if unknown."""
    try:
        claims = jwt_claims_unverified(token)
    except ValueError:
        return None
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None:
        return None
    if iat is not None:
        return exp - iat
    return exp - (time.time() if now is None else now)


__all__ = ["jwt_claims_unverified", "jwt_expiry", "token_lifetime_s"]
