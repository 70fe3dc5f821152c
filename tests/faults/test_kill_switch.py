"""The operator's kill switch: while it is on, not one request reaches the site; resumed, checks
come back by themselves.

A real farm (`mta scheduler`, `mta worker` with Chromium) watches the replica; the switch is
thrown through the status service's admin API (the app in-process, on the farm's Redis and
database), and the replica's own request log is the witness.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.settings import load_settings
from tests.support.farm import Farm, wait_until
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    Replica,
    api_requests,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "kill-switch-admin-token-123456"
QUIET_S = 8.0
"""How long the scheduler must have run on (by its own heartbeats) while the switch is on."""


def test_kill_switch_stops_every_request_until_resumed(
    make_farm: Callable[..., Farm], replica: Replica
) -> None:
    """Injected: the kill switch for "munich" set through POST /api/v1/admin/sites/munich/stop
    while a farm checks one target every second. Asserted: once the check in flight (if any) is
    done, the replica receives zero requests and no check is recorded while the scheduler beats
    on for 8 s and more as leader; /api/v1/status and the dashboard name the stopped site; the
    call needs the admin token. After POST .../resume, checks and requests come back without a
    hand in between. (Tried: without the scheduler's test of the switch, checks are still
    dispatched and this fails; the worker's own test then drops them, so the replica still sees
    no request.)"""
    farm = make_farm()
    farm.subscribe(1, FUEHRERSCHEIN_UMSCHREIBUNG, [FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE])
    farm.start()
    wait_until(lambda: len(farm.checks()) >= 2, 90, "two checks before the switch")
    settings = load_settings(
        data_dir=farm.root,
        database_url=farm.settings.database_url,
        redis_url=farm.redis_url,
        encryption_key=farm.settings.encryption_key.get_secret_value()
        if farm.settings.encryption_key
        else None,
        admin_token=TOKEN,
        env="test",
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings, refresh_s=0.2)) as client:
        assert client.post("/api/v1/admin/sites/munich/stop").status_code == 401
        answer = client.post("/api/v1/admin/sites/munich/stop", json={"reason": "drill"}, headers=auth)
        assert answer.status_code == 200 and answer.json()["stopped"] is True

        wait_until(lambda: not farm.redis.keys("mta:inflight:*"), 60, "the check in flight to end")
        since = datetime.now(UTC)
        checks_before = len(farm.checks())
        start = time.time()

        def leader_beat_after(delay_s: float) -> dict[str, Any] | None:
            return next((s for s in farm.schedulers() if s["at"] > start + delay_s and s["leader"]), None)

        # the first beat after the switch (a beat reports dispatches up to 2 s late)
        first = wait_until(lambda: leader_beat_after(2.5), 30, "a leader beat")
        assert first is not None
        dispatched_before = first["dispatched_total"]
        wait_until(lambda: leader_beat_after(QUIET_S), 60, "the scheduler to lead on for a while")
        assert api_requests(replica, since) == []
        assert len(farm.checks()) == checks_before
        last = wait_until(lambda: leader_beat_after(QUIET_S), 5, "a beat")
        assert last is not None and last["dispatched_total"] == dispatched_before

        status = client.get("/api/v1/status").json()
        assert [s["site"] for s in status["stopped_sites"]] == ["munich"]
        assert status["stopped_sites"][0]["reason"] == "drill"
        assert 'data-stopped="munich"' in client.get("/").text

        assert client.post("/api/v1/admin/sites/munich/resume", headers=auth).json()["stopped"] is False
        wait_until(lambda: len(farm.checks()) > checks_before, 60, "checks after resuming")
        assert api_requests(replica, since)
        assert client.get("/api/v1/status").json()["stopped_sites"] == []
