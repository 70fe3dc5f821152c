"""The `mta` CLI: one entry point; roles not built yet say so and start nothing."""

from __future__ import annotations

from typer.testing import CliRunner

from mta.cli import app

runner = CliRunner()


def test_help_lists_every_role() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for role in ("worker", "scheduler", "bot", "api", "replica", "up", "db"):
        assert role in result.output


def test_settings_masks_secrets(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from shared.settings import reset_settings_cache

    monkeypatch.setenv("MTA_ADMIN_TOKEN", "very-secret-admin")
    reset_settings_cache()
    result = runner.invoke(app, ["settings"])
    reset_settings_cache()
    assert result.exit_code == 0
    assert "very-secret-admin" not in result.output
    assert "MTA_ADMIN_TOKEN=**********" in result.output
