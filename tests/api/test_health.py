"""/healthz, /readyz (each part of the farm), /metrics (every process's samples), `mta health`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mta.cli import app as cli
from shared.db.database import Database
from shared.settings import Settings, reset_settings_cache
from tests.api.conftest import LiveServer, farm_alive


def test_healthz_is_alive_without_anything_else(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_part_and_503_while_the_farm_is_missing(client: TestClient) -> None:
    """Injected: no worker, scheduler or bot running. Asserted: 503, each missing part named."""
    response = client.get("/readyz")
    assert response.status_code == 503
    parts = response.json()["parts"]
    assert parts["database"]["ok"] and parts["redis"]["ok"]
    assert parts["worker"] == {"ok": False, "required": True, "detail": "no heartbeat"}
    assert parts["scheduler_leader"]["ok"] is False
    assert parts["bot"]["required"] is False  # no Telegram token: alerts only on the dashboard


def test_readyz_is_ready_with_heartbeats_and_a_leader(client: TestClient, redis_url: str) -> None:
    farm_alive(redis_url)
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    parts = response.json()["parts"]
    assert parts["worker"]["detail"] == "1 alive"
    assert parts["scheduler_leader"]["detail"] == "held by testhost:202:abcd"
    assert parts["bot"]["ok"] is True
    status = client.get("/api/v1/status").json()
    assert status["scheduler_leader"] == "testhost:202:abcd"
    roles = {h["role"]: h for h in status["heartbeats"]}
    assert set(roles) == {"worker", "scheduler", "bot"}  # the sorted-set indexes are not heartbeats
    assert roles["worker"]["info"]["contexts_open"] == 2 and roles["worker"]["fresh"]


def test_readyz_503_when_redis_is_down(api_settings: Settings, db: Database) -> None:
    """Injected: a Redis URL nobody listens on. Asserted: 503 with the Redis part failing, DB fine."""
    from api.app import create_app
    from tests.conftest import free_port

    settings = api_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(settings)) as broken:
        response = broken.get("/readyz")
        assert response.status_code == 503
        parts = response.json()["parts"]
        assert parts["redis"]["ok"] is False and "Connection" in parts["redis"]["detail"]
        assert parts["database"]["ok"] is True
        assert broken.get("/").status_code == 200  # the dashboard still renders, saying Redis is down


def test_readyz_names_a_missing_schema(api_settings: Settings, tmp_path: Path) -> None:
    """Injected: an empty database (never migrated). Asserted: 503 telling to run `mta db upgrade`."""
    from api.app import create_app

    settings = api_settings.model_copy(update={"data_dir": tmp_path / "empty"})
    with TestClient(create_app(settings)) as bare:
        parts = bare.get("/readyz").json()["parts"]
        assert "mta db upgrade" in parts["database"]["detail"]
        assert "mta db upgrade" in bare.get("/").text


_WRITE_METRICS = """
import os, sys
from dramatiq.middleware.prometheus import Prometheus
from dramatiq.brokers.stub import StubBroker
from dramatiq import Message
mw = Prometheus()
mw.after_process_boot(StubBroker())
msg = Message(queue_name="checks", actor_name="check_target", args=(), kwargs={}, options={})
mw.before_process_message(None, msg)
mw.after_process_message(None, msg)
from worker.metrics import CHECKS
CHECKS.labels(site="munich", outcome="no_slots").inc(3)
"""


def test_metrics_serve_other_processes_and_dramatiq(client: TestClient, api_settings: Settings) -> None:
    """Another process (as `mta worker` sets it up) writes samples; the api serves them."""
    folder = api_settings.metrics_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "dramatiq_prom_db": str(folder)}
    subprocess.run([sys.executable, "-c", _WRITE_METRICS], env=env, check=True, cwd=Path.cwd(), timeout=60)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'mta_checks_total{outcome="no_slots",site="munich"} 3.0' in response.text
    assert 'dramatiq_messages_total{actor_name="check_target",queue_name="checks"} 1.0' in response.text


# --- mta health ------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, api_settings: Settings) -> Iterator[Settings]:
    monkeypatch.setenv("MTA_DATA_DIR", str(api_settings.data_dir))
    monkeypatch.setenv("MTA_REDIS_URL", api_settings.redis_url)
    monkeypatch.setenv("MTA_ENV", "test")
    reset_settings_cache()
    yield api_settings
    reset_settings_cache()


def test_mta_health_roles_follow_heartbeats(cli_env: Settings, redis_url: str) -> None:
    for role in ("worker", "scheduler", "bot"):
        result = runner.invoke(cli, ["health", role])
        assert result.exit_code == 1, result.output
        assert result.output.strip() == f"{role} unhealthy: no heartbeat in Redis (mta:heartbeat:{role}*)"
    farm_alive(redis_url)
    for role in ("worker", "scheduler", "bot"):
        result = runner.invoke(cli, ["health", role])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"{role} healthy: 1 fresh heartbeat")
    other_host = runner.invoke(cli, ["health", "worker", "--this-host"])
    assert other_host.exit_code == 1 and "from host" in other_host.output


def test_mta_health_stale_heartbeat_is_unhealthy(cli_env: Settings, redis_url: str) -> None:
    """Injected: a worker heartbeat 5 minutes old. Asserted: exit 1 naming its age."""
    client = redis.Redis.from_url(redis_url)
    client.set("mta:heartbeat:worker:old:1", json.dumps({"at": time.time() - 300}), ex=600)
    client.close()
    result = runner.invoke(cli, ["health", "worker"])
    assert result.exit_code == 1
    assert "newest heartbeat is 300 s old" in result.output


def test_mta_health_api(cli_env: Settings, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    port = live_server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("MTA_API_PORT", port)
    reset_settings_cache()
    ok = runner.invoke(cli, ["health", "api"])
    assert ok.exit_code == 0 and "answered 200" in ok.output
    from tests.conftest import free_port

    monkeypatch.setenv("MTA_API_PORT", str(free_port()))
    reset_settings_cache()
    down = runner.invoke(cli, ["health", "api"])
    assert down.exit_code == 1 and "unreachable" in down.output
    assert len(down.output.strip().splitlines()) == 1


def test_mta_health_unknown_role(cli_env: Settings) -> None:
    result = runner.invoke(cli, ["health", "toaster"])
    assert result.exit_code == 2 and "unknown role" in result.output


def test_mta_api_serves_until_stopped(api_settings: Settings, db: Database) -> None:
    """`mta api` as an operator starts it: a real process on the configured port, stopped by SIGTERM."""
    import httpx

    from tests.conftest import free_port, wait_for_port

    port = free_port()
    env = {
        **os.environ,
        "MTA_DATA_DIR": str(api_settings.data_dir),
        "MTA_REDIS_URL": api_settings.redis_url,
        "MTA_API_PORT": str(port),
        "MTA_ENV": "test",
    }
    proc = subprocess.Popen([sys.executable, "-m", "mta", "api"], env=env, cwd=Path.cwd())
    try:
        wait_for_port(port, timeout_s=60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json() == {"status": "ok"}
        assert "Sites and targets" in httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
