"""ALTCHA v2 captcha and the IP-bound token (spec §3), solved with the altcha library like a widget."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt

from tests.replica.conftest import (
    DAY0,
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    NOTFALL_STUDIS,
    NOTFALL_V5,
    ORLEANSPLATZ,
    WOHNSITZ,
    ReplicaServer,
    calendar_params,
    captcha_token,
    error_codes,
    solve,
)

IP_A = {"X-Forwarded-For": "198.51.100.1"}
IP_B = {"X-Forwarded-For": "198.51.100.2"}


def orleans_calendar(
    site: ReplicaServer, token: str | None, headers: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    params = calendar_params([ORLEANSPLATZ], [WOHNSITZ], slots=DAY0, token=token)
    response = site.get("available-calendar/", headers=headers, **params)
    return response.status_code, error_codes(response) if response.status_code != 200 else []


def verify(site: ReplicaServer, payload: object) -> dict[str, Any]:
    response = site.post("captcha-verify/", {"payload": payload})
    assert response.status_code == 200  # always, whatever happened
    body: dict[str, Any] = response.json()
    return body


def test_solve_verify_and_use_the_token(site: ReplicaServer) -> None:
    challenge = site.get("captcha-challenge/").json()
    body = verify(site, solve(challenge))
    assert body["meta"] == {"success": True}
    assert body["data"] == {"valid": True}
    token = body["token"]
    assert isinstance(token, str)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"ip", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 300
    assert claims["ip"] == "127.0.0.1"
    assert orleans_calendar(site, token) == (200, [])
    assert orleans_calendar(site, token) == (200, [])  # reusable until it expires


def test_token_required_only_where_the_scope_says_so(site: ReplicaServer) -> None:
    assert orleans_calendar(site, None) == (400, ["captchaMissing"])
    params = calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], slots=DAY0)
    assert site.get("available-calendar/", **params).status_code == 200
    params = calendar_params([NOTFALL_V5], [NOTFALL_STUDIS], slots=DAY0)
    assert error_codes(site.get("available-calendar/", **params)) == ["captchaMissing"]


def test_bad_tokens(site: ReplicaServer) -> None:
    assert orleans_calendar(site, "not-a-jwt") == (400, ["captchaInvalid"])
    forged = jwt.encode(
        {"ip": "127.0.0.1", "iat": 1, "exp": 2**40}, "another-secret-of-32-bytes-or-more!!", "HS256"
    )
    assert orleans_calendar(site, forged) == (400, ["captchaInvalid"])


def test_token_is_bound_to_the_client_ip(site: ReplicaServer) -> None:
    token = captcha_token(site, headers=IP_A)
    assert orleans_calendar(site, token, IP_A) == (200, [])
    assert orleans_calendar(site, token, IP_B) == (400, ["captchaInvalid"])
    assert orleans_calendar(site, token) == (400, ["captchaInvalid"])


def test_token_expires_on_the_replica_clock(site: ReplicaServer) -> None:
    token = captcha_token(site)
    site.advance(300)
    assert orleans_calendar(site, token) == (200, [])
    site.advance(1)
    assert orleans_calendar(site, token) == (400, ["captchaExpired"])


def test_reserve_checks_the_token(site: ReplicaServer) -> None:
    (ts,) = site.add_slots(ORLEANSPLATZ, DAY0 + timedelta(days=1), "08:00")
    body = {"timestamp": ts, "officeId": ORLEANSPLATZ, "serviceId": [WOHNSITZ], "serviceCount": [1]}
    response = site.post("reserve-appointment/", body)
    assert (response.status_code, error_codes(response)) == (400, ["captchaMissing"])
    response = site.post("reserve-appointment/", {**body, "captchaToken": "x.y.z"})
    assert error_codes(response) == ["captchaInvalid"]
    response = site.post("reserve-appointment/", {**body, "captchaToken": captcha_token(site)})
    assert response.status_code == 200


def test_one_verify_per_solved_challenge(site: ReplicaServer) -> None:
    payload = solve(site.get("captcha-challenge/").json())
    assert verify(site, payload)["meta"] == {"success": True}
    again = verify(site, payload)
    assert again["meta"] == {"success": False, "error": "Captcha verification failed"}
    assert "token" not in again


def test_verify_failure_shapes(site: ReplicaServer) -> None:
    assert verify(site, None)["meta"] == {"success": False, "error": "No payload provided"}
    assert verify(site, "")["meta"] == {"success": False, "error": "No payload provided"}
    assert verify(site, "%%%not base64%%%")["meta"] == {
        "success": False,
        "error": "Payload could not be decoded",
    }
    not_json = base64.b64encode(b"hello").decode()
    assert verify(site, not_json)["meta"] == {"success": False, "error": "Invalid JSON in payload"}
    response = site.api(
        "POST", "captcha-verify/", content=b"garbage", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["meta"]["error"] == "No payload provided"


def test_tampered_or_expired_solutions_fail(site: ReplicaServer) -> None:
    challenge = site.get("captcha-challenge/").json()
    decoded = json.loads(base64.b64decode(solve(challenge)))
    decoded["solution"]["counter"] += 1
    tampered = base64.b64encode(json.dumps(decoded).encode()).decode()
    assert verify(site, tampered)["meta"]["error"] == "Captcha verification failed"
    decoded = json.loads(base64.b64decode(solve(challenge)))
    decoded["challenge"]["parameters"]["cost"] = 1
    assert verify(site, base64.b64encode(json.dumps(decoded).encode()).decode())["meta"]["success"] is False

    payload = solve(site.get("captcha-challenge/").json())
    site.advance(301)
    assert verify(site, payload)["meta"]["success"] is False


def test_base64url_without_padding_and_without_nulls(site: ReplicaServer) -> None:
    """The widget may drop null parameters and send base64url; both still carry our signature."""
    challenge = site.get("captcha-challenge/").json()
    decoded = json.loads(base64.b64decode(solve(challenge)))
    decoded["challenge"]["parameters"] = {
        k: v for k, v in decoded["challenge"]["parameters"].items() if v is not None
    }
    payload = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
    assert verify(site, payload)["meta"] == {"success": True}


def test_verify_works_with_the_clock_far_from_real_time(site: ReplicaServer) -> None:
    """The replica clock, not the wall clock, decides whether a challenge has expired."""
    site.control("POST", "clock", json={"set": "2020-01-01T08:00:00+01:00"})
    assert verify(site, solve(site.get("captcha-challenge/").json()))["meta"] == {"success": True}
    site.control("POST", "clock", json={"set": "2031-01-01T08:00:00+01:00"})
    assert verify(site, solve(site.get("captcha-challenge/").json()))["meta"] == {"success": True}


def test_captcha_details_flag(site: ReplicaServer) -> None:
    site.control("POST", "faults", json={"captcha_enabled": False})
    assert site.get("captcha-details/").json()["captchaEnabled"] is False
    # the global flag does not switch the scope check off
    assert orleans_calendar(site, None) == (400, ["captchaMissing"])
