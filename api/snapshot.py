"""Answers prepared once per refresh and handed to every client as ready bytes.

Under a thousand clients the status service must not compute the same answer once per request:
each public read (the dashboard page, ``/api/v1/status``, ``/targets``, ``/slots?…``) is built by
one builder per key at a time, serialised once (orjson) with its ETag, and reused for the refresh
interval (counted from the end of its build); a large one is gzipped once too, for the clients
that accept it (browsers, httpx: the dashboard page shrinks 20-fold). When an answer expires, the
first request starts its one rebuild; requests meanwhile still get the previous answer, up to two
intervals after it was built, so no client queues behind a rebuild (later than that, they wait for
the new one). Keys are bounded (least recently used dropped), so query-parameter variants cannot
grow the store without limit. Each server process holds its own.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from pydantic import TypeAdapter

from shared.logging import get_logger

log = get_logger("mta.api.snapshot")

MAX_KEYS = 512
"""Distinct answers kept per process (parameter variants of the lists included)."""
JSON = "application/json"
GZIP_MIN_BYTES = 1024
"""Smaller answers go as they are: compressing them saves less than the header costs."""


@dataclass(frozen=True)
class ReadyAnswer:
    """One prepared answer: the body as sent, its ETag, and when its data was read (loop time);
    ``gzipped`` the same body gzip-encoded (``None`` for small ones), ``gzip_etag`` its own tag;
    ``ready_at_s`` when its build finished (its reuse is counted from there)."""

    body: bytes
    media_type: str
    etag: str
    read_at_s: float
    status_code: int = 200
    gzipped: bytes | None = None
    gzip_etag: str = ""
    ready_at_s: float = float("-inf")


def answer(body: bytes, media_type: str, *, read_at_s: float, status_code: int = 200) -> ReadyAnswer:
    """``body`` with a strong ETag naming exactly these bytes, and gzipped once when it is large."""
    tag = hashlib.blake2b(body, digest_size=12).hexdigest()
    if len(body) < GZIP_MIN_BYTES:
        return ReadyAnswer(body, media_type, f'"{tag}"', read_at_s, status_code)
    # mtime=0: the same body always compresses to the same bytes (one ETag per content)
    gzipped = gzip.compress(body, compresslevel=6, mtime=0)
    return ReadyAnswer(body, media_type, f'"{tag}"', read_at_s, status_code, gzipped, f'"{tag}-gz"')


def json_body(adapter: TypeAdapter[Any], value: Any) -> bytes:
    """``value`` as the endpoint's response model says (validated, JSON mode, by alias), via orjson."""
    return orjson.dumps(adapter.dump_python(adapter.validate_python(value), mode="json", by_alias=True))


@dataclass
class AnswerCache:
    """Ready answers by key, one build per key at a time (see the module docstring)."""

    max_keys: int = MAX_KEYS
    _answers: OrderedDict[str, ReadyAnswer] = field(default_factory=OrderedDict)
    _building: dict[str, asyncio.Task[ReadyAnswer]] = field(default_factory=dict)
    _aliases: OrderedDict[str, str] = field(default_factory=OrderedDict)
    _builders: dict[str, Callable[[float], Awaitable[ReadyAnswer]]] = field(default_factory=dict)
    """Each key's last build, so the fast path can start a rebuild itself (``ready_for``)."""
    _generation: int = 0
    builds: int = 0
    """Builds started in this process (tests and the bench read it)."""

    async def get(
        self,
        key: str,
        build: Callable[[float], Awaitable[ReadyAnswer]],
        *,
        max_age_s: float,
        serve_stale: bool = True,
    ) -> ReadyAnswer:
        """The answer for ``key``: reused while younger than ``max_age_s``; else rebuilt once by
        ``build(read_at_s)``. Ages count from a build's end. ``serve_stale``: the expired answer
        serves while its rebuild runs, up to ``2 * max_age_s`` after it was built."""
        now = asyncio.get_running_loop().time()
        self._builders[key] = build
        if len(self._builders) > 2 * self.max_keys:  # builds that never produced an answer
            self._builders = {k: b for k, b in self._builders.items() if k in self._answers or k == key}
        ready = self._answers.get(key)
        if ready is not None:
            self._answers.move_to_end(key)
            age_s = now - ready.ready_at_s
            if age_s < max_age_s:
                return ready
            task = self._building.get(key) or self._start(key, build, now)
            if serve_stale and age_s < 2 * max_age_s:
                return ready
            return await asyncio.shield(task)
        task = self._building.get(key) or self._start(key, build, now)
        return await asyncio.shield(task)

    def remember(self, request_line: str, key: str) -> None:
        """``request_line`` (path and raw query, as validated by the endpoint) names ``key``'s answer."""
        if self._aliases.get(request_line) != key:
            self._aliases[request_line] = key
            while len(self._aliases) > 2 * self.max_keys:
                self._aliases.popitem(last=False)

    def ready_for(self, request_line: str, max_age_s: float) -> ReadyAnswer | None:
        """The answer a remembered ``request_line`` gets now without waiting: fresh, or expired
        less than an interval ago (its rebuild then starts here, with the key's last build, as
        ``get`` would); else ``None`` (ask the endpoint). Under a crowd a whole batch of requests
        arrives before any reaches its endpoint: starting the rebuild here keeps them all off it."""
        key = self._aliases.get(request_line)
        ready = self._answers.get(key) if key is not None else None
        if key is None or ready is None:
            return None
        now = asyncio.get_running_loop().time()
        age_s = now - ready.ready_at_s
        if age_s < max_age_s:
            return ready
        build = self._builders.get(key)
        if age_s >= 2 * max_age_s or build is None:
            return None
        if key not in self._building:
            self._start(key, build, now)
        return ready

    def clear(self) -> None:
        """Forget every answer (state was changed through this process): the next request rebuilds,
        and builds already running cannot put back what they read before the change."""
        self._generation += 1
        self._answers.clear()
        self._building.clear()
        self._builders.clear()

    def _start(
        self, key: str, build: Callable[[float], Awaitable[ReadyAnswer]], now: float
    ) -> asyncio.Task[ReadyAnswer]:
        generation = self._generation
        self.builds += 1

        async def run() -> ReadyAnswer:
            try:
                # reuse counts from the build's end: under a load that makes builds slow, answers
                # grow older instead of every request queueing for a build that is stale when done
                ready = replace(await build(now), ready_at_s=asyncio.get_running_loop().time())
            finally:
                if self._building.get(key) is task:
                    del self._building[key]
            if generation == self._generation:
                self._answers[key] = ready
                self._answers.move_to_end(key)
                while len(self._answers) > self.max_keys:
                    dropped, _ = self._answers.popitem(last=False)
                    self._builders.pop(dropped, None)
            return ready

        task = asyncio.create_task(run(), name=f"answer:{key}")
        task.add_done_callback(_log_failure)
        self._building[key] = task
        return task


def _log_failure(task: asyncio.Task[ReadyAnswer]) -> None:
    """A rebuild nobody awaited (stale answers served meanwhile) must not fail silently."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("answer_build_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}"[:300])


__all__ = ["GZIP_MIN_BYTES", "JSON", "MAX_KEYS", "AnswerCache", "ReadyAnswer", "answer", "json_body"]
