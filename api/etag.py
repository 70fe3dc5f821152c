"""Sending a ready answer: 304 Not Modified when the client already holds these bytes (RFC 9110).

Dashboards and scripts that poll send back the ETag they got (``If-None-Match``); an unchanged
answer then costs a few header bytes instead of the body. ``Cache-Control: no-cache`` lets them
keep the body but makes them ask each time, so nobody reads an answer older than the server's.
A client that accepts gzip gets the answer's prepared gzip bytes (with their own ETag).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from api.snapshot import JSON, AnswerCache, ReadyAnswer, answer, json_body

CACHE_CONTROL = "no-cache"


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Does the ``If-None-Match`` header name ``etag`` (weak comparison, as the RFC asks for GET)?"""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Does ``Accept-Encoding`` allow gzip (named or ``*``, and not with ``q=0``)?"""
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower().removeprefix("q=")
            try:
                return not params.strip() or float(q) > 0
            except ValueError:
                return False
    return False


def choose(
    ready: ReadyAnswer, accept_encoding: str | None, if_none_match: str | None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body for ``ready``: gzipped when the client accepts it, or an empty 304
    when ``If-None-Match`` names what it would get."""
    gzipped = ready.gzipped is not None and accepts_gzip(accept_encoding)
    etag = ready.gzip_etag if gzipped else ready.etag
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if ready.gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
    if ready.status_code == 200 and etag_matches(if_none_match, etag):
        return 304, headers, b""
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    body = ready.gzipped if gzipped and ready.gzipped is not None else ready.body
    return ready.status_code, headers, body


def send(request: Request, ready: ReadyAnswer) -> Response:
    """``ready`` as the response (see ``choose``)."""
    status_code, headers, body = choose(
        ready, request.headers.get("accept-encoding"), request.headers.get("if-none-match")
    )
    if status_code == 304:
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status_code, media_type=ready.media_type, headers=headers)


async def send_raw(scope: Scope, send_: Send, ready: ReadyAnswer) -> None:
    """``ready`` sent straight as ASGI messages, the same status, headers and body as ``send``:
    the fast path's way, without building a Request and a Response for every answer."""
    accept_encoding = if_none_match = None
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            accept_encoding = value.decode("latin-1")
        elif name == b"if-none-match":
            if_none_match = value.decode("latin-1")
    status_code, headers, body = choose(ready, accept_encoding, if_none_match)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if status_code != 304:  # as Starlette: a 304 carries neither length nor type
        raw += [(b"content-length", str(len(body)).encode()), (b"content-type", ready.raw_media_type)]
    await send_({"type": "http.response.start", "status": status_code, "headers": raw})
    await send_({"type": "http.response.body", "body": body})


def request_line(scope: Scope) -> str:
    """Path and raw query string: what ``api.fastpath`` looks a ready answer up by."""
    return f"{scope['path']}?{scope['query_string'].decode('latin-1')}"


async def send_ready(
    request: Request,
    cache: AnswerCache,
    key: str,
    build: Callable[[float], Awaitable[ReadyAnswer]],
    *,
    max_age_s: float,
) -> Response:
    """The answer ``key`` from ``cache`` (built when missing or expired), sent (or 304); this
    request's line is remembered, so the next one like it is answered before any routing."""
    ready = await cache.get(key, build, max_age_s=max_age_s)
    cache.remember(request_line(request.scope), key)
    return send(request, ready)


async def send_cached(
    request: Request,
    cache: AnswerCache,
    key: str,
    adapter: TypeAdapter[Any],
    produce: Callable[[], Awaitable[Any]],
    *,
    max_age_s: float,
) -> Response:
    """The JSON answer ``key`` from ``cache``, built from ``produce()`` as ``adapter`` describes it
    when it is missing or expired, then sent (or 304)."""

    def encode(value: Any, read_at_s: float) -> ReadyAnswer:
        return answer(json_body(adapter, value), JSON, read_at_s=read_at_s)

    async def build(read_at_s: float) -> ReadyAnswer:
        # validated, encoded and gzipped in a thread: the event loop keeps sending ready answers
        return await run_in_threadpool(encode, await produce(), read_at_s)

    return await send_ready(request, cache, key, build, max_age_s=max_age_s)


__all__ = [
    "CACHE_CONTROL",
    "accepts_gzip",
    "choose",
    "etag_matches",
    "request_line",
    "send",
    "send_cached",
    "send_raw",
    "send_ready",
]
