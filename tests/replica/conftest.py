"""A real replica (uvicorn on a free port, in a background thread) for the replica's tests.

One server per test module; each test starts from a reset state with the clock frozen at a known
Monday morning, so dates and expiry are deterministic whatever the wall clock says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from replica.app import serve_in_thread
from replica.clock import BERLIN
from replica.config import API_PREFIX, ReplicaConfig
from replica.state import ReplicaState, berlin_ts
from tests.conftest import free_port

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=BERLIN)
"""The frozen start of every test: Monday 23 November 2026, 06:00 in Munich."""
DAY0 = T0.date()

ORLEANSPLATZ = 102522
PASING = 54261
RUPPERT = 10489
RUPPERT_AUSBILDUNG = 10503
FS_UMSCHREIBUNG = 10308174
"""Führerscheinstelle II/44211: its Umschreibung services take 20 min = two 15-minute units."""
FS_PICKUP_OFFICE = 1094898
FS_PICKUP = 10176294
"""Abholung von Führerscheinen: one unit, no captcha, custom field "Geburtsdatum" required."""
NOTFALL_V5 = 10187259
EINBUERGERUNG = 10471
KFZ = 10308013
WOHNSITZ = 1063475
WOHNSITZ_FAMILIE = 10224132
REISEPASS = 1063453
FS_AUSLAENDISCH = 1071896
NOTFALL_STUDIS = 10339027
EINBUERGERUNG_SERVICE = 1071907

TEST_CONFIG = ReplicaConfig(
    control_enabled=True,
    rate_limit=100_000,
    captcha_cost=100,
    cancel_holdback_s=600,
    captcha_secret="test-secret-for-the-replica",
)


@dataclass
class ReplicaServer:
    app: FastAPI
    port: int
    client: httpx.Client
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> ReplicaState:
        state: ReplicaState = self.app.state.replica
        return state

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, endpoint: str, **kwargs: Any) -> httpx.Response:
        """Call the citizen API; ``endpoint`` like "offices-and-services/"."""
        return self.client.request(method, f"{API_PREFIX}/{endpoint}", **kwargs)

    def get(self, endpoint: str, **params: Any) -> httpx.Response:
        headers = params.pop("headers", None)
        return self.api("GET", endpoint, params=params, headers=headers)

    def post(self, endpoint: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.api("POST", endpoint, json=body, **kwargs)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, f"/_replica/{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def add_slots(self, office: int, day: date, *times: str, services: list[int] | None = None) -> list[int]:
        stamps = [berlin_ts(day, int(t[:2]), int(t[3:5])) for t in times]
        self.control("POST", "slots", json={"office": office, "timestamps": stamps, "services": services})
        return stamps

    def advance(self, seconds: float) -> None:
        self.control("POST", "clock", json={"advance_s": seconds})


@contextmanager
def running_replica(config: ReplicaConfig, scenario: str | Path | None = None) -> Iterator[ReplicaServer]:
    """Start the replica with uvicorn in a thread on a free port; stop it on exit."""
    config = dataclasses.replace(config, port=free_port())
    with (
        serve_in_thread(config, scenario) as (base_url, app),
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        yield ReplicaServer(app=app, port=config.port, client=client)


@pytest.fixture(scope="module")
def replica_server() -> Iterator[ReplicaServer]:
    with running_replica(TEST_CONFIG) as server:
        yield server


@pytest.fixture
def site(replica_server: ReplicaServer) -> ReplicaServer:
    """The module's replica, reset, with the clock frozen at ``T0``."""
    state = replica_server.state
    state.reset()
    state.clock.freeze()
    state.clock.set(T0)
    return replica_server


def calendar_params(
    offices: list[int],
    services: list[int],
    counts: list[int] | None = None,
    start: date = DAY0,
    end: date | None = None,
    slots: date | tuple[date, date] | None = None,
    token: str | None = None,
) -> dict[str, str]:
    """The query the front end sends to available-calendar."""
    params = {
        "startDate": start.isoformat(),
        "endDate": (end or start + timedelta(days=182)).isoformat(),
        "officeIds": ",".join(map(str, offices)),
        "serviceIds": ",".join(map(str, services)),
        "serviceCounts": ",".join(map(str, counts or [1] * len(services))),
    }
    if slots is not None:
        first, last = slots if isinstance(slots, tuple) else (slots, slots)
        params["slotsStartDate"] = first.isoformat()
        params["slotsEndDate"] = last.isoformat()
    if token is not None:
        params["captchaToken"] = token
    return params


def solve(challenge: dict[str, Any]) -> str:
    """Solve an ALTCHA v2 challenge as the widget would; returns the base64 payload."""
    import base64
    import json

    import altcha

    solution = altcha.solve_challenge(altcha.Challenge.from_dict(challenge))
    assert solution is not None, "the challenge could not be solved"
    return base64.b64encode(
        json.dumps({"challenge": challenge, "solution": solution.to_dict()}).encode()
    ).decode()


def captcha_token(site: ReplicaServer, headers: dict[str, str] | None = None) -> str:
    """Walk challenge -> solve -> verify and return the JWT."""
    challenge = site.get("captcha-challenge/", headers=headers).json()
    verified = site.post("captcha-verify/", {"payload": solve(challenge)}, headers=headers).json()
    assert verified["meta"]["success"] is True, verified
    token: str = verified["token"]
    return token


def error_codes(response: httpx.Response) -> list[str]:
    return [e["errorCode"] for e in response.json()["errors"]]
