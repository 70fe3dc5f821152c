"""The farm's own gauges on /metrics (``api.farm_metrics``), which the alert rules watch."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from shared.db.database import Database
from tests.api.conftest import farm_alive, seed

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "mta.yml"


def test_every_farm_series_in_the_rules_is_served(client: TestClient, db: Database, redis_url: str) -> None:
    """The rules watch mta_farm_* gauges that only the status service computes: each one a rule
    names appears in /metrics of a running app (a renamed gauge would silence its alert)."""
    seed(db)
    farm_alive(redis_url)
    body = client.get("/metrics").text
    wanted = set(re.findall(r"\b(mta_farm_[a-z_]+)", RULES.read_text()))
    assert wanted >= {"mta_farm_processes", "mta_farm_data_disk_free_bytes", "mta_farm_queue_messages"}
    missing = [name for name in sorted(wanted) if f"\n{name}" not in body]
    assert not missing, missing
    assert 'mta_farm_processes{role="worker"} 1.0' in body
    assert 'mta_farm_targets_stale{site="munich"} 0.0' in body


def test_each_live_process_reports_its_cpu_memory_and_open_files(
    client: TestClient, db: Database, redis_url: str
) -> None:
    """Tried: a worker heartbeat written by the production ``beat`` (which measures this test
    process and its children with psutil), next to a scrape of /metrics. Asserted: the worker's CPU
    seconds, resident memory and open files are served per role and process, and the status
    service's own figures too (prometheus-client's process collector is off in multiprocess mode,
    and the roles may live in other containers)."""
    import redis

    from worker import heartbeat

    heartbeat.beat(redis.Redis.from_url(redis_url), "worker", "host:42", {"broker_id": "A"})
    body = client.get("/metrics").text
    rss = re.search(r'mta_process_resident_memory_bytes\{id="host:42",role="worker"\} ([0-9.e+]+)', body)
    assert rss is not None and float(rss.group(1)) > 10_000_000
    assert re.search(r'mta_process_open_fds\{id="host:42",role="worker"\} [1-9]', body)
    assert re.search(r'mta_process_cpu_seconds\{id="host:42",role="worker"\} [0-9]', body)
    assert re.search(r"mta_api_process_resident_memory_bytes [1-9]", body)
