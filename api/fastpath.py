"""Ready answers sent before any routing: the cheapest path for the reads a crowd repeats.

Routing, dependency injection and query validation cost more per request than sending a prepared
answer. Once an endpoint has validated a request line (path and raw query string) and prepared its
answer (``api.etag.send_ready``), later GETs of the same line are answered here from that answer
while it is fresh: same bytes, same headers, same ETag/304 and gzip handling. Anything else (a
new line, an expired answer, a write) goes on to the app as before. The answer goes out as two
ASGI messages, without a Request or a Response object. ``/healthz`` is answered here too: a
liveness probe (and the benchmark's yardstick) needs neither routing nor the app's state.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.etag import request_line, send_raw
from api.snapshot import JSON, answer

HEALTHZ_PATH = "/healthz"
HEALTHY = answer(b'{"status":"ok"}', JSON, read_at_s=0.0)
"""``/healthz``'s answer (the route in ``api.app`` documents it and answers the same)."""


class ServeReadyAnswers:
    """ASGI middleware: a GET whose line has a fresh ready answer in ``app.state.mta.answers`` gets it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            if scope["path"] == HEALTHZ_PATH:
                await send_raw(scope, send_, HEALTHY)
                return
            state: Any = getattr(getattr(scope.get("app"), "state", None), "mta", None)
            if state is not None:
                ready = state.answers.ready_for(request_line(scope), state.feed.interval_s)
                if ready is not None:
                    await send_raw(scope, send_, ready)
                    return
        await self.app(scope, receive, send_)


__all__ = ["HEALTHY", "HEALTHZ_PATH", "ServeReadyAnswers"]
