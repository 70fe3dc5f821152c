"""The worker's Prometheus metrics (ARCHITECTURE §8).

Worker processes run with ``PROMETHEUS_MULTIPROC_DIR`` set, so each process writes its samples to
that folder and the api process serves them all; gauges say how they add up across processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.domain import CheckFailure, CheckOutcome, Observation

BROWSER_CONTEXTS = Gauge(
    "mta_browser_contexts",
    "Browser contexts (warm sessions) open in worker processes",
    multiprocess_mode="livesum",
)
BROWSER_RESTARTS = Counter(
    "mta_browser_restarts_total",
    "Chromium browsers relaunched: retired after N contexts, or crashed/disconnected",
    ["reason"],
)
SLOTS_NEW = Counter(
    "mta_slots_new_total", "Slot episodes seen for the first time (new, or back after gone)", ["site"]
)
CHECKS = Counter("mta_checks_total", "Checks finished, by site and outcome", ["site", "outcome"])
SLOTS_SEEN = Counter(
    "mta_slots_seen_total",
    "Free slots listed by successful checks (a slot seen by N checks counts N times)",
    ["site"],
)
CHECK_SECONDS = Histogram(
    "mta_check_seconds",
    "Wall time of one check",
    ["site"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)


def record_check(site: str, result: Observation | CheckFailure, duration_s: float) -> None:
    """Count one finished check (``no_slots`` when it succeeded without a free slot)."""
    if isinstance(result, Observation):
        outcome = CheckOutcome.OK if result.slots else CheckOutcome.NO_SLOTS
    else:
        outcome = result.outcome
    CHECKS.labels(site=site, outcome=outcome.value).inc()
    if isinstance(result, Observation) and result.slots:
        SLOTS_SEEN.labels(site=site).inc(len(result.slots))
    CHECK_SECONDS.labels(site=site).observe(duration_s)


__all__ = ["BROWSER_CONTEXTS", "BROWSER_RESTARTS", "CHECKS", "CHECK_SECONDS", "SLOTS_SEEN", "record_check"]
