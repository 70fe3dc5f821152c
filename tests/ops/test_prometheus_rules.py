"""The alert rules in deploy/prometheus/: promtool loads them, their unit tests pass (a worker that
stops beating fires MTAWorkerMissing); tests/api/test_farm_metrics.py checks that the mta_farm_*
series they watch are served.

promtool comes from Debian's ``prometheus`` package (``scripts/test.sh`` asks ``scripts/setup.sh``
for it with ``MTA_SETUP_PROMTOOL=1``); where it cannot be installed these tests skip and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "mta.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "mta.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package 'prometheus'; scripts/setup.sh installs it "
    "with MTA_SETUP_PROMTOOL=1 when it may use apt-get)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


@needs_promtool
def test_rules_load_in_promtool() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 12 rules found" in done.stdout


@needs_promtool
def test_prometheus_config_names_the_rules_and_alertmanager() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    done = _promtool("check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_rule_unit_tests_pass_and_a_stopped_worker_fires() -> None:
    """promtool's rule unit tests, among them: the worker's heartbeat count falls to 0 at 3 min;
    MTAWorkerMissing is not firing at 4 min and fires at 5.5 min. (Tried: with the rule's ``for``
    raised to 10m the unit test fails.)"""
    done = _promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MTAWorkerMissing" in RULE_TESTS.read_text()


def test_alertmanager_template_routes_everything_to_the_operator_chat() -> None:
    """The template becomes valid YAML with a Telegram receiver once the compose service fills in
    the token and the chat id (as its entrypoint's sed does)."""
    text = (ROOT / "deploy" / "alertmanager" / "alertmanager.yml.tmpl").read_text()
    filled = text.replace("__MTA_TELEGRAM_TOKEN__", "123:abc").replace("__MTA_OPERATOR_CHAT_ID__", "-1001")
    config = yaml.safe_load(filled)
    assert config["route"]["receiver"] == "operator-telegram"
    (telegram,) = config["receivers"][0]["telegram_configs"]
    assert telegram["bot_token"] == "123:abc" and telegram["chat_id"] == -1001
