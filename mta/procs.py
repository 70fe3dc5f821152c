"""Process trees for ``mta up``: who a role started, and stopping all of it (psutil).

A process is named by (pid, create time), so a pid the kernel reused for someone else is never
signalled. Chromium leaves its role's process group and a killed role's children are re-parented
to init, so a role's tree is remembered while it runs (``snapshot``) and ended from that memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

import psutil

from shared.logging import get_logger

log = get_logger("mta.up")

PR_SET_PDEATHSIG = 1
Proc = tuple[int, float]
"""(pid, create time): one process, never a reused pid."""


def watch_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM this child when ``mta up`` dies (Linux; a no-op elsewhere), with
    SIGTERM blocked until the child has its handler (``watchdog`` unblocks it): a signal during
    the child's start would otherwise kill it on the spot."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def identify(pid: int) -> Proc | None:
    """``pid`` as (pid, create time); None if it is gone or a zombie (its parent reaps it)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return (pid, process.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(proc: Proc) -> bool:
    found = identify(proc[0])
    return found is not None and found[1] == proc[1]


def descendants(pid: int) -> list[Proc]:
    """Every live process below ``pid``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append((child.pid, child.create_time()))
    return found


def _signal(proc: Proc, sig: int) -> None:
    if alive(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc[0], sig)


def wait_gone(procs: list[Proc], timeout_s: float) -> list[Proc]:
    """Wait until ``procs`` are gone or ``timeout_s`` passed; returns those still alive."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def end_all(procs: list[Proc], *, grace_s: float = 3.0) -> None:
    """SIGTERM whatever of ``procs`` is alive, SIGKILL what is left after ``grace_s``."""
    left = [p for p in procs if alive(p)]
    for proc in left:
        _signal(proc, signal.SIGTERM)
    left = wait_gone(left, grace_s)
    for proc in left:
        _signal(proc, signal.SIGKILL)
    wait_gone(left, 2)  # SIGKILL is not instant either


def stop_process(
    pid: int, grace_s: float, *, started: float | None = None, known: list[Proc] | None = None
) -> None:
    """SIGTERM ``pid`` and wait ``grace_s``; then SIGKILL its process group; then end whatever it
    started that is still alive (``known``: a remembered tree, for processes already orphaned)."""
    me = identify(pid)
    if me is None or (started is not None and me[1] != started):
        end_all(list(known or []))
        return
    tree = descendants(pid) + [p for p in known or [] if p[0] != pid]
    _signal(me, signal.SIGTERM)
    if wait_gone([me], grace_s):
        log.warning("role_killed", pid=pid, grace_s=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        wait_gone([me], 5)
    end_all(tree)


def kill_group(pid: int) -> None:
    """SIGKILL what is left of a dead role's process group (it was its own session's leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


__all__ = [
    "Proc",
    "alive",
    "descendants",
    "end_all",
    "identify",
    "kill_group",
    "stop_process",
    "wait_gone",
    "watch_parent",
]
