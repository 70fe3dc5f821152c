"""Scenario timelines on the controllable clock: every shipped scenario loads and fires on time."""

from __future__ import annotations

import itertools
import time
from datetime import date, datetime, timedelta

import pytest

from replica.clock import BERLIN
from replica.scenarios import (
    Scenario,
    ScenarioError,
    load_into,
    parse_at,
    parse_day,
    parse_days,
    parse_duration_s,
    parse_start,
    shipped_scenarios,
)
from replica.state import berlin_ts
from tests.replica.conftest import (
    FS_PICKUP,
    FS_PICKUP_OFFICE,
    ORLEANSPLATZ,
    PASING,
    T0,
    ReplicaServer,
    calendar_params,
    error_codes,
)

TUE = date(2026, 11, 24)


def local(dt: str) -> datetime:
    return datetime.fromisoformat(dt).astimezone(BERLIN)


def free(site: ReplicaServer, office: int) -> list[int]:
    return [
        s["timestamp"]
        for s in site.control("GET", "slots", params={"office": office})
        if s["state"] == "free"
    ]


def test_every_shipped_scenario_parses() -> None:
    names = shipped_scenarios()
    assert {"quiet-day", "morning-release", "contested-slot", "maintenance", "layout-change", "demo"} <= set(
        names
    )
    for name in names:
        scenario = Scenario.load(name)
        assert scenario.events and scenario.description


def test_contested_slot(site: ReplicaServer) -> None:
    runner = load_into(site.state, "contested-slot")
    assert runner.start == datetime(2026, 11, 24, 7, 59, tzinfo=BERLIN)
    assert site.state.now() == runner.start
    eight = berlin_ts(date(2026, 11, 25), 8, 0)
    site.advance(9)
    assert free(site, ORLEANSPLATZ) == []
    site.advance(1)
    assert free(site, ORLEANSPLATZ) == [eight]
    site.advance(29)
    assert free(site, ORLEANSPLATZ) == [eight]
    site.advance(1)
    assert free(site, ORLEANSPLATZ) == []
    site.advance(20)  # +60 s
    nine = berlin_ts(date(2026, 11, 25), 9, 0)
    assert free(site, ORLEANSPLATZ) == [nine]
    site.advance(5)
    assert free(site, ORLEANSPLATZ) == []
    fired = [(r["label"], local(r["at"]).strftime("%H:%M:%S")) for r in runner.fired]
    assert fired == [
        ("the contested slot", "07:59:10"),
        ("someone else books it", "07:59:40"),
        ("a blink-and-gone slot", "08:00:00"),
        ("vanish", "08:00:05"),
    ]


def test_contested_slot_can_be_won(site: ReplicaServer) -> None:
    """Reserve before the competitor: the competitor's take misses and our reservation stands."""
    runner = load_into(site.state, "contested-slot")
    site.advance(10)
    ts = berlin_ts(date(2026, 11, 25), 8, 0)
    from tests.replica.conftest import WOHNSITZ, captcha_token

    token = captcha_token(site)
    body = {
        "timestamp": ts,
        "officeId": ORLEANSPLATZ,
        "serviceId": [WOHNSITZ],
        "serviceCount": [1],
        "captchaToken": token,
    }
    assert site.post("reserve-appointment/", body).status_code == 200
    site.advance(30)
    assert runner.fired[1]["result"] == {"taken": 0, "missed": 1}


def test_morning_release(site: ReplicaServer) -> None:
    runner = load_into(site.state, "morning-release")
    assert runner.start == datetime(2026, 11, 24, 6, 55, tzinfo=BERLIN)  # the next working day
    site.advance(4 * 60 + 59)
    assert free(site, ORLEANSPLATZ) == []
    site.advance(1)  # 07:00
    assert len(free(site, ORLEANSPLATZ)) == 6 and len(free(site, PASING)) == 6
    assert min(free(site, ORLEANSPLATZ)) == berlin_ts(TUE, 10, 0)
    site.advance(35 * 60)  # 07:35
    labels = [(r["label"], local(r["at"]).strftime("%H:%M")) for r in runner.fired if r["label"] != "vanish"]
    assert labels == [
        ("same-day slots, Orleansplatz and Pasing", "07:00"),
        ("same-day slots, Scheidplatz and Leonrodstraße", "07:03"),
        ("Ruppertstraße (shared booking group)", "07:05"),
        ("Pass calendar", "07:10"),
        ("Führerscheinstelle, 14 days ahead", "07:30"),
        ("Führerschein pickup", "07:31"),
    ]
    # released slots are booked by others within minutes
    assert free(site, ORLEANSPLATZ) == [] and free(site, 10502) == []
    vanished = [r for r in runner.fired if r["label"] == "vanish"]
    assert all(local(r["at"]) <= datetime(2026, 11, 24, 7, 35, tzinfo=BERLIN) for r in vanished)
    pickups = free(site, FS_PICKUP_OFFICE)
    assert pickups and min(pickups) == berlin_ts(TUE + timedelta(days=14), 9, 0)
    site.advance(2 * 3600)
    assert runner.fired[-1]["label"] in ("next-week slots", "vanish")
    assert any(r["label"] == "next-week slots" for r in runner.fired)


def test_maintenance_scenario(site: ReplicaServer) -> None:
    load_into(site.state, "maintenance")
    params = calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP])
    assert site.get("captcha-details/").status_code == 200
    site.advance(60)
    assert error_codes(site.get("captcha-details/")) == ["serviceUnavailable"]
    site.advance(120)
    assert site.get("captcha-details/").status_code == 200
    site.advance(120)  # +5m
    assert site.get("captcha-details/").status_code == 429
    site.advance(60)
    assert site.get("captcha-details/").status_code == 200
    site.advance(120)  # +8m
    assert site.get("available-calendar/", **params).status_code == 500
    assert site.get("captcha-details/").status_code == 200
    site.advance(120)  # +10m
    response = site.get("available-calendar/", **params)
    assert response.status_code == 200 and response.text.endswith('"2026-1')
    site.advance(120)  # +12m
    slow = site.state.fault("slow")
    assert slow is not None and slow.value == 2000
    site.advance(61)
    assert site.state.fault("slow") is None
    assert site.get("available-calendar/", **params).status_code == 200


def test_layout_change_scenario(site: ReplicaServer) -> None:
    load_into(site.state, "layout-change")
    params = calendar_params([FS_PICKUP_OFFICE], [FS_PICKUP])
    site.advance(119)
    assert site.state.layout_variant == "default"
    site.advance(1)
    assert site.state.layout_variant == "renamed-timeslot-ids"
    site.advance(180)
    assert site.get("available-calendar/", **params).status_code == 404
    assert site.get("available-calendar-v2/", **params).status_code == 200
    site.advance(180)
    assert site.state.layout_variant == "default"
    assert site.get("available-calendar/", **params).status_code == 200


def test_quiet_day(site: ReplicaServer) -> None:
    runner = load_into(site.state, "quiet-day")
    assert len(runner.fired) == 5
    assert free(site, ORLEANSPLATZ) and free(site, 10471)
    site.advance(3600)
    trickles = [r for r in runner.fired if r["label"] == "trickle"]
    assert 6 <= len(trickles) <= 12
    gaps = [(local(b["at"]) - local(a["at"])).total_seconds() for a, b in itertools.pairwise(trickles)]
    assert all(300 <= g <= 600 for g in gaps)
    assert any(r["label"] == "vanish" for r in runner.fired)


def test_demo_keeps_releasing_and_vanishing(site: ReplicaServer) -> None:
    runner = load_into(site.state, "demo")
    site.advance(15 * 60)
    labels = [r["label"] for r in runner.fired]
    assert labels[0] == "opening stock"
    assert labels.count("Bürgerbüros") >= 7 and labels.count("Ausländerbehörde") >= 7
    assert labels.count("Führerscheinstelle") >= 6
    kinds = [e["kind"] for e in site.control("GET", "events")]
    assert kinds.count("released") > 10 and kinds.count("taken") > 5
    offices = {e["officeId"] for e in site.control("GET", "events") if e["kind"] == "released"}
    assert len(offices) >= 6


def test_demo_is_repeatable(site: ReplicaServer) -> None:
    first = load_into(site.state, "demo")
    site.advance(600)
    one = [(r["at"], r["label"], r["result"]) for r in first.fired]
    site.state.reset()
    site.state.clock.freeze()
    site.state.clock.set(T0)
    second = load_into(site.state, "demo")
    site.advance(600)
    assert [(r["at"], r["label"], r["result"]) for r in second.fired] == one


def test_the_background_ticker_fires_events_without_requests(site: ReplicaServer) -> None:
    runner = load_into(site.state, "contested-slot")
    site.state.clock.advance(10)  # no request, no control call: only the lifespan ticker can notice
    deadline = time.monotonic() + 5
    while not runner.fired and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["label"] for r in runner.fired] == ["the contested slot"]


def test_big_clock_jumps_fire_everything_in_order(site: ReplicaServer) -> None:
    runner = load_into(site.state, "morning-release")
    site.advance(6 * 3600)
    ats = [r["at"] for r in runner.fired]
    assert ats == sorted(ats)
    assert runner.pending() == []


def test_parsers() -> None:
    assert parse_duration_s("1h30m") == 5400
    assert parse_duration_s("1500ms") == 1.5
    assert parse_duration_s(45) == 45
    with pytest.raises(ScenarioError):
        parse_duration_s("soon")
    assert parse_day("D+3", date(2026, 11, 27)) == date(2026, 11, 30)
    assert parse_day("W+0", date(2026, 11, 28)) == date(2026, 11, 30)  # Saturday -> Monday
    assert parse_day("W+1", date(2026, 11, 27)) == date(2026, 11, 30)  # Friday -> Monday
    assert parse_day("2026-12-24", date(2026, 11, 27)) == date(2026, 12, 24)
    thursday = date(2026, 11, 26)  # a range of working days skips the weekend; a D range keeps it
    assert parse_days("W+1..W+3", thursday) == [date(2026, 11, 27), date(2026, 11, 30), date(2026, 12, 1)]
    assert len(parse_days("D+1..D+5", thursday)) == 5
    fri = datetime(2026, 11, 27, 12, 0, tzinfo=BERLIN)
    assert parse_start("next-weekday 06:55", fri) == datetime(2026, 11, 30, 6, 55, tzinfo=BERLIN)
    assert parse_start("tomorrow 07:00", fri) == datetime(2026, 11, 28, 7, 0, tzinfo=BERLIN)
    assert parse_start("now", fri) == fri
    assert parse_at("+90s", fri) == fri + timedelta(seconds=90)
    assert parse_at("13:15", fri) == datetime(2026, 11, 27, 13, 15, tzinfo=BERLIN)
    assert parse_at("2026-11-28T08:00:00", fri) == datetime(2026, 11, 28, 8, 0, tzinfo=BERLIN)


@pytest.mark.parametrize(
    "text",
    [
        "events: [1]",
        "events:\n  - at: '+1s'\n",
        "events:\n  - release: {office: 1}\n    remove: {office: 1}\n",
        "events:\n  - release: {office: 1}\n    when: later\n",
        "- just a list",
    ],
)
def test_malformed_scenarios(text: str) -> None:
    with pytest.raises(ScenarioError):
        Scenario.from_yaml(text)


def test_inline_scenario_with_every_action(site: ReplicaServer) -> None:
    text = f"""
start: now
settings: {{rate_limit: 500, cancel_holdback_s: 30s}}
events:
  - release: {{office: {FS_PICKUP_OFFICE}, day: D+1, times: ["08:00", "08:15"], services: [{FS_PICKUP}]}}
  - at: "+1m"
    remove: {{office: {FS_PICKUP_OFFICE}, day: D+1, times: ["08:15"]}}
  - at: "+2m"
    set: {{legacy_api: true}}
  - at: "+3m"
    set: {{legacy_api: false}}
  - at: "+4m"
    garbage: {{duration: 10s}}
  - at: "+5m"
    slow: {{ms: 10}}
  - at: "+6m"
    clear_faults: all
  - at: "+7m"
    every: 1m
    count: 3
    release: {{office: {FS_PICKUP_OFFICE}, random: 1, days: "D+2..D+3", between: "08:00-09:00"}}
"""
    runner = load_into(site.state, Scenario.from_yaml(text, "inline"))
    assert site.state.ratelimiter.limit == 500 and site.state.cancel_holdback_s == 30
    assert len(free(site, FS_PICKUP_OFFICE)) == 2
    site.advance(60)
    assert len(free(site, FS_PICKUP_OFFICE)) == 1
    site.advance(60)
    assert site.state.legacy_api is True
    site.advance(60)
    assert site.state.legacy_api is False
    site.advance(60)
    assert site.state.fault("garbage") is not None
    site.advance(60)
    assert site.state.fault("slow") is not None
    site.advance(60)
    assert site.state.faults == {}
    site.advance(10 * 60)
    assert [r["label"] for r in runner.fired].count("release") == 4
    assert runner.pending() == []


def test_a_broken_event_is_reported_not_raised(site: ReplicaServer) -> None:
    broken = Scenario.from_yaml("events:\n  - at: '+1s'\n    release: {day: D+1}\n", "broken")
    runner = load_into(site.state, broken)
    site.advance(1)
    assert site.get("captcha-details/").status_code == 200
    assert "error" in runner.fired[0]["result"]
