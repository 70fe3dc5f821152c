"""What an MTA process costs the host, for its heartbeat: CPU seconds, resident memory and open files.

prometheus-client's own process collector works per process and is left out in multiprocess mode
(the status service serves every process's samples from one folder), and in compose the roles live
in separate containers. So each role puts these numbers into the heartbeat it already writes to
Redis, and the status service turns the live heartbeats into gauges (``api.farm_metrics``). A
worker counts its Chromium and Playwright driver with it: they are its children, and its cost.
"""

from __future__ import annotations

import contextlib

import psutil


def process_stats(*, with_children: bool = True) -> dict[str, float]:
    """This process (and, by default, its descendants): ``cpu_s`` (user + system seconds),
    ``rss_bytes``, ``open_fds``, ``processes``. Processes that end while being read are skipped."""
    me = psutil.Process()
    tree = [me]
    if with_children:
        with contextlib.suppress(psutil.Error):
            tree += me.children(recursive=True)
    cpu_s = rss = fds = 0.0
    counted = 0
    for proc in tree:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu_s += times.user + times.system
                rss += proc.memory_info().rss
                fds += proc.num_fds()
            counted += 1
        except psutil.Error:
            continue
    return {"cpu_s": round(cpu_s, 2), "rss_bytes": rss, "open_fds": fds, "processes": counted}


__all__ = ["process_stats"]
