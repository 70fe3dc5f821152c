"""bot: the Telegram side of MTA (conversations, the outbox sender, alerts)."""

import os

# python-telegram-bot >= 22.2 warns on every RetryAfter until time periods are opted into as
# timedelta (its next major version makes that the only form). MTA reads them as timedelta already
# (bot.sender._retry_after_s), so opt in for this process.
os.environ.setdefault("PTB_TIMEDELTA", "1")
