"""The ``/_replica/`` control API: tests and demos drive the replica through it.

Mounted only when ``control_enabled`` is set. Nothing here is part of the city's site; it is
neither rate limited nor written to the request log.
"""

from __future__ import annotations

import html
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from replica.clock import BERLIN
from replica.config import CONTROL_PREFIX
from replica.scenarios import Scenario, ScenarioError, load_into, parse_duration_s, shipped_scenarios
from replica.state import FAULT_NAMES, UNIT_S, ReplicaState, berlin_ts

router = APIRouter(prefix=CONTROL_PREFIX, tags=["replica control"])


def _state(request: Request) -> ReplicaState:
    state: ReplicaState = request.app.state.replica
    return state


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"not a date: {value!r}") from None


def _local(dt: datetime) -> str:
    return dt.astimezone(BERLIN).isoformat()


# --- overview ----------------------------------------------------------------------------------
@router.get("/state")
def get_state(request: Request) -> dict[str, Any]:
    """Clock, mode, faults, counters: one look at what the replica is doing."""
    state = _state(request)
    state.tick()
    with state.lock:
        return {
            "now": state.now().isoformat(),
            "nowLocal": _local(state.now()),
            "clockFrozen": state.clock.frozen,
            "legacyApi": state.legacy_api,
            "captchaEnabled": state.captcha_enabled,
            "rateLimit": state.ratelimiter.limit,
            "rateWindowS": state.ratelimiter.window_s,
            "layoutVariant": state.layout_variant,
            "calendarPath": state.calendar_path,
            "renamedFields": {name: dict(fields) for name, fields in state.renamed_fields.items()},
            "cancelHoldbackS": state.cancel_holdback_s,
            "pageUrl": state.page_url,
            "faults": {name: w.to_dict() for name, w in state.faults.items()},
            "freeSlots": sum(len(u) for u in state.free.values()),
            "processes": len(state.processes),
            "mails": len(state.mailbox),
            "requests": len(state.request_log),
            "scenario": state.scenario.scenario.name if state.scenario else None,
        }


@router.post("/reset")
def reset(request: Request) -> dict[str, Any]:
    """Forget slots, appointments, mails, the request log, faults, counters and the scenario."""
    _state(request).reset()
    return {"ok": True}


# --- clock -------------------------------------------------------------------------------------
class ClockChange(BaseModel):
    advance_s: float | None = None
    set: datetime | None = None
    freeze: bool | None = None
    real: bool = False
    """Back to real time, running."""


@router.get("/clock")
def get_clock(request: Request) -> dict[str, Any]:
    state = _state(request)
    now = state.now()
    return {
        "now": now.isoformat(),
        "nowLocal": _local(now),
        "timestamp": now.timestamp(),
        "frozen": state.clock.frozen,
    }


@router.post("/clock")
def change_clock(request: Request, change: ClockChange) -> dict[str, Any]:
    """Freeze/unfreeze, jump, or advance the clock; due scenario events fire before the answer."""
    state = _state(request)
    clock = state.clock
    if change.real:
        clock.reset()
    if change.set is not None:
        if change.set.tzinfo is None:
            change = change.model_copy(update={"set": change.set.replace(tzinfo=BERLIN)})
        assert change.set is not None
        clock.set(change.set)
    if change.freeze is True:
        clock.freeze()
    elif change.freeze is False:
        clock.unfreeze()
    if change.advance_s:
        clock.advance(change.advance_s)
    state.tick()
    return get_clock(request)


# --- slots -------------------------------------------------------------------------------------
class SlotChange(BaseModel):
    office: int
    timestamps: list[int] | None = None
    date: str | None = None
    """Berlin date, with ``times`` or ``time`` + ``count`` + ``step_min``."""
    times: list[str] | None = None
    time: str | None = None
    count: int = Field(default=1, ge=1, le=500)
    step_min: int = Field(default=UNIT_S // 60, ge=1)
    services: list[int] | None = None
    """Only these services fit the slots; omitted = any service the office offers."""


def _timestamps(change: SlotChange) -> list[int] | None:
    if change.timestamps is not None:
        return change.timestamps
    day = _day(change.date)
    if day is None:
        return None
    stamps: list[int] = []
    if change.times:
        for text in change.times:
            hour, minute = (int(p) for p in text.split(":")[:2])
            stamps.append(berlin_ts(day, hour, minute))
    elif change.time:
        hour, minute = (int(p) for p in change.time.split(":")[:2])
        first = berlin_ts(day, hour, minute)
        stamps += [first + i * change.step_min * 60 for i in range(change.count)]
    else:
        return None
    return stamps


@router.get("/slots")
def list_slots(
    request: Request, office: int | None = None, date: str | None = Query(default=None)
) -> list[dict[str, Any]]:
    state = _state(request)
    state.tick()
    return state.slot_list(office, _day(date))


@router.post("/slots")
def add_slots(request: Request, change: SlotChange) -> dict[str, Any]:
    """Release slots: explicit epoch timestamps, or a Berlin date with times."""
    stamps = _timestamps(change)
    if not stamps:
        raise HTTPException(400, "give timestamps, or date with times / time (+count, step_min)")
    state = _state(request)
    if state.catalog.public_office(change.office) is None:
        raise HTTPException(400, f"unknown or non-public office {change.office}")
    added = state.add_slots(change.office, stamps, change.services)
    return {"added": added}


class SlotRemoval(BaseModel):
    office: int | None = None
    timestamps: list[int] | None = None
    date: str | None = None
    times: list[str] | None = None
    time: str | None = None
    count: int = 1
    step_min: int = UNIT_S // 60


@router.post("/slots/remove")
def remove_slots(request: Request, removal: SlotRemoval) -> dict[str, Any]:
    """Free slots vanish (as when someone else books them); no filter removes every free slot."""
    stamps = None
    day = _day(removal.date)
    if removal.timestamps is not None or removal.times or removal.time:
        stamps = _timestamps(SlotChange(**{**removal.model_dump(), "office": removal.office or 0}))
        day = None
    removed = _state(request).remove_slots(removal.office, stamps, day)
    return {"removed": [{"officeId": o, "timestamp": t} for o, t in removed]}


class Take(BaseModel):
    office: int
    timestamp: int
    units: int = 1


@router.post("/slots/take")
def take_slot(request: Request, take: Take) -> dict[str, Any]:
    """A competing booker takes a slot (only if all its units are still free)."""
    return {"taken": _state(request).take(take.office, take.timestamp, take.units)}


# --- faults and modes --------------------------------------------------------------------------
class FaultChange(BaseModel):
    rate_limit: int | None = Field(default=None, ge=1)
    storm_s: float | None = None
    maintenance: bool | None = None
    maintenance_s: float | None = None
    slow_ms: int | None = None
    slow_s: float | None = None
    error_500_s: float | None = None
    garbage_s: float | None = None
    endpoints: list[str] | None = None
    """Limit the faults set in this call to these endpoint names (e.g. available-calendar)."""
    layout_variant: str | None = None
    renamed_fields: dict[str, str] | None = None
    """Rename top-level answer fields (e.g. {"availableDays": "days"}) of the ``endpoints`` named
    in the same call (default: available-calendar); {} puts every field back."""
    calendar_path: str | None = None
    legacy_api: bool | None = None
    captcha_enabled: bool | None = None
    cancel_holdback_s: float | None = None
    page_url: str | None = None
    clear: list[str] | None = None
    """Fault names to switch off (storm, maintenance, slow, error_500, garbage) or ["all"]."""


def _window(seconds: float | None) -> float | None:
    """0 or less means "until cleared"."""
    return seconds if seconds is not None and seconds > 0 else None


@router.post("/faults")
def set_faults(request: Request, change: FaultChange) -> dict[str, Any]:
    state = _state(request)
    eps = change.endpoints
    with state.lock:
        for name in change.clear or []:
            state.clear_fault(None if name == "all" else name)
        if change.rate_limit is not None:
            state.ratelimiter.limit = change.rate_limit
        if change.storm_s is not None:
            state.set_fault("storm", duration_s=_window(change.storm_s), endpoints=eps)
        if change.maintenance is True or change.maintenance_s is not None:
            state.set_fault("maintenance", duration_s=_window(change.maintenance_s), endpoints=eps)
        elif change.maintenance is False:
            state.clear_fault("maintenance")
        if change.slow_ms is not None:
            if change.slow_ms > 0:
                state.set_fault(
                    "slow", duration_s=_window(change.slow_s), endpoints=eps, value=change.slow_ms
                )
            else:
                state.clear_fault("slow")
        if change.error_500_s is not None:
            state.set_fault("error_500", duration_s=_window(change.error_500_s), endpoints=eps)
        if change.garbage_s is not None:
            state.set_fault("garbage", duration_s=_window(change.garbage_s), endpoints=eps)
        if change.layout_variant is not None:
            state.layout_variant = change.layout_variant
        if change.renamed_fields is not None:
            if change.renamed_fields:
                for name in eps or ["available-calendar"]:
                    state.renamed_fields[name] = dict(change.renamed_fields)
            else:
                state.renamed_fields.clear()
        if change.calendar_path is not None:
            state.calendar_path = change.calendar_path.strip("/") or "available-calendar"
        if change.legacy_api is not None:
            state.legacy_api = change.legacy_api
        if change.captcha_enabled is not None:
            state.captcha_enabled = change.captcha_enabled
        if change.cancel_holdback_s is not None:
            state.cancel_holdback_s = change.cancel_holdback_s
        if change.page_url is not None:
            state.page_url = change.page_url
    return get_state(request)


@router.get("/faults")
def get_faults(request: Request) -> dict[str, Any]:
    state = _state(request)
    return {name: w.to_dict() for name in FAULT_NAMES if (w := state.fault(name)) is not None}


@router.post("/ratelimit/reset")
def reset_rate_limit(request: Request) -> dict[str, Any]:
    _state(request).ratelimiter.reset()
    return {"ok": True}


@router.get("/ratelimit")
def get_rate_limit(request: Request) -> dict[str, Any]:
    state = _state(request)
    return {"limit": state.ratelimiter.limit, "clients": state.ratelimiter.snapshot()}


# --- scenarios ---------------------------------------------------------------------------------
class ScenarioLoad(BaseModel):
    name: str | None = None
    """A shipped scenario's name or a path to a YAML file."""
    yaml: str | None = None
    start: datetime | None = None
    """Override the scenario's start."""


@router.post("/scenario")
def load_scenario(request: Request, load: ScenarioLoad) -> dict[str, Any]:
    state = _state(request)
    try:
        if load.yaml is not None:
            source: str | Scenario = Scenario.from_yaml(load.yaml, load.name or "inline")
        elif load.name:
            source = load.name
        else:
            raise HTTPException(400, "give name or yaml")
        start = load.start.replace(tzinfo=BERLIN) if load.start and load.start.tzinfo is None else load.start
        runner = load_into(state, source, start=start)
    except ScenarioError as exc:
        raise HTTPException(400, str(exc)) from None
    return runner.status()


@router.get("/scenario")
def scenario_status(request: Request) -> dict[str, Any]:
    state = _state(request)
    state.tick()
    return {
        "shipped": shipped_scenarios(),
        "running": state.scenario.status() if state.scenario else None,
    }


@router.delete("/scenario")
def stop_scenario(request: Request) -> dict[str, Any]:
    _state(request).scenario = None
    return {"ok": True}


# --- appointments, mail, request log -----------------------------------------------------------
@router.get("/processes")
def list_processes(request: Request) -> list[dict[str, Any]]:
    state = _state(request)
    state.tick()
    with state.lock:
        return [p.summary() for p in state.processes.values()]


@router.get("/mail", response_model=None)
def read_mail(
    request: Request, format: str = "json", to: str | None = None, kind: str | None = None
) -> list[dict[str, Any]] | HTMLResponse:
    """The mailbox; ``?format=html`` renders it for a person with clickable links."""
    state = _state(request)
    with state.lock:
        mails = [m for m in state.mailbox if (to is None or m.to == to) and (kind is None or m.kind == kind)]
    if format != "html":
        return [m.to_dict() for m in mails]
    rows = "".join(
        f"<article><h2>{html.escape(m.subject)}</h2>"
        f"<p class=meta>#{m.id} · {html.escape(_local(m.sent_at))} · an {html.escape(m.to)} · {m.kind}</p>"
        f"{m.html()}</article>"
        for m in reversed(mails)
    )
    page = (
        "<!doctype html><html lang=de><head><meta charset=utf-8><title>Replica mailbox</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:auto}article{border-bottom:1px solid #ccc;"
        "padding:1em 0}.meta{color:#666;font-size:90%}</style></head><body>"
        f"<h1>Replica mailbox ({len(mails)})</h1>{rows or '<p>Keine E-Mails.</p>'}</body></html>"
    )
    return HTMLResponse(page)


@router.delete("/mail")
def clear_mail(request: Request) -> dict[str, Any]:
    state = _state(request)
    with state.lock:
        state.mailbox.clear()
    return {"ok": True}


@router.get("/requests")
def read_requests(
    request: Request,
    since: datetime | None = None,
    path: str | None = None,
    client_ip: str | None = None,
    limit: int = Query(default=1000, ge=1, le=200_000),
) -> dict[str, Any]:
    """The request log (newest last) with per-client-IP, per-path and per-status counts."""
    state = _state(request)
    records = [
        r
        for r in list(state.request_log)
        if (since is None or r.time >= since)
        and (path is None or path in r.path)
        and (client_ip is None or r.client_ip == client_ip)
    ]
    return {"stats": state.request_stats(since), "requests": [r.to_dict() for r in records[-limit:]]}


@router.get("/requests/stats")
def request_stats(request: Request, since: datetime | None = None) -> dict[str, Any]:
    return _state(request).request_stats(since)


@router.delete("/requests")
def clear_requests(request: Request) -> dict[str, Any]:
    _state(request).request_log.clear()
    return {"ok": True}


@router.get("/events")
def slot_events(request: Request, since: datetime | None = None) -> list[dict[str, Any]]:
    """What happened to slots (released, taken, reserved, expired ...), oldest first."""
    state = _state(request)
    state.tick()
    with state.lock:
        events = list(state.events)
    if since is not None:
        events = [e for e in events if datetime.fromisoformat(e["at"]) >= since]
    return events


@router.post("/advance")
def advance(request: Request, seconds: str = Query(..., description="e.g. 30, 90s, 5m")) -> dict[str, Any]:
    """Shorthand for POST /clock {advance_s}: accepts durations like 5m."""
    try:
        amount = parse_duration_s(seconds)
    except ScenarioError as exc:
        raise HTTPException(400, str(exc)) from None
    return change_clock(request, ClockChange(advance_s=amount))
