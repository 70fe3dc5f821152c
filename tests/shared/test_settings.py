"""Settings: defaults load, bad values stop start-up with a message naming the setting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("MTA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_valid() -> None:
    settings = load_settings()
    assert settings.site_budget_per_minute < 60, "default budget must stay well under the city's limit"
    assert settings.effective_database_url.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("MTA_SITE_BUDGET_PER_MINUTE", "lots", "MTA_SITE_BUDGET_PER_MINUTE"),
        ("MTA_SITE_BUDGET_PER_MINUTE", "0", "greater than or equal to 1"),
        ("MTA_API_PORT", "70000", "MTA_API_PORT"),
        ("MTA_DATABASE_URL", "mysql://x", "sqlite:/// or postgresql"),
        ("MTA_REDIS_URL", "localhost:6379", "redis://"),
        ("MTA_OPERATOR_CHAT_IDS", "12,abc", "comma-separated integer chat ids"),
        ("MTA_LOG_LEVEL", "LOUD", "MTA_LOG_LEVEL"),
        ("MTA_SITE_URL", "ftp://x", "http"),
        ("MTA_BROWSER_HEADLESS", "maybe", "MTA_BROWSER_HEADLESS"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert var in str(info.value)
    assert expected in str(info.value)


def test_cross_field_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_THINK_TIME_MIN_MS", "5000")
    monkeypatch.setenv("MTA_THINK_TIME_MAX_MS", "10")
    with pytest.raises(SettingsError, match="MTA_THINK_TIME_MIN_MS must not exceed"):
        load_settings()


def test_operator_ids_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_OPERATOR_CHAT_IDS", "12, -100345")
    assert load_settings().operator_chat_ids == [12, -100345]


def test_secrets_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_TELEGRAM_TOKEN", "123:SUPERSECRETTOKEN")
    monkeypatch.setenv("MTA_ADMIN_TOKEN", "admin-secret-value")
    settings = load_settings()
    assert "SUPERSECRETTOKEN" not in repr(settings)
    assert "admin-secret-value" not in str(settings.model_dump())


def test_secret_not_echoed_in_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_WEBHOOK_URL", "https://example.org/hook")
    monkeypatch.setenv("MTA_API_PORT", "secret-looking-value")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "secret-looking-value" not in str(info.value)


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^(MTA_[A-Z0-9_]+)=", text, re.M))
    expected = {f"MTA_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from .env.example"
    assert documented - expected == set(), ".env.example lists unknown settings"


def test_cli_stops_on_invalid_setting(tmp_path: Path) -> None:
    env = {"MTA_SITE_BUDGET_PER_MINUTE": "-3", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "mta", "settings"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "MTA_SITE_BUDGET_PER_MINUTE" in proc.stderr
    assert "Traceback" not in proc.stderr
