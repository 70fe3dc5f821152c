"""Sending a ready answer: 304 Not Modified when the client already holds these bytes (RFC 9110).

Dashboards and scripts that poll send back the ETag they got (``If-None-Match``); an unchanged
answer then costs a few header bytes instead of the body. ``Cache-Control: no-cache`` lets them
keep the body but makes them ask each time, so nobody reads an answer older than the server's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

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


def send(request: Request, ready: ReadyAnswer) -> Response:
    """``ready`` as the response, or an empty 304 when the request's ``If-None-Match`` names it."""
    headers = {"ETag": ready.etag, "Cache-Control": CACHE_CONTROL}
    if ready.status_code == 200 and etag_matches(request.headers.get("if-none-match"), ready.etag):
        return Response(status_code=304, headers=headers)
    return Response(ready.body, status_code=ready.status_code, media_type=ready.media_type, headers=headers)


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

    async def build(read_at_s: float) -> ReadyAnswer:
        return answer(json_body(adapter, await produce()), JSON, read_at_s=read_at_s)

    return send(request, await cache.get(key, build, max_age_s=max_age_s))


__all__ = ["CACHE_CONTROL", "etag_matches", "send", "send_cached"]
