"""The citizen API (zmscitizenapi) under ``/buergeransicht/api/citizen/``.

One dispatcher owns every path under the prefix, so the city's behaviour can be copied exactly:
the middleware order (maintenance 503 first, then security headers, then the rate limit), the
catch-all 404 ``notFound`` for unknown and slash-less paths, 405 ``requestMethodNotAllowed`` for a
known path with the wrong method, bare JSON bodies, and error bodies whose HTTP status is the highest
``statusCode``. Legacy mode (``legacy_api``) serves the <= muc45 route set instead: slash-less
duplicates and the four old availability endpoints, without ``available-calendar``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import format_datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from replica import captcha as captcha_module
from replica.calendar import build_calendar
from replica.config import API_PREFIX, PAGE_PATH
from replica.errors import ApiError
from replica.ratelimit import client_ip
from replica.state import Process, ReplicaState

MAX_SERVICE_COUNT = 25
MAX_RANGE_DAYS = 365
INT32_MAX = 2**31 - 1
EMAIL_RE = re.compile(r"^(?!.*\.\.)(?!\.)(?!.*\.$)[^\s@+]+(?<!\.)@(?!\.)[^\s@+]+\.[^\s@]{2,}$")
PHONE_RE = re.compile(r"^\+?[0-9]\d{6,14}$")
AUTH_KEY_RE = re.compile(r"^(?:[0-9a-fA-F]{4}|[0-9a-fA-F]{64})$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CUSTOM_TEXT_MAX = 250

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; object-src 'none'",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "geolocation=(), microphone=(), camera=()",
    "X-XSS-Protection": "1; mode=block",
}
JSON_TYPE = "application/json; charset=utf-8"
GARBAGE_BODY = b'{"availableDays":[{"date":"2026-1'

Handler = Callable[["Call"], Awaitable[Any]]


@dataclass
class Call:
    """One API request as the handlers see it."""

    request: Request
    state: ReplicaState
    ip: str

    def query(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        return value if value is None else value.strip()

    async def body(self) -> dict[str, Any]:
        raw = await self.request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError("invalidRequest") from None
        if not isinstance(data, dict):
            raise ApiError("invalidRequest")
        return data

    def page_url(self) -> str:
        if self.state.page_url:
            return self.state.page_url
        return str(self.request.base_url).rstrip("/") + PAGE_PATH


# --- parsing helpers ---------------------------------------------------------------------------
def parse_date(value: object) -> date | None:
    if not isinstance(value, str) or not DATE_RE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_csv_ints(value: str | None) -> list[int] | None:
    """CSV of positive 32-bit integers; None when missing or malformed."""
    if value is None or value == "":
        return None
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() for p in parts):
        return None
    numbers = [int(p) for p in parts]
    if any(n <= 0 or n > INT32_MAX for n in numbers):
        return None
    return numbers


def as_int(value: object) -> int | None:
    """An integer from JSON (int, or a numeric string, as PHP's is_numeric allows)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def as_int_list(value: object) -> list[int] | None:
    if isinstance(value, int | str) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        return None
    numbers = [as_int(v) for v in value]
    if any(n is None for n in numbers):
        return None
    return [n for n in numbers if n is not None]


def _service_errors(service_ids: list[int] | None, counts: list[int] | None) -> list[str]:
    errors: list[str] = []
    if service_ids is None or any(s <= 0 or s > INT32_MAX for s in service_ids):
        errors.append("invalidServiceId")
    if counts is None or any(c < 1 or c > MAX_SERVICE_COUNT for c in counts):
        errors.append("invalidServiceCount")
    if service_ids is not None and counts is not None:
        if not service_ids or not counts:
            errors.append("emptyServiceArrays")
        elif len(service_ids) != len(counts):
            errors.append("mismatchedArrays")
    return errors


def _check_combination(state: ReplicaState, office_ids: list[int], service_ids: list[int]) -> None:
    for oid in office_ids:
        if state.catalog.public_office(oid) is None or not all(
            state.catalog.offers(oid, s) for s in service_ids
        ):
            raise ApiError("invalidLocationAndServiceCombination")


def _check_captcha(call: Call, office_ids: list[int], token: object) -> None:
    if call.state.catalog.requires_captcha(office_ids):
        call.state.captcha.check_token(token, call.ip)


# --- payloads ----------------------------------------------------------------------------------
def thinned_process(
    state: ReplicaState, process: Process, captcha_token: str | None = None
) -> dict[str, Any]:
    """The ThinnedProcess body (spec §2.5): ``timestamp`` a string, ``officeId`` an int."""
    catalog = state.catalog
    office = catalog.offices[process.office_id]
    main_id = process.service_ids[0]
    main = catalog.services.get(main_id)
    return {
        "processId": process.process_id,
        "timestamp": str(process.timestamp),
        "authKey": process.auth_key,
        "familyName": process.family_name or None,
        "customTextfield": process.custom_textfield or None,
        "customTextfield2": process.custom_textfield2 or None,
        "email": process.email,
        "telephone": process.telephone or None,
        "officeName": office.name,
        "officeId": office.id,
        "scope": catalog.thinned_scope(office.id),
        "subRequestCounts": [
            {"id": sid, "name": catalog.services[sid].name if sid in catalog.services else "", "count": count}
            for sid, count in zip(process.service_ids[1:], process.service_counts[1:], strict=False)
        ],
        "serviceId": main_id,
        "serviceName": main.name if main else "",
        "serviceCount": process.service_counts[0],
        "status": process.status.value,
        "captchaToken": captcha_token,
        "slotCount": len(process.units),
        "displayNumber": process.display_number,
        "icsContent": process.ics,
    }


# --- handlers: catalogue and captcha -----------------------------------------------------------
async def offices_and_services(call: Call) -> Any:
    return call.state.catalog.payload()


async def captcha_details(call: Call) -> Any:
    return captcha_module.details(call.state.captcha_enabled, str(call.request.base_url))


async def captcha_challenge(call: Call) -> Any:
    return call.state.captcha.challenge()


async def captcha_verify(call: Call) -> Any:
    try:
        body = await call.body()
    except ApiError:
        body = {}
    return call.state.captcha.verify(body.get("payload"), call.ip)


# --- handlers: availability --------------------------------------------------------------------
async def available_calendar(call: Call) -> Any:
    errors: list[str] = []
    start = parse_date(call.query("startDate"))
    end = parse_date(call.query("endDate"))
    if start is None:
        errors.append("invalidStartDate")
    if end is None:
        errors.append("invalidEndDate")
    if start is not None and end is not None:
        if start > end:
            errors.append("startDateAfterEndDate")
        elif (end - start).days > MAX_RANGE_DAYS:
            errors.append("dateRangeTooLarge")
    office_ids = parse_csv_ints(call.query("officeIds"))
    if office_ids is None:
        errors.append("invalidOfficeId")
    service_ids = parse_csv_ints(call.query("serviceIds"))
    counts = _csv_counts(call.query("serviceCounts"))
    errors += _service_errors(service_ids, counts)
    slots_start_raw, slots_end_raw = call.query("slotsStartDate"), call.query("slotsEndDate")
    slots_start = parse_date(slots_start_raw) if slots_start_raw else None
    slots_end = parse_date(slots_end_raw) if slots_end_raw else None
    if slots_start_raw and slots_start is None:
        errors.append("invalidSlotsStartDate")
    if slots_end_raw and slots_end is None:
        errors.append("invalidSlotsEndDate")
    if slots_start and slots_end and slots_start > slots_end:
        errors.append("slotsStartDateAfterEndDate")
    if errors:
        raise ApiError(*errors)
    assert start and end and office_ids and service_ids and counts
    _check_combination(call.state, office_ids, service_ids)
    _check_captcha(call, office_ids, call.query("captchaToken"))
    availability = call.state.availability(office_ids, service_ids, counts)
    return build_calendar(
        availability, office_ids, start, end, slots_start, slots_end, call.state.catalog.shared_group
    )


def _csv_counts(value: str | None) -> list[int] | None:
    if value is None or value == "":
        return None
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


def _legacy_params(call: Call) -> tuple[list[int], list[int], list[int]]:
    errors: list[str] = []
    office_ids = parse_csv_ints(call.query("officeId"))
    if office_ids is None:
        errors.append("invalidOfficeId")
    service_ids = parse_csv_ints(call.query("serviceId"))
    counts = _csv_counts(call.query("serviceCount"))
    errors += _service_errors(service_ids, counts)
    if errors:
        raise ApiError(*errors)
    assert office_ids and service_ids and counts
    return office_ids, service_ids, counts


def _legacy_days(call: Call) -> tuple[list[int], dict[date, dict[int, list[int]]]]:
    errors: list[str] = []
    start = parse_date(call.query("startDate"))
    end = parse_date(call.query("endDate"))
    if start is None:
        errors.append("invalidStartDate")
    if end is None:
        errors.append("invalidEndDate")
    if start and end and start > end:
        errors.append("startDateAfterEndDate")
    try:
        office_ids, service_ids, counts = _legacy_params(call)
    except ApiError as exc:
        errors += exc.keys
    if errors:
        raise ApiError(*errors)
    assert start and end
    _check_combination(call.state, office_ids, service_ids)
    _check_captcha(call, office_ids, call.query("captchaToken"))
    availability = call.state.availability(office_ids, service_ids, counts)
    days = {d: o for d, o in availability.items() if start <= d <= end and any(o.values())}
    if not days:
        raise ApiError("noAppointmentForThisDay")
    return office_ids, dict(sorted(days.items()))


async def available_days_by_office(call: Call) -> Any:
    order, days = _legacy_days(call)
    rank = {oid: i for i, oid in enumerate(order)}

    def ids(offices: dict[int, list[int]]) -> str:
        return ",".join(str(o) for o in sorted(offices, key=lambda o: rank.get(o, 0)))

    return {"availableDays": [{"time": d.isoformat(), "providerIDs": ids(o)} for d, o in days.items()]}


async def available_days(call: Call) -> Any:
    _order, days = _legacy_days(call)
    return {"availableDays": [d.isoformat() for d in days]}


def _legacy_appointments(call: Call) -> dict[int, list[int]]:
    errors: list[str] = []
    day = parse_date(call.query("date"))
    if day is None:
        errors.append("invalidDate")
    try:
        office_ids, service_ids, counts = _legacy_params(call)
    except ApiError as exc:
        errors += exc.keys
    if errors:
        raise ApiError(*errors)
    assert day
    _check_combination(call.state, office_ids, service_ids)
    _check_captcha(call, office_ids, call.query("captchaToken"))
    offices = call.state.availability(office_ids, service_ids, counts).get(day, {})
    result = {oid: offices[oid] for oid in dict.fromkeys(office_ids) if offices.get(oid)}
    if not result:
        raise ApiError("appointmentNotAvailable")
    return result


async def available_appointments_by_office(call: Call) -> Any:
    offices = _legacy_appointments(call)
    return {"offices": [{"officeId": oid, "appointments": times} for oid, times in offices.items()]}


async def available_appointments(call: Call) -> Any:
    offices = _legacy_appointments(call)
    return {"appointmentTimestamps": sorted({ts for times in offices.values() for ts in times})}


async def legacy_services(call: Call) -> Any:
    return {"services": call.state.catalog.payload()["services"]}


async def legacy_offices(call: Call) -> Any:
    return {"offices": call.state.catalog.payload()["offices"]}


async def legacy_scopes(call: Call) -> Any:
    offices = call.state.catalog.payload()["offices"]
    return {"scopes": [o["scope"] for o in offices if o["scope"] is not None]}


async def legacy_scope_by_id(call: Call) -> Any:
    scope_id = parse_csv_ints(call.query("scopeId"))
    if scope_id is None or len(scope_id) != 1:
        raise ApiError("invalidScopeId")
    for office in call.state.catalog.payload()["offices"]:
        if office["scope"]["id"] == scope_id[0]:
            return office["scope"]
    raise ApiError("scopeNotFound")


async def legacy_services_by_office(call: Call) -> Any:
    office_ids = parse_csv_ints(call.query("officeId"))
    if office_ids is None:
        raise ApiError("invalidOfficeId")
    catalog = call.state.catalog
    services = [
        s for s in catalog.payload()["services"] if any(catalog.offers(o, s["id"]) for o in office_ids)
    ]
    if not services:
        raise ApiError("requestNotFound")
    return {"services": services}


async def legacy_offices_by_service(call: Call) -> Any:
    service_ids = parse_csv_ints(call.query("serviceId"))
    if service_ids is None:
        raise ApiError("invalidServiceId")
    catalog = call.state.catalog
    offices = [
        o for o in catalog.payload()["offices"] if any(catalog.offers(o["id"], s) for s in service_ids)
    ]
    if not offices:
        raise ApiError("providerNotFound")
    return {"offices": offices}


# --- handlers: booking -------------------------------------------------------------------------
async def reserve_appointment(call: Call) -> Any:
    body = await call.body()
    errors: list[str] = []
    office_id = as_int(body.get("officeId"))
    if office_id is None or office_id <= 0 or office_id > INT32_MAX:
        errors.append("invalidOfficeId")
    service_ids = as_int_list(body.get("serviceId"))
    counts = as_int_list(body.get("serviceCount"))
    errors += _service_errors(service_ids, counts)
    timestamp = as_int(body.get("timestamp"))
    if timestamp is None or timestamp <= call.state.clock.timestamp():
        errors.append("invalidTimestamp")
    if errors:
        raise ApiError(*errors)
    assert office_id and service_ids and counts and timestamp
    if call.state.catalog.public_office(office_id) is not None:
        _check_captcha(call, [office_id], body.get("captchaToken"))
    _check_combination(call.state, [office_id], service_ids)
    process = call.state.reserve(office_id, service_ids, counts, timestamp, call.ip)
    return thinned_process(call.state, process)


def _credentials(data: dict[str, Any]) -> tuple[int, str]:
    errors: list[str] = []
    process_id = as_int(data.get("processId"))
    if process_id is None or process_id <= 0 or process_id > INT32_MAX:
        errors.append("invalidProcessId")
    auth_key = data.get("authKey")
    if not isinstance(auth_key, str) or not AUTH_KEY_RE.match(auth_key):
        errors.append("invalidAuthKey")
    if errors:
        raise ApiError(*errors)
    assert process_id is not None and isinstance(auth_key, str)
    return process_id, auth_key


def _text(value: object) -> str | None:
    """A string field after normalisation; None when it is not a string (or null)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return None
    return " ".join(value.split())


async def update_appointment(call: Call) -> Any:
    body = await call.body()
    errors: list[str] = []
    try:
        process_id, auth_key = _credentials(body)
    except ApiError as exc:
        errors += exc.keys
    family_name = _text(body.get("familyName"))
    if not family_name:
        errors.append("invalidFamilyName")
    if errors:
        raise ApiError(*errors)
    process = call.state.lookup(process_id, auth_key)
    scope = call.state.catalog.offices[process.office_id].scope
    email = _text(body.get("email"))
    if (
        email is None
        or (scope.email_required and not EMAIL_RE.match(email))
        or (email and not EMAIL_RE.match(email))
    ):
        errors.append("invalidEmail")
    telephone = _text(body.get("telephone"))
    if scope.telephone_activated and (
        telephone is None
        or (telephone and not PHONE_RE.match(telephone))
        or (scope.telephone_required and not telephone)
    ):
        errors.append("invalidTelephone")
    custom1 = _text(body.get("customTextfield"))
    if (
        custom1 is None
        or len(custom1) > CUSTOM_TEXT_MAX
        or (scope.custom1_activated and scope.custom1_required and not custom1)
    ):
        errors.append("invalidCustomTextfield")
    custom2 = _text(body.get("customTextfield2"))
    if (
        custom2 is None
        or len(custom2) > CUSTOM_TEXT_MAX
        or (scope.custom2_activated and scope.custom2_required and not custom2)
    ):
        errors.append("invalidCustomTextfield2")
    if errors:
        raise ApiError(*errors)
    updated = call.state.update(
        process_id,
        auth_key,
        family_name=family_name or "",
        email=email or "",
        telephone=(telephone or "") if scope.telephone_activated else "",
        custom_textfield=(custom1 or "") if scope.custom1_activated else "",
        custom_textfield2=(custom2 or "") if scope.custom2_activated else "",
    )
    return thinned_process(call.state, updated)


async def preconfirm_appointment(call: Call) -> Any:
    process_id, auth_key = _credentials(await call.body())
    process = call.state.preconfirm(process_id, auth_key, call.page_url())
    return thinned_process(call.state, process)


async def confirm_appointment(call: Call) -> Any:
    process_id, auth_key = _credentials(await call.body())
    process = call.state.confirm(process_id, auth_key, call.page_url())
    return thinned_process(call.state, process, call.state.captcha.issue_token(call.ip))


async def cancel_appointment(call: Call) -> Any:
    process_id, auth_key = _credentials(await call.body())
    process = call.state.cancel(process_id, auth_key)
    return thinned_process(call.state, process)


async def appointment(call: Call) -> Any:
    process_id, auth_key = _credentials(
        {"processId": call.query("processId"), "authKey": call.query("authKey")}
    )
    process = call.state.readable(process_id, auth_key)
    return thinned_process(call.state, process, call.state.captcha.issue_token(call.ip))


async def my_appointments(call: Call) -> Any:
    if not call.request.headers.get("authorization"):
        raise ApiError("authenticationRequired")
    raise ApiError("unauthorized")


# --- route table -------------------------------------------------------------------------------
CURRENT_ROUTES: dict[str, tuple[str, Handler]] = {
    "offices-and-services": ("GET", offices_and_services),
    "available-calendar": ("GET", available_calendar),
    "appointment": ("GET", appointment),
    "captcha-details": ("GET", captcha_details),
    "captcha-challenge": ("GET", captcha_challenge),
    "captcha-verify": ("POST", captcha_verify),
    "reserve-appointment": ("POST", reserve_appointment),
    "update-appointment": ("POST", update_appointment),
    "preconfirm-appointment": ("POST", preconfirm_appointment),
    "confirm-appointment": ("POST", confirm_appointment),
    "cancel-appointment": ("POST", cancel_appointment),
    "my-appointments": ("GET", my_appointments),
}
LEGACY_ONLY_ROUTES: dict[str, tuple[str, Handler]] = {
    "services": ("GET", legacy_services),
    "offices": ("GET", legacy_offices),
    "scopes": ("GET", legacy_scopes),
    "scope-by-id": ("GET", legacy_scope_by_id),
    "services-by-office": ("GET", legacy_services_by_office),
    "offices-by-service": ("GET", legacy_offices_by_service),
    "available-days": ("GET", available_days),
    "available-days-by-office": ("GET", available_days_by_office),
    "available-appointments": ("GET", available_appointments),
    "available-appointments-by-office": ("GET", available_appointments_by_office),
}


def route_table(state: ReplicaState) -> dict[str, tuple[str, Handler]]:
    """Endpoint name -> (method, handler) for the current mode and any endpoint rename."""
    if state.legacy_api:
        routes = {k: v for k, v in CURRENT_ROUTES.items() if k != "available-calendar"}
        routes.update(LEGACY_ONLY_ROUTES)
        return routes
    routes = dict(CURRENT_ROUTES)
    if state.calendar_path != "available-calendar":
        routes[state.calendar_path] = routes.pop("available-calendar")
    return routes


def resolve(state: ReplicaState, rest: str) -> str | None:
    """The endpoint name for the path below the prefix, or None (-> notFound)."""
    if rest.endswith("/"):
        name = rest[:-1]
    elif state.legacy_api:
        name = rest
    else:
        return None
    if not name or "/" in name:
        return None
    return name


# --- responses ---------------------------------------------------------------------------------
def _http_date(dt: datetime) -> str:
    return format_datetime(dt, usegmt=True)


def json_response(state: ReplicaState, body: Any, status: int = 200) -> Response:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(
        payload,
        status_code=status,
        media_type=JSON_TYPE,
        headers={
            "Last-Modified": _http_date(state.now()),
            "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
            "Pragma": "no-cache",
            "Expires": "0",
        },
    )


def error_response(state: ReplicaState, error: ApiError) -> Response:
    return json_response(state, error.body(), error.status)


async def dispatch(request: Request) -> Response:
    """Every request under the API prefix: the city's middleware chain, then the route."""
    state: ReplicaState = request.app.state.replica
    state.tick()
    rest = request.url.path[len(API_PREFIX) :].lstrip("/") if request.url.path.startswith(API_PREFIX) else ""
    name = resolve(state, rest)
    endpoint = name or "notFound"

    # 1. maintenance, before anything else
    if state.fault("maintenance", endpoint):
        return error_response(state, ApiError("serviceUnavailable"))
    response = await _rate_limited(request, state, name, endpoint)
    # 2. security headers on everything past maintenance
    response.headers.update(SECURITY_HEADERS)
    return response


async def _rate_limited(request: Request, state: ReplicaState, name: str | None, endpoint: str) -> Response:
    ip = client_ip(request.headers, request.client.host if request.client else None)
    if state.fault("storm", endpoint):
        return error_response(state, ApiError("rateLimitExceeded"))
    decision = state.ratelimiter.hit(ip)
    if not decision.allowed:
        return error_response(state, ApiError("rateLimitExceeded"))
    response = await _route(request, state, name, endpoint, ip)
    response.headers.update(state.ratelimiter.headers(ip))
    return response


async def _route(request: Request, state: ReplicaState, name: str | None, endpoint: str, ip: str) -> Response:
    routes = route_table(state)
    if name is None or name not in routes:
        return error_response(state, ApiError("notFound"))
    method, handler = routes[name]
    if request.method.upper() != method:
        return error_response(state, ApiError("requestMethodNotAllowed"))
    slow = state.fault("slow", endpoint)
    if slow and slow.value > 0:
        await asyncio.sleep(slow.value / 1000)
    if state.fault("error_500", endpoint):
        return error_response(state, ApiError("internalError"))
    if state.fault("garbage", endpoint):
        return Response(GARBAGE_BODY, status_code=200, media_type=JSON_TYPE)
    try:
        body = await handler(Call(request=request, state=state, ip=ip))
    except ApiError as exc:
        return error_response(state, exc)
    renames = state.renamed_fields.get(endpoint)
    if renames and isinstance(body, dict):
        body = {renames.get(key, key): value for key, value in body.items()}
    return json_response(state, body)
