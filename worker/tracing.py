"""Playwright traces and screenshots of failed checks, under ``<data_dir>/traces/``.

A traced session records continuously in *chunks*: ``start_tracing`` starts the first chunk when the
context opens, every check ends its chunk, discarding it on success (nothing kept, little cost) or
writing it as a zip beside a screenshot on failure, and the next check starts a new chunk. So a
failure's trace shows exactly that check, from its first request to the error, and can be opened
with ``playwright show-trace``.

Saving is best effort: a full disk or an unwritable folder is logged and the check goes on; a trace
must never turn a site failure into a worker crash.
"""

from __future__ import annotations

import asyncio
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.async_api import Error as PlaywrightError

from shared.logging import get_logger

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

    from worker.browser._session import BrowserSession

log = get_logger("mta.tracing")

SCREENSHOT_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class FailureArtifacts:
    """What was written for one failed check (either may be None when it could not be saved)."""

    trace: Path | None
    screenshot: Path | None


async def start_tracing(context: BrowserContext) -> None:
    """Start recording ``context``; this opens the first chunk.

    DOM snapshots (what the trace viewer shows for each action) but no screencast: the screencast
    streams frames for the session's whole life and costs real CPU on a small machine, while the
    one picture that matters is the screenshot taken at the failure.
    """
    await context.tracing.start(screenshots=False, snapshots=True, sources=False)


async def begin_check(session: BrowserSession) -> None:
    """Make sure a chunk is recording for the check that starts now."""
    if not session.tracing or session.trace_chunk_open:
        return
    try:
        await session.context.tracing.start_chunk()
        session.trace_chunk_open = True
    except PlaywrightError as exc:
        log.warning("trace_start_failed", key=session.key, error=str(exc)[:200])


CHECKS_PER_CHUNK = 25
"""Successful checks that share one trace chunk before it is dropped. Stopping and starting a chunk
costs about as much as a warm check itself, so it is done once per this many checks; a failure's
trace then shows up to this many checks before it, which is context rather than noise."""


async def discard_check(session: BrowserSession) -> None:
    """The check succeeded: keep recording, and drop the chunk (nothing is written) every
    ``CHECKS_PER_CHUNK`` checks so that it stays small."""
    if not session.tracing or not session.trace_chunk_open:
        return
    session.trace_chunk_checks += 1
    if session.trace_chunk_checks < CHECKS_PER_CHUNK:
        return
    session.trace_chunk_checks = 0
    session.trace_chunk_open = False
    with suppress(PlaywrightError):
        await session.context.tracing.stop_chunk()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "check"


async def save_failure(session: BrowserSession, trace_dir: Path, label: str) -> FailureArtifacts:
    """Write ``<stamp>-<label>.png`` and ``<stamp>-<label>.zip`` for the failed check of ``session``.

    Never raises: an unwritable folder, a full disk or a dead browser is logged and skipped.
    """
    stem = (
        f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{int(time.time() * 1000) % 1000:03d}-{_safe(label)}"
    )
    try:
        await asyncio.to_thread(trace_dir.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("trace_dir_unwritable", path=str(trace_dir), error=str(exc))
        if session.tracing and session.trace_chunk_open:
            session.trace_chunk_open = False
            session.trace_chunk_checks = 0
            with suppress(PlaywrightError):
                await session.context.tracing.stop_chunk()
        return FailureArtifacts(None, None)

    screenshot: Path | None = trace_dir / f"{stem}.png"
    try:
        if session.page.is_closed():
            raise PlaywrightError("page is closed")
        assert screenshot is not None
        await session.page.screenshot(path=str(screenshot), full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
    except (PlaywrightError, OSError) as exc:
        log.warning("screenshot_failed", key=session.key, error=str(exc)[:200])
        if screenshot is not None:
            with suppress(OSError):
                await asyncio.to_thread(screenshot.unlink, missing_ok=True)
        screenshot = None

    trace: Path | None = None
    if session.tracing and session.trace_chunk_open:
        session.trace_chunk_open = False
        session.trace_chunk_checks = 0
        trace = trace_dir / f"{stem}.zip"
        try:
            await session.context.tracing.stop_chunk(path=str(trace))
        except (PlaywrightError, OSError) as exc:
            log.warning("trace_save_failed", key=session.key, error=str(exc)[:200])
            with suppress(OSError):
                await asyncio.to_thread(trace.unlink, missing_ok=True)
            trace = None
    if trace is not None or screenshot is not None:
        log.info(
            "failure_artifacts_saved",
            key=session.key,
            trace=str(trace) if trace else None,
            screenshot=str(screenshot) if screenshot else None,
        )
    return FailureArtifacts(trace, screenshot)


__all__ = ["FailureArtifacts", "begin_check", "discard_check", "save_failure", "start_tracing"]
