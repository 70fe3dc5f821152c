"""Prepared answers shared by the server processes of one ``mta api``: one build per refresh in all.

With ``MTA_API_WORKERS`` above one, every process used to build each answer itself once per
refresh: the same database reads, rendering and gzip ran once per process, each in a thread that
competes with its process's event loop for the GIL (the loop, sending ready answers to a crowd,
stalls while a build holds it). Now the process that first finds an answer expired takes the
answer's lock (a non-blocking ``flock``) and builds it, then writes it into a private folder that
``mta api`` creates for its processes; the others, finding their copy expired, take those bytes
instead of building, or keep serving their previous answer while another process holds the lock.
Every process then sends the same bytes under the same ETag, whichever one a client's next request
reaches (a poller's ``If-None-Match`` gets its 304 from any of them).

Times in the files are ``time.monotonic()`` (the event loop's clock): Linux's monotonic clock is
one for the whole host, and the folder never leaves it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from api.snapshot import ReadyAnswer
from shared.logging import get_logger

log = get_logger("mta.api.answer_folder")

FILE_MODE = 0o600
FORMAT = 1


@dataclass(frozen=True)
class AnswerFolder:
    """Ready answers by key in ``path`` (one file per key, replaced atomically; a lock file beside)."""

    path: Path

    def _name(self, key: str) -> str:
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def load(self, key: str) -> ReadyAnswer | None:
        """The answer last stored for ``key``, or ``None`` (none yet, or unreadable)."""
        try:
            data = (self.path / f"{self._name(key)}.answer").read_bytes()
            head, _, rest = data.partition(b"\n")
            meta = orjson.loads(head)
            if meta.get("format") != FORMAT or meta.get("key") != key:
                return None
            body_len = int(meta["body_len"])
            gzipped = rest[body_len:] if meta["gzip_etag"] else None
            return ReadyAnswer(
                body=rest[:body_len],
                media_type=meta["media_type"],
                etag=meta["etag"],
                read_at_s=float(meta["read_at_s"]),
                status_code=int(meta["status_code"]),
                gzipped=gzipped,
                gzip_etag=meta["gzip_etag"],
                ready_at_s=float(meta["ready_at_s"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: str, ready: ReadyAnswer) -> None:
        """Write ``ready`` for ``key`` (a temporary file renamed over the old one: readers see either).
        A folder that cannot be written (gone, full) costs the sharing, never the answer."""
        try:
            self._write(key, ready)
        except OSError as exc:
            log.warning("answer_not_shared", error=f"{type(exc).__name__}: {exc}"[:200])

    def _write(self, key: str, ready: ReadyAnswer) -> None:
        head = orjson.dumps(
            {
                "format": FORMAT,
                "key": key,
                "media_type": ready.media_type,
                "etag": ready.etag,
                "gzip_etag": ready.gzip_etag,
                "status_code": ready.status_code,
                "read_at_s": ready.read_at_s,
                "ready_at_s": ready.ready_at_s,
                "body_len": len(ready.body),
            }
        )
        final = self.path / f"{self._name(key)}.answer"
        temporary = final.with_name(f"{final.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(head + b"\n" + ready.body + (ready.gzipped or b""))
        os.replace(temporary, final)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[bool]:
        """Try to become ``key``'s builder: yields True while this process holds its lock, False
        when another does. The kernel drops the lock when its holder dies, so no build is orphaned.
        Without a usable folder this process builds for itself (True)."""
        try:
            fd = os.open(self.path / f"{self._name(key)}.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError:
            yield True
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the only descriptor releases the lock


__all__ = ["AnswerFolder"]
