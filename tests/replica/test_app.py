"""The app as a whole: pages mounted beside the API, configuration, and `mta replica` end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from replica.app import create_app
from replica.config import ReplicaConfig
from shared.settings import load_settings
from tests.conftest import free_port, wait_for_port
from tests.replica.conftest import ReplicaServer

REPO = Path(__file__).resolve().parents[2]


def test_config_from_settings() -> None:
    settings = load_settings(
        replica_rate_limit=7, replica_legacy_api=True, replica_control=True, replica_captcha_cost=50,
        replica_captcha_token_ttl_s=60, replica_port=9123,
    )  # fmt: skip
    config = ReplicaConfig.from_settings(settings, seed=9)
    assert (config.rate_limit, config.legacy_api, config.control_enabled) == (7, True, True)
    assert (config.captcha_cost, config.captcha_token_ttl_s, config.port, config.seed) == (50, 60, 9123, 9)
    assert config.captcha_secret == settings.replica_captcha_secret.get_secret_value()
    assert "captcha_secret" not in repr(config)
    app = create_app(config)
    state = app.state.replica
    assert state.ratelimiter.limit == 7 and state.legacy_api is True


def test_pages_are_served_beside_the_api(site: ReplicaServer) -> None:
    """The booking page is always mounted (no optional import): served as HTML, without the API's
    rate-limit headers."""
    response = site.client.get("/buergerservice/terminvereinbarung.html")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "X-RateLimit-Limit" not in response.headers


def test_mta_replica_command() -> None:
    """`mta replica --port N --scenario demo --control` serves the API, runs the demo, offers control."""
    port = free_port()
    env = {**os.environ, "MTA_LOG_FORMAT": "json"}
    env.pop("MTA_REPLICA_CONTROL", None)
    process = subprocess.Popen(
        [sys.executable, "-c", "from mta.cli import main; main()", "replica", "--port", str(port),
         "--scenario", "demo", "--control"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout_s=30)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/buergeransicht/api/citizen/offices-and-services/").status_code == 200
        running = httpx.get(f"{base}/_replica/scenario").json()["running"]
        assert running["name"] == "demo" and running["pending"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode in (0, -signal.SIGINT, 130), stderr
