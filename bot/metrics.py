"""The bot's Prometheus metrics (ARCHITECTURE §8), written to the multiprocess folder ``mta api`` serves."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ALERTS = Counter("mta_alerts_total", "Outbox rows settled by the sender, by status", ["status"])
DETECTION_LATENCY = Histogram(
    "mta_detection_latency_seconds",
    "Slot first seen by a check -> its alert accepted by Telegram. The time before that check is "
    "bounded by the check interval and measured against the replica clock in bench/.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
