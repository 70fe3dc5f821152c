"""Rate limiting with the city's exact semantics (spec §2.11), on the controllable clock."""

from __future__ import annotations

import httpx
import pytest

from replica.ratelimit import client_ip
from tests.replica.conftest import T0, ReplicaServer, error_codes


@pytest.fixture
def limited(site: ReplicaServer) -> ReplicaServer:
    site.control("POST", "faults", json={"rate_limit": 3})
    return site


def hit(site: ReplicaServer, ip: str = "10.0.0.1") -> httpx.Response:
    return site.get("captcha-details/", headers={"X-Forwarded-For": ip})


def test_counts_headers_and_429(limited: ReplicaServer) -> None:
    t0 = int(T0.timestamp())
    remaining = []
    for _ in range(3):
        response = hit(limited)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Reset"] == str(t0 + 60)
        remaining.append(response.headers["X-RateLimit-Remaining"])
    assert remaining == ["1", "0", "0"]  # N - count - 1, never below 0
    blocked = hit(limited)
    assert blocked.status_code == 429
    assert error_codes(blocked) == ["rateLimitExceeded"]
    assert blocked.json()["errors"][0]["errorType"] == "warning"
    assert "X-RateLimit-Limit" not in blocked.headers and "X-RateLimit-Remaining" not in blocked.headers
    assert blocked.headers["X-Frame-Options"] == "DENY"  # security headers sit outside the limiter


def test_each_allowed_request_refreshes_the_ttl(limited: ReplicaServer) -> None:
    assert hit(limited).status_code == 200
    limited.advance(50)
    assert hit(limited).status_code == 200
    limited.advance(50)
    response = hit(limited)
    assert response.status_code == 200  # 100 s after the first, but never a 60 s pause
    assert response.headers["X-RateLimit-Reset"] == str(int(T0.timestamp()) + 100 + 60)
    limited.advance(50)
    assert hit(limited).status_code == 429


def test_blocked_requests_do_not_refresh_the_ttl(limited: ReplicaServer) -> None:
    for _ in range(3):
        assert hit(limited).status_code == 200  # last allowed request at T0
    for _ in range(5):
        limited.advance(11)
        assert hit(limited).status_code == 429  # up to T0 + 55
    limited.advance(4)  # T0 + 59
    assert hit(limited).status_code == 429
    limited.advance(1)  # T0 + 60: the entry expired 60 s after the last *allowed* request
    response = hit(limited)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining"] == "1"


def test_a_pause_of_the_window_resets(limited: ReplicaServer) -> None:
    for _ in range(3):
        hit(limited)
    limited.advance(60)
    assert hit(limited).status_code == 200


def test_per_client_ip(limited: ReplicaServer) -> None:
    for _ in range(3):
        hit(limited, "10.0.0.1")
    assert hit(limited, "10.0.0.1").status_code == 429
    assert hit(limited, "10.0.0.2").status_code == 200
    # Client-IP wins over X-Forwarded-For; an invalid value is skipped
    response = limited.get(
        "captcha-details/", headers={"Client-IP": "10.0.0.3", "X-Forwarded-For": "10.0.0.1"}
    )
    assert response.status_code == 200
    response = limited.get(
        "captcha-details/", headers={"Client-IP": "garbage", "X-Forwarded-For": "10.0.0.1"}
    )
    assert response.status_code == 429
    stats = limited.control("GET", "requests/stats")
    assert stats["byClientIp"]["10.0.0.1"] == 5


def test_client_ip_order() -> None:
    assert client_ip({"x-forwarded-for": "unknown, 192.0.2.7, 10.0.0.1"}, "127.0.0.1") == "192.0.2.7"
    assert client_ip({"forwarded": 'for="[2001:db8::1]:4711";proto=https'}, "127.0.0.1") == "2001:db8::1"
    assert client_ip({"x-cluster-client-ip": "192.0.2.9", "forwarded-for": "192.0.2.8"}, None) == "192.0.2.9"
    assert client_ip({}, "127.0.0.1") == "127.0.0.1"


def test_pages_and_control_are_not_limited(limited: ReplicaServer) -> None:
    for _ in range(3):
        hit(limited, "127.0.0.1")
    assert hit(limited, "127.0.0.1").status_code == 429
    assert limited.client.get("/_replica/state").status_code == 200
    assert limited.client.get("/buergerservice/terminvereinbarung.html").status_code in (200, 404)
    assert limited.client.get("/buergerservice/terminvereinbarung.html").status_code != 429


def test_storm_forces_429_for_a_while(site: ReplicaServer) -> None:
    site.control("POST", "faults", json={"storm_s": 30})
    response = hit(site)
    assert (response.status_code, error_codes(response)) == (429, ["rateLimitExceeded"])
    site.advance(31)
    assert hit(site).status_code == 200


def test_maintenance_comes_first(limited: ReplicaServer) -> None:
    for _ in range(3):
        hit(limited)
    limited.control("POST", "faults", json={"maintenance": True})
    response = hit(limited)
    assert (response.status_code, error_codes(response)) == (503, ["serviceUnavailable"])
    assert "X-Frame-Options" not in response.headers
    limited.control("POST", "faults", json={"maintenance": False})
    assert hit(limited).status_code == 429
