"""A change made through this process shows in its next answer, not only after the next refresh.

Prepared answers (``api.snapshot``) are reused for a refresh interval. An operator who clears a
back-off, retries an alert or stops a site and then reloads must see the change: every request that
is not a read (POST, PUT, PATCH, DELETE) drops this process's prepared answers when its response
starts, i.e. after the endpoint has committed its change, before the client can ask again. Changes
made elsewhere (other processes, the workers) show within a refresh, as always.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READS = frozenset({"GET", "HEAD", "OPTIONS"})


class ForgetAnswersOnWrite:
    """ASGI middleware: clears ``app.state.mta.answers`` when a non-read request's response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS:
            await self.app(scope, receive, send)
            return

        async def send_after_forgetting(message: Message) -> None:
            if message["type"] == "http.response.start":
                _forget(scope)
            await send(message)

        await self.app(scope, receive, send_after_forgetting)


def _forget(scope: Scope) -> None:
    state: Any = getattr(getattr(scope.get("app"), "state", None), "mta", None)
    answers = getattr(state, "answers", None)
    if answers is not None:
        answers.clear()


__all__ = ["READS", "ForgetAnswersOnWrite"]
