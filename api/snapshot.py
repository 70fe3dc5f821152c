"""Answers prepared once per refresh and handed to every client as ready bytes.

Under a thousand clients the status service must not compute the same answer once per request: each
public read (the dashboard page, ``/api/v1/status``, ``/targets``, ``/slots?…``) is built by one
builder per key at a time, serialised once (orjson) with its ETag, and reused for the refresh
interval (counted from the end of its build); a large one is gzipped once too, for the clients that
accept it (browsers, httpx: the dashboard page shrinks 20-fold). When an answer expires, the first
request starts its one rebuild; requests meanwhile still get the previous answer until the rebuild
is done, so no client queues behind a rebuild, however long a crowd makes it take (a key asked for
again only more than two intervals after its last build waits for the new answer). Keys are bounded
(least recently used dropped), so query-parameter variants cannot grow the store without limit. Each
server process holds its own; with several processes they share each build through ``SharedAnswers``
(``api.answer_folder``): one process builds, the others take its bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson
from pydantic import TypeAdapter

from shared.logging import get_logger

log = get_logger("mta.api.snapshot")

MAX_KEYS = 512
"""Distinct answers kept per process (parameter variants of the lists included)."""
JSON = "application/json"
GZIP_MIN_BYTES = 1024
"""Smaller answers go as they are: compressing them saves less than the header costs."""
STALE_MAX_S = 30.0
"""An expired answer is never handed out longer than this after its build (its rebuild hangs)."""
SHARED_POLL_S = 0.02
"""How often a process waiting for another's build looks for its answer."""
SHARED_WAIT_MAX_S = 30.0
"""A build in another process that takes longer than this (hung) no longer holds this one back."""


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

    @property
    def raw_media_type(self) -> bytes:
        """The Content-Type header's value as Starlette would send it (text types name a charset)."""
        if self.media_type.startswith("text/") and "charset=" not in self.media_type.lower():
            return f"{self.media_type}; charset=utf-8".encode("latin-1")
        return self.media_type.encode("latin-1")


class SharedAnswers(Protocol):
    """Ready answers shared with the other server processes, and who builds which (one at a time)."""

    def load(self, key: str) -> ReadyAnswer | None: ...

    def store(self, key: str, ready: ReadyAnswer) -> None: ...

    def lock(self, key: str) -> AbstractContextManager[bool]:
        """True inside while this process is ``key``'s one builder; False when another one is."""
        ...


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
    _started_at_s: dict[str, float] = field(default_factory=dict)
    """When each running rebuild started (loop time)."""
    _aliases: OrderedDict[str, str] = field(default_factory=OrderedDict)
    _builders: dict[str, Callable[[float], Awaitable[ReadyAnswer]]] = field(default_factory=dict)
    """Each key's last build, so the fast path can start a rebuild itself (``ready_for``)."""
    shared: SharedAnswers | None = None
    """Where the other server processes' builds are found and this one's are left (``None``: alone)."""
    _generation: int = 0
    _cleared_at_s: float = float("-inf")
    builds: int = 0
    """Builds started in this process (tests and the bench read it)."""
    adopted: int = 0
    """Answers taken from another process's build instead of building (tests read it)."""

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
        serves while its rebuild runs (see ``_serves_meanwhile``)."""
        now = asyncio.get_running_loop().time()
        self._builders[key] = build
        if len(self._builders) > 2 * self.max_keys:  # builds that never produced an answer
            self._builders = {k: b for k, b in self._builders.items() if k in self._answers or k == key}
        ready = self._answers.get(key)
        if ready is not None:
            self._answers.move_to_end(key)
            if now - ready.ready_at_s < max_age_s:
                return ready
            task = self._building.get(key) or self._start(key, build, now, max_age_s)
            if serve_stale and self._serves_meanwhile(key, ready, now, max_age_s):
                return ready
            return await asyncio.shield(task)
        task = self._building.get(key) or self._start(key, build, now, max_age_s)
        return await asyncio.shield(task)

    def _serves_meanwhile(self, key: str, ready: ReadyAnswer, now: float, max_age_s: float) -> bool:
        """May the expired ``ready`` be handed out while ``key``'s rebuild runs? Yes if that rebuild
        started before ``ready`` was two intervals old (a key in demand: under load a rebuild may
        take longer than an interval, and nobody should queue behind it), up to ``STALE_MAX_S``
        (a hung build); a key asked for again only after a long pause waits for its rebuild."""
        started_s = self._started_at_s.get(key, now)
        return started_s - ready.ready_at_s < 2 * max_age_s and now - ready.ready_at_s < STALE_MAX_S

    def remember(self, request_line: str, key: str) -> None:
        """``request_line`` (path and raw query, as validated by the endpoint) names ``key``'s answer."""
        if self._aliases.get(request_line) != key:
            self._aliases[request_line] = key
            while len(self._aliases) > 2 * self.max_keys:
                self._aliases.popitem(last=False)

    def ready_for(self, request_line: str, max_age_s: float) -> ReadyAnswer | None:
        """The answer a remembered ``request_line`` gets now without waiting: fresh, or expired
        while its rebuild runs (started here, with the key's last build, as ``get`` would, when the
        answer is younger than two intervals); else ``None`` (ask the endpoint). Under a crowd a
        whole batch of requests arrives before any reaches its endpoint: starting the rebuild here
        keeps them all off it."""
        key = self._aliases.get(request_line)
        ready = self._answers.get(key) if key is not None else None
        if key is None or ready is None:
            return None
        now = asyncio.get_running_loop().time()
        if now - ready.ready_at_s < max_age_s:
            return ready
        if key not in self._building:
            build = self._builders.get(key)
            if build is None or now - ready.ready_at_s >= 2 * max_age_s:
                return None
            self._start(key, build, now, max_age_s)
        return ready if self._serves_meanwhile(key, ready, now, max_age_s) else None

    def clear(self) -> None:
        """Forget every answer (state was changed through this process): the next request rebuilds,
        and builds already running cannot put back what they read before the change."""
        self._generation += 1
        self._cleared_at_s = time.monotonic()  # the event loop's clock
        self._answers.clear()
        self._building.clear()
        self._started_at_s.clear()
        self._builders.clear()

    def _start(
        self, key: str, build: Callable[[float], Awaitable[ReadyAnswer]], now: float, max_age_s: float
    ) -> asyncio.Task[ReadyAnswer]:
        generation = self._generation
        self.builds += 1

        async def run() -> ReadyAnswer:
            try:
                if self.shared is not None and max_age_s > 0:
                    ready = await self._build_shared(key, build, max_age_s)
                else:
                    ready = await self._build_here(build, now)
            finally:
                if self._building.get(key) is task:
                    del self._building[key]
                    self._started_at_s.pop(key, None)
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
        self._started_at_s[key] = now
        return task

    async def _build_here(self, build: Callable[[float], Awaitable[ReadyAnswer]], now: float) -> ReadyAnswer:
        # reuse counts from the build's end: under a load that makes builds slow, answers grow
        # older instead of every request queueing for a build that is stale when done
        return replace(await build(now), ready_at_s=asyncio.get_running_loop().time())

    def _adoptable(self, key: str, max_age_s: float) -> ReadyAnswer | None:
        """Another process's answer for ``key`` if still fresh and read after this process's last
        write (a write here must show in this process's next answer)."""
        assert self.shared is not None
        stored = self.shared.load(key)
        if stored is None or stored.read_at_s < self._cleared_at_s:
            return None
        if asyncio.get_running_loop().time() - stored.ready_at_s >= max_age_s:
            return None
        return stored

    async def _build_shared(
        self, key: str, build: Callable[[float], Awaitable[ReadyAnswer]], max_age_s: float
    ) -> ReadyAnswer:
        """A fresh answer from the shared store, or built here (and stored) by the one process
        holding the key's lock; while another holds it, wait for its answer."""
        assert self.shared is not None
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + SHARED_WAIT_MAX_S
        while True:
            stored = self._adoptable(key, max_age_s)
            if stored is not None:
                self.adopted += 1
                return stored
            with self.shared.lock(key) as builder:
                if builder:
                    stored = self._adoptable(key, max_age_s)  # stored between our look and the lock
                    if stored is not None:
                        self.adopted += 1
                        return stored
                    ready = await self._build_here(build, loop.time())
                    self.shared.store(key, ready)
                    return ready
            if loop.time() >= give_up_at:
                return await self._build_here(build, loop.time())
            await asyncio.sleep(SHARED_POLL_S)


def _log_failure(task: asyncio.Task[ReadyAnswer]) -> None:
    """A rebuild nobody awaited (stale answers served meanwhile) must not fail silently."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("answer_build_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}"[:300])


__all__ = [
    "GZIP_MIN_BYTES",
    "JSON",
    "MAX_KEYS",
    "AnswerCache",
    "ReadyAnswer",
    "SharedAnswers",
    "answer",
    "json_body",
]
