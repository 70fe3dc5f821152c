"""The /_replica/ control API and the faults it switches on."""

from __future__ import annotations

import json
import time
from datetime import date, datetime

import pytest

from replica.config import ReplicaConfig
from replica.state import berlin_ts
from tests.replica.conftest import (
    DAY0,
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    T0,
    ReplicaServer,
    calendar_params,
    error_codes,
    running_replica,
)

NOV25 = date(2026, 11, 25)
PARAMS = calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP], slots=NOV25)


def test_control_is_off_by_default() -> None:
    with running_replica(ReplicaConfig()) as server:
        assert server.client.get("/_replica/state").status_code == 404
        assert server.get("captcha-details/").status_code == 200


def test_state_and_clock(site: ReplicaServer) -> None:
    state = site.control("GET", "state")
    assert state["now"] == T0.isoformat().replace("+01:00", "+00:00") or state["nowLocal"].startswith(
        "2026-11-23T06:00"
    )
    assert (
        state["clockFrozen"] is True
        and state["legacyApi"] is False
        and state["calendarPath"] == "available-calendar"
    )
    clock = site.control("POST", "clock", json={"advance_s": 90})
    assert clock["nowLocal"].startswith("2026-11-23T06:01:30")
    clock = site.control("POST", "advance", params={"seconds": "5m"})
    assert clock["nowLocal"].startswith("2026-11-23T06:06:30")
    clock = site.control("POST", "clock", json={"set": "2026-12-01T09:00:00"})  # naive = Berlin
    assert clock["nowLocal"] == "2026-12-01T09:00:00+01:00"
    clock = site.control("POST", "clock", json={"freeze": False})
    assert clock["frozen"] is False
    time.sleep(0.05)
    assert datetime.fromisoformat(site.control("GET", "clock")["now"]) > datetime.fromisoformat(clock["now"])
    assert site.control("POST", "clock", json={"real": True, "freeze": True})["frozen"] is True


def test_slots_add_list_remove_take(site: ReplicaServer) -> None:
    added = site.control(
        "POST", "slots", json={"office": FS_PICKUP_OFFICE, "date": "2026-11-25", "time": "08:00", "count": 3}
    )["added"]
    assert added == [berlin_ts(NOV25, 8, 0), berlin_ts(NOV25, 8, 15), berlin_ts(NOV25, 8, 30)]
    listed = site.control("GET", "slots", params={"office": FS_PICKUP_OFFICE})
    assert [s["timestamp"] for s in listed] == added and {s["state"] for s in listed} == {"free"}
    assert listed[0]["local"] == "2026-11-25T08:00:00+01:00"
    assert (
        site.control("POST", "slots/take", json={"office": FS_PICKUP_OFFICE, "timestamp": added[0]})["taken"]
        is True
    )
    assert (
        site.control("POST", "slots/take", json={"office": FS_PICKUP_OFFICE, "timestamp": added[0]})["taken"]
        is False
    )
    removed = site.control(
        "POST", "slots/remove", json={"office": FS_PICKUP_OFFICE, "times": ["08:15"], "date": "2026-11-25"}
    )
    assert removed["removed"] == [{"officeId": FS_PICKUP_OFFICE, "timestamp": added[1]}]
    site.control(
        "POST", "slots", json={"office": FS_PICKUP_OFFICE, "timestamps": [added[1]], "services": [FS_PICKUP]}
    )
    assert site.control("GET", "slots", params={"office": FS_PICKUP_OFFICE})[0]["services"] == [FS_PICKUP]
    site.control("POST", "slots/remove", json={})
    assert site.control("GET", "slots") == []
    assert [e["kind"] for e in site.control("GET", "events")] == [
        "released",
        "taken",
        "removed",
        "released",
        "removed",
    ]
    bad = site.client.post("/_replica/slots", json={"office": 10204388, "timestamps": [added[0]]})
    assert bad.status_code == 400


def test_error_500_window_for_one_endpoint(site: ReplicaServer) -> None:
    site.control("POST", "faults", json={"error_500_s": 30, "endpoints": ["available-calendar"]})
    response = site.get("available-calendar/", **PARAMS)
    assert (response.status_code, error_codes(response)) == (500, ["internalError"])
    assert site.get("offices-and-services/").status_code == 200
    site.advance(31)
    assert site.get("available-calendar/", **PARAMS).status_code == 200


def test_garbage(site: ReplicaServer) -> None:
    site.control("POST", "faults", json={"garbage_s": 0})  # until cleared
    response = site.get("available-calendar/", **PARAMS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    site.control("POST", "faults", json={"clear": ["garbage"]})
    assert site.get("available-calendar/", **PARAMS).json()["availableDays"] == []


def test_slow(site: ReplicaServer) -> None:
    site.control("POST", "faults", json={"slow_ms": 300})
    started = time.perf_counter()
    assert site.get("captcha-details/").status_code == 200
    assert time.perf_counter() - started >= 0.3
    site.control("POST", "faults", json={"slow_ms": 0})
    started = time.perf_counter()
    site.get("captcha-details/")
    assert time.perf_counter() - started < 0.3


def test_maintenance_window(site: ReplicaServer) -> None:
    site.control("POST", "faults", json={"maintenance_s": 120})
    assert site.control("GET", "faults")["maintenance"]["until"]
    response = site.get("offices-and-services/")
    assert (response.status_code, error_codes(response)) == (503, ["serviceUnavailable"])
    site.advance(121)
    assert site.get("offices-and-services/").status_code == 200


def test_layout_variant_and_endpoint_rename(site: ReplicaServer) -> None:
    state = site.control(
        "POST", "faults", json={"layout_variant": "renamed-timeslot-ids", "calendar_path": "calendar-v2"}
    )
    assert state["layoutVariant"] == "renamed-timeslot-ids"
    assert site.state.layout_variant == "renamed-timeslot-ids"
    assert error_codes(site.get("available-calendar/", **PARAMS)) == ["notFound"]
    assert site.get("calendar-v2/", **PARAMS).status_code == 200
    site.control("POST", "faults", json={"calendar_path": "available-calendar"})
    assert site.get("available-calendar/", **PARAMS).status_code == 200


def test_renamed_answer_fields(site: ReplicaServer) -> None:
    """A site release that renamed an answer field: only the named endpoint's answer changes, {}
    and a reset put it back. Broken once by renaming on every endpoint: the catalogue assertion
    failed."""
    renames = {"availableDays": "days", "offices": "locations"}
    state = site.control("POST", "faults", json={"renamed_fields": renames})
    assert state["renamedFields"] == {"available-calendar": renames}
    body = site.get("available-calendar/", **PARAMS).json()
    assert "availableDays" not in body and body["days"] == []
    assert "offices" in site.get("offices-and-services/").json()
    site.control("POST", "faults", json={"renamed_fields": {}})
    assert site.get("available-calendar/", **PARAMS).json()["availableDays"] == []
    site.control(
        "POST",
        "faults",
        json={"renamed_fields": {"offices": "locations"}, "endpoints": ["offices-and-services"]},
    )
    assert "locations" in site.get("offices-and-services/").json()
    site.control("POST", "reset")
    assert "offices" in site.get("offices-and-services/").json()


def test_request_log(site: ReplicaServer) -> None:
    site.control("DELETE", "requests")
    site.get("offices-and-services/", headers={"X-Forwarded-For": "203.0.113.5"})
    site.get("captcha-details/")
    site.get("captcha-details/")
    site.client.get("/buergerservice/terminvereinbarung.html")
    log = site.control("GET", "requests", params={"path": "captcha"})
    assert [r["path"] for r in log["requests"]] == ["/buergeransicht/api/citizen/captcha-details/"] * 2
    first = log["requests"][0]
    assert set(first) == {"time", "clientIp", "method", "path", "query", "status", "durationMs"}
    stats = log["stats"]
    assert stats["total"] == 4
    assert stats["byClientIp"] == {"203.0.113.5": 1, "127.0.0.1": 3}
    assert stats["byPath"]["/buergeransicht/api/citizen/captcha-details/"] == 2
    assert (
        site.control("GET", "requests", params={"client_ip": "203.0.113.5"})["requests"][0]["status"] == 200
    )
    assert site.control("GET", "requests/stats")["total"] == 4  # control calls are not logged


def test_processes_and_reset(site: ReplicaServer) -> None:
    (ts,) = site.add_slots(FS_PICKUP_OFFICE, NOV25, "08:00")
    site.post(
        "reserve-appointment/",
        {"timestamp": ts, "officeId": FS_PICKUP_OFFICE, "serviceId": [FS_PICKUP], "serviceCount": [1]},
    )
    (process,) = site.control("GET", "processes")
    assert process["status"] == "reserved" and process["units"] == [ts]
    assert site.control("GET", "slots")[0]["state"] == "held"
    site.control("POST", "reset")
    assert site.control("GET", "processes") == [] and site.control("GET", "slots") == []
    assert site.control("GET", "state")["requests"] == 0


def test_scenario_load_and_status(site: ReplicaServer) -> None:
    status = site.control("POST", "scenario", json={"name": "contested-slot"})
    assert status["name"] == "contested-slot" and len(status["pending"]) == 3
    inline = f"events:\n  - at: '+1m'\n    release: {{office: {FS_PICKUP_OFFICE}, day: D+2, time: '08:00'}}\n"
    status = site.control("POST", "scenario", json={"yaml": inline, "start": "2026-11-23T06:00:00"})
    assert status["name"] == "inline" and status["start"] == "2026-11-23T06:00:00+01:00"
    site.advance(60)
    running = site.control("GET", "scenario")["running"]
    assert running["firedCount"] == 1
    assert "demo" in site.control("GET", "scenario")["shipped"]
    assert site.client.post("/_replica/scenario", json={"name": "no-such"}).status_code == 400
    assert site.client.post("/_replica/scenario", json={"yaml": "events: [{at: '+1s'}]"}).status_code == 400
    assert DAY0 < NOV25
