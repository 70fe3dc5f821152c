"""Logging: JSON lines in production, and personal data never reaches the output."""

from __future__ import annotations

import json

import pytest

from shared.logging import configure_logging, get_logger, scrub_text
from shared.settings import load_settings


def test_json_lines_without_personal_data(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(env="production", log_format="auto"), role="test")
    log = get_logger("t")
    log.info(
        "profile stored",
        email="anna.muster@example.de",
        first_name="Anna",
        note="call +49 151 2345678 or write anna.muster@example.de",
        office_id=102522,
        slot_epoch_s=1795590000,
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["event"] == "profile stored"
    assert event["role"] == "test"
    assert event["office_id"] == 102522 and event["slot_epoch_s"] == 1795590000
    assert "anna" not in line.lower() and "2345678" not in line
    assert event["email"] == "[redacted]"


def test_console_format_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(log_format="console"), role="test")
    get_logger().warning("site slow", latency_ms=1234)
    err = capsys.readouterr().err
    assert "site slow" in err and "latency_ms=1234" in err and not err.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("write to a.b-c@mail.example.com", "a.b-c@"),
        ("phone 0151/1234567", "1234567"),
        ("+491511234567", "1511234567"),
    ],
)
def test_scrub_text(text: str, leak: str) -> None:
    assert leak not in scrub_text(text)


def test_scrub_keeps_ids_and_epochs() -> None:
    assert scrub_text("office 10187259 at 1795590000") == "office 10187259 at 1795590000"
