"""Failure traces on a full disk: the trace folder is a 64 KiB tmpfs, filled up before the check.

tests/worker/test_checks.py covers a trace folder that cannot exist (a file in its place); this is
the other way saving fails: the folder is there and writable, but every write runs out of space
(ENOSPC) half-way. Needs ``mount -t tmpfs`` (root with CAP_SYS_ADMIN). Where it can run it must:
a process that has the right and still cannot mount fails, as does a run with ``CI`` true and
``MTA_REQUIRE_TMPFS=1`` (as ``MTA_REQUIRE_POSTGRES`` does for PostgreSQL); elsewhere it is skipped
with the reason shown. Tried: a mount that fails (an unknown fs type) as root: the test fails, not skips.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.domain import SiteUnavailable, TargetKey
from shared.settings import Settings, load_settings
from tests.support.replica import (
    FUEHRERSCHEIN_UMSCHREIBUNG,
    FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,
    Replica,
    berlin_slot,
)
from worker.browser import BrowserPool
from worker.captcha import InPageAltchaSolver
from worker.checks import run_check
from worker.pacer import NoPacer
from worker.sites.munich.adapter import MunichAdapter

pytestmark = [pytest.mark.browser]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REQUIRED_BY_CI = IN_CI and os.environ.get("MTA_REQUIRE_TMPFS", "") == "1"
CAP_SYS_ADMIN = 21


def may_mount() -> bool:
    """Root with CAP_SYS_ADMIN in its effective set (a container's root usually lacks it)."""
    if os.geteuid() != 0:
        return False
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    effective = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), "0")
    return bool(int(effective, 16) >> CAP_SYS_ADMIN & 1)


def _cannot_run(reason: str) -> None:
    """Skip, unless this process could mount or CI requires the test: then fail."""
    if REQUIRED_BY_CI:
        pytest.fail(f"{reason} — required: CI=true and MTA_REQUIRE_TMPFS=1")
    if may_mount():
        pytest.fail(f"{reason} — although this process is root with CAP_SYS_ADMIN")
    pytest.skip(reason)


FUEHRERSCHEIN = TargetKey("munich", FUEHRERSCHEIN_UMSCHREIBUNG, 1, (FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE,))


@pytest.fixture
def full_trace_dir(tmp_path: Path) -> Iterator[Settings]:
    """Settings whose trace folder is a tiny tmpfs with no space left."""
    settings = load_settings(data_dir=tmp_path, pacer="none", env="test", trace_on_failure=True)
    settings.trace_dir.mkdir(parents=True)
    if not may_mount():
        _cannot_run("mounting a tmpfs needs root with CAP_SYS_ADMIN")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(settings.trace_dir)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        _cannot_run(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        filler = os.open(settings.trace_dir / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(filler)
        yield settings
    finally:
        subprocess.run(["umount", "-l", str(settings.trace_dir)], check=False)


async def test_full_trace_disk_loses_no_check(full_trace_dir: Settings, replica: Replica) -> None:
    """Injected: maintenance (503) while the trace folder's filesystem is full, so neither the
    screenshot nor the Playwright trace of the failed check can be written.
    Asserted: the check still fails with the site's failure type (not an ``OSError``), no partial
    file is left behind, and once the site is back the same browser pool checks again and reports
    the free slot (nothing lost to the full disk)."""
    settings = full_trace_dir
    adapter = MunichAdapter(solver=InPageAltchaSolver(), pacer=NoPacer(), settings=settings)
    start = berlin_slot(days_ahead=2, hour=10)
    async with BrowserPool(settings) as pool:
        await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
        replica.faults(maintenance=True)
        with pytest.raises(SiteUnavailable):
            await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
        assert sorted(p.name for p in settings.trace_dir.iterdir()) == ["filler"]

        replica.faults(clear=["maintenance"])
        replica.add_slots(FUEHRERSCHEIN_UMSCHREIBUNG_OFFICE, [start, start + 900])
        outcome = await run_check(pool, adapter, FUEHRERSCHEIN, site_url=replica.page_url)
    assert [int(s.start.timestamp()) for s in outcome.observation.slots] == [start]
