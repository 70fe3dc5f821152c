"""Ready answers sent before any routing: the cheapest path for the reads a crowd repeats.

Routing, dependency injection and query validation cost more per request than sending a prepared
answer. Once an endpoint has validated a request line (path and raw query string) and prepared its
answer (``api.etag.send_ready``), later GETs of the same line are answered here from that answer
while it is fresh: same bytes, same headers, same ETag/304 and gzip handling. Anything else (a
new line, an expired answer, a write) goes on to the app as before.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.etag import request_line, send


class ServeReadyAnswers:
    """ASGI middleware: a GET whose line has a fresh ready answer in ``app.state.mta.answers`` gets it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            state: Any = getattr(getattr(scope.get("app"), "state", None), "mta", None)
            if state is not None:
                ready = state.answers.ready_for(request_line(scope), state.feed.interval_s)
                if ready is not None:
                    await send(Request(scope, receive), ready)(scope, receive, send_)
                    return
        await self.app(scope, receive, send_)


__all__ = ["ServeReadyAnswers"]
