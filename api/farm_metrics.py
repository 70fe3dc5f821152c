"""The farm's own health as Prometheus gauges, read at each scrape of ``/metrics``.

The roles' counters and histograms come from the multiprocess folder; what only the whole farm
knows (live processes per role from their heartbeats, the scheduler lease, queue depths, stale and
blocked targets, the data folder's disk) is computed here, so the alert rules in
``deploy/prometheus/rules/`` can watch the farm itself: a dead worker writes no metric of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from api.farm import FarmState
from api.schemas import TargetOut
from shared.process_stats import process_stats

ROLES = ("worker", "scheduler", "bot")


def render_farm_metrics(
    farm: FarmState,
    targets: Sequence[TargetOut] | None,
    *,
    now: datetime,
    data_dir: Path,
    telegram_configured: bool,
) -> bytes:
    """The gauges in Prometheus' text format (``targets`` None: the database was unreadable)."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=registry)

    gauge("mta_farm_redis_up", "1 when the status service reaches Redis").set(1 if farm.ok else 0)
    gauge("mta_farm_database_up", "1 when the status service reads the database").set(
        0 if targets is None else 1
    )
    gauge("mta_farm_telegram_configured", "1 when alerts are sent to Telegram").set(
        1 if telegram_configured else 0
    )
    if farm.ok:  # Redis down: unknown, not zero (the redis alert says so)
        processes = gauge("mta_farm_processes", "Processes of a role with a fresh heartbeat", ["role"])
        for role in ROLES:
            processes.labels(role).set(len(farm.live(role, now)))
        gauge("mta_farm_queue_consumers", "Dramatiq consumers of live workers").set(farm.consumers)
        cpu = gauge(
            "mta_process_cpu_seconds", "CPU seconds of a live MTA process and its children", ["role", "id"]
        )
        rss = gauge(
            "mta_process_resident_memory_bytes",
            "Resident memory of a process and its children",
            ["role", "id"],
        )
        fds = gauge("mta_process_open_fds", "Open files of a process and its children", ["role", "id"])
        for beat in farm.heartbeats:
            stats = beat.info.get("process")
            if not beat.fresh(now) or not isinstance(stats, dict):
                continue
            for metric, name in ((cpu, "cpu_s"), (rss, "rss_bytes"), (fds, "open_fds")):
                if isinstance(stats.get(name), int | float):
                    metric.labels(beat.role, beat.identity).set(stats[name])
        gauge("mta_farm_scheduler_leader", "1 when a scheduler holds the lease").set(1 if farm.leader else 0)
        queue = gauge("mta_farm_queue_messages", "Messages per queue and state", ["queue", "state"])
        for q in farm.queues:
            queue.labels(q.name, "ready").set(q.ready)
            queue.labels(q.name, "delayed").set(q.delayed)
            queue.labels(q.name, "in_progress").set(q.in_progress)
            queue.labels(q.name, "dead").set(q.dead)
    if targets is not None:
        by_state = gauge("mta_farm_targets", "Active targets per site and state", ["site", "state"])
        stale = gauge("mta_farm_targets_stale", "Active targets not checked within their interval", ["site"])
        for target in targets:
            by_state.labels(target.site, target.state.value).inc()
            stale.labels(target.site).inc(1 if target.stale else 0)
    own = process_stats(with_children=False)  # the status service itself (this process)
    own_cpu = gauge("mta_api_process_cpu_seconds", "CPU seconds of the status service process")
    own_cpu.set(own["cpu_s"])
    gauge("mta_api_process_resident_memory_bytes", "Resident memory of the status service process").set(
        own["rss_bytes"]
    )
    gauge("mta_api_process_open_fds", "Open files of the status service process").set(own["open_fds"])
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError:
        usage = None
    if usage is not None:
        gauge("mta_farm_data_disk_size_bytes", "Size of the data folder's file system").set(usage.total)
        gauge("mta_farm_data_disk_free_bytes", "Free space on the data folder's file system").set(usage.free)
    return generate_latest(registry)


__all__ = ["render_farm_metrics"]
