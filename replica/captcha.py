"""ALTCHA v2 proof-of-work captcha and the citizen API's captcha token (spec §3).

The city's API proxies its CaptchaService: ``captcha-challenge`` returns the ALTCHA v2 challenge
object unwrapped, ``captcha-verify`` checks a solved payload (once per challenge) and answers HTTP 200
in every case, with a JWT on success. The JWT (HS256, claims ``ip``, ``iat``, ``exp``) is bound to
the client IP and checked on ``available-calendar`` and ``reserve-appointment`` for offices whose
scope sets ``captchaActivatedRequired``.

The PyPI ``altcha`` 2.x library creates and verifies the proof of work. All expiry decisions use
the replica clock, not the wall clock, so tests and scenarios can move time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from typing import Any

import altcha
import jwt

from replica.clock import Clock
from replica.errors import ApiError

ALGORITHM = "SHA-256"
_NULLABLE_PARAMETERS = ("keySignature", "memoryCost", "parallelism", "data")
_PARAMETER_ORDER = (
    "algorithm", "nonce", "salt", "cost", "keyLength", "keyPrefix",
    "keySignature", "memoryCost", "parallelism", "expiresAt", "data",
)  # fmt: skip


class _ClockExpiry(int):
    """An ``expiresAt`` the altcha library cannot compare with wall-clock time.

    ``verify_solution`` checks expiry against ``time.time()``; the replica decides expiry on its own
    clock first and hands the library this int, which serialises (and so signs) like the plain
    number but never compares as "earlier than now".
    """

    def __lt__(self, other: object) -> bool:
        return False


def _canonical(parameters: dict[str, Any]) -> str:
    """Sorted, compact JSON: what ALTCHA signs (the values here are ASCII strings, ints, null)."""
    return json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_payload(payload: str) -> bytes:
    """Base64 or base64url, padding optional (the city accepts both)."""
    text = payload.strip()
    text += "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(text)
    return base64.b64decode(text, validate=True)


class CaptchaService:
    """Challenges, one verify per solved challenge, and IP-bound tokens."""

    def __init__(
        self,
        clock: Clock,
        secret: str,
        *,
        cost: int = 1_000,
        challenge_ttl_s: int = 300,
        token_ttl_s: int = 300,
    ) -> None:
        self.clock = clock
        self.cost = cost
        self.challenge_ttl_s = challenge_ttl_s
        self.token_ttl_s = token_ttl_s
        # derived keys: 32+ bytes whatever the configured secret's length (PyJWT warns otherwise)
        self._hmac_secret = hashlib.sha256(f"{secret}:challenge".encode()).hexdigest()
        self._token_secret = hashlib.sha256(f"{secret}:token".encode()).hexdigest()
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    # --- challenge -------------------------------------------------------------------------------
    def challenge(self) -> dict[str, Any]:
        """A signed v2 challenge in the Java library's shape (optional fields as explicit nulls)."""
        expires_at = int(self.clock.timestamp()) + self.challenge_ttl_s
        created = altcha.create_challenge(
            ALGORITHM, self.cost, expires_at=expires_at, hmac_secret=self._hmac_secret
        )
        made = created.parameters.to_dict()
        parameters: dict[str, Any] = {key: made.get(key) for key in _PARAMETER_ORDER}
        return {"parameters": parameters, "signature": self._sign(parameters)}

    def _sign(self, parameters: dict[str, Any]) -> str:
        return hmac.new(
            self._hmac_secret.encode(), _canonical(parameters).encode(), hashlib.sha256
        ).hexdigest()

    # --- verify ----------------------------------------------------------------------------------
    def verify(self, payload: object, client_ip: str) -> dict[str, Any]:
        """The ``captcha-verify`` response body (always sent with HTTP 200)."""
        if not isinstance(payload, str) or not payload.strip():
            return _failure("No payload provided", None)
        try:
            raw = decode_payload(payload)
        except (binascii.Error, ValueError):
            return _failure("Payload could not be decoded", None)
        try:
            decoded = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _failure("Invalid JSON in payload", None)
        if not self._solution_valid(decoded):
            return _failure("Captcha verification failed", {"valid": False})
        return {"meta": {"success": True}, "data": {"valid": True}, "token": self.issue_token(client_ip)}

    def _solution_valid(self, decoded: object) -> bool:
        try:
            assert isinstance(decoded, dict)
            challenge = decoded["challenge"]
            parameters = dict(challenge["parameters"])
            signature = str(challenge["signature"])
            solution = dict(decoded["solution"])
        except (AssertionError, KeyError, TypeError, ValueError):
            return False
        expires_at = parameters.get("expiresAt")
        now = self.clock.timestamp()
        if not isinstance(expires_at, int) or isinstance(expires_at, bool) or expires_at < now:
            return False
        with self._lock:
            self._used = {sig: exp for sig, exp in self._used.items() if exp >= now}
            if signature in self._used:
                return False
        # the widget may echo the explicit nulls or drop them; both forms carry our signature
        without_nulls = {k: v for k, v in parameters.items() if not (k in _NULLABLE_PARAMETERS and v is None)}
        with_nulls = {**{k: None for k in _NULLABLE_PARAMETERS}, **parameters}
        for variant in (parameters, with_nulls, without_nulls):
            if self._verify_variant(variant, signature, solution):
                with self._lock:
                    if signature in self._used:
                        return False
                    self._used[signature] = float(expires_at)
                return True
        return False

    def _verify_variant(self, parameters: dict[str, Any], signature: str, solution: dict[str, Any]) -> bool:
        try:
            payload = altcha.Payload.from_dict(
                {"challenge": {"parameters": parameters, "signature": signature}, "solution": solution}
            )
            payload.challenge.parameters.expires_at = _ClockExpiry(parameters["expiresAt"])
            result = altcha.verify_solution(payload, self._hmac_secret)
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        return bool(result.verified)

    # --- tokens ----------------------------------------------------------------------------------
    def issue_token(self, client_ip: str) -> str:
        iat = int(self.clock.timestamp())
        return jwt.encode(
            {"ip": client_ip, "iat": iat, "exp": iat + self.token_ttl_s},
            self._token_secret,
            algorithm="HS256",
        )

    def check_token(self, token: object, client_ip: str) -> None:
        """Raise ``captchaMissing``/``captchaInvalid``/``captchaExpired`` unless the token is good."""
        if not isinstance(token, str) or not token.strip():
            raise ApiError("captchaMissing")
        try:
            claims = jwt.decode(
                token.strip(),
                self._token_secret,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["ip", "iat", "exp"]},
            )
        except jwt.PyJWTError:
            raise ApiError("captchaInvalid") from None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < self.clock.timestamp():
            raise ApiError("captchaExpired")
        if claims.get("ip") != client_ip:
            raise ApiError("captchaInvalid")

    def reset(self) -> None:
        with self._lock:
            self._used.clear()


def _failure(error: str, data: dict[str, Any] | None) -> dict[str, Any]:
    return {"meta": {"success": False, "error": error}, "data": data}


def details(enabled: bool, base_url: str) -> dict[str, Any]:
    """The ``captcha-details`` body; the front end only reads ``captchaEnabled``."""
    base = base_url.rstrip("/")
    return {
        "siteKey": "replica-site-key",
        "captchaChallenge": f"{base}/api/v1/captcha/challenge",
        "captchaVerify": f"{base}/api/v1/captcha/verify",
        "captchaEnabled": enabled,
    }
