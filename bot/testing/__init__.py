"""Test helpers for the bot: a local fake of the Telegram Bot API, served over real HTTP."""

from __future__ import annotations

from bot.testing.fake_bot_api import FakeBotApi, Fault

__all__ = ["FakeBotApi", "Fault"]
