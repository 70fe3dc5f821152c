"""Traces and screenshots of failed checks (``worker.tracing``), in real Chromium."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from shared.settings import load_settings
from tests.support.replica import Replica
from worker.browser import BrowserPool
from worker.tracing import begin_check, discard_check, save_failure

pytestmark = [pytest.mark.browser]


async def test_one_chunk_per_check_and_best_effort_saving(replica: Replica, tmp_path: Path) -> None:
    """A successful check writes nothing; a failed check's chunk becomes a zip that holds that check
    (its page load, and the successful checks since the chunk began), next to a PNG screenshot.
    Injected: a trace folder that is a file, and a
    closed context. Asserted: both are logged and skipped, never raised."""
    settings = load_settings(data_dir=tmp_path, pacer="none", env="test", trace_on_failure=True)
    trace_dir = tmp_path / "traces"
    async with BrowserPool(settings) as pool, pool.session("trace-test") as session:
        assert session.tracing and session.trace_chunk_open
        await session.page.goto(replica.page_url)
        await discard_check(session)  # a successful check: nothing kept
        assert not trace_dir.exists()

        await begin_check(session)
        await session.page.goto(replica.deep_link(1063475, 102522))
        artifacts = await save_failure(session, trace_dir, "LayoutChanged munich:1063475x1@102522")
        assert artifacts.trace is not None and artifacts.trace.parent == trace_dir
        assert artifacts.screenshot is not None and artifacts.screenshot.read_bytes()[:4] == b"\x89PNG"
        with zipfile.ZipFile(artifacts.trace) as archive:
            events = b"".join(archive.read(n) for n in archive.namelist() if n.endswith(".trace"))
        assert b"locations/102522" in events
        assert not session.trace_chunk_open

        blocked = tmp_path / "blocked"
        blocked.write_text("a file where the folder should be")
        await begin_check(session)
        nothing = await save_failure(session, blocked / "traces", "x")
        assert (nothing.trace, nothing.screenshot) == (None, None)

        await begin_check(session)
        await session.context.close()
        closed = await save_failure(session, trace_dir, "closed")
        assert (closed.trace, closed.screenshot) == (None, None)
    assert sorted(p.suffix for p in trace_dir.iterdir()) == [".png", ".zip"]
