"""Alerts by e-mail end to end: the real bot against the fake Bot API and a real SMTP server
(aiosmtpd) on a free port; the address set through /email with the code the mail carried; a slot
recorded as a worker records it (``shared.recording``) reaches Telegram and the mailbox."""

from __future__ import annotations

import asyncio
import email
import logging
import re
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY
from sqlalchemy import select

from bot.handlers import mail, store
from bot.i18n import SUPPORTED_LANGUAGES, translator
from bot.testing import FakeBotApi
from bot.testing.outbox import PASING_OFFICE_ID, PASSPORT_SERVICE_ID, add_users
from bot.validation import site_today
from shared.db.database import Database
from shared.db.models import Notification, NotificationChannel, NotificationStatus, Target, User
from shared.domain import DEFAULT_SITE, SITE_TIMEZONE, Observation, SlotSeen, utcnow
from shared.recording import record_observation, sync_targets
from shared.settings import Settings
from tests.bot.conftest import UserChat, run_bot, until


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps every mail; ``stop``/``start`` take it down and
    bring it back on the same port."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.mails: list[Message] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.mails.append(email.message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.mails)


def text_of(mail: Message) -> str:
    """The decoded plain and HTML parts of ``mail``."""
    texts = []
    for part in mail.walk():
        payload = part.get_payload(decode=True)
        if part.get_content_maintype() == "text" and isinstance(payload, bytes):
            texts.append(payload.decode(part.get_content_charset() or "utf-8"))
    return "\n".join(texts)


def subject_of(mail: Message) -> str:
    return str(email.header.make_header(email.header.decode_header(mail["Subject"])))


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def mail_settings(bot_settings: Settings, smtp: SmtpSink) -> Settings:
    return bot_settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_security": "none",
            "smtp_from": "alerts@mta.example.org",
            "smtp_timeout_s": 5.0,
        }
    )


def _set_address(chat: UserChat, smtp: SmtpSink, address: str, confirm_word: str) -> None:
    """/email, the address, then the code from the mail."""
    before = len(smtp.received())
    chat.send("/email", expect="/cancel")
    chat.send(address, expect=address)
    deadline = 20.0
    step = 0.05
    while len(smtp.received()) <= before and deadline > 0:
        threading.Event().wait(step)  # the code mail travels over SMTP; polled, not slept through
        deadline -= step
    mail = smtp.received()[before]
    assert mail["To"] == address
    code = re.search(r"\b(\d{6})\b", subject_of(mail))
    assert code is not None and code.group(1) in text_of(mail)
    chat.send(code.group(1), expect=confirm_word)


def _record_slot(db: Database) -> int:
    """A worker's check of the Pasing target sees one free slot tomorrow at 10:00: returns its id."""
    with db.transaction() as session:
        sync_targets(session)
        target = session.scalars(select(Target).where(Target.active.is_(True))).one()
        start = datetime.combine(site_today() + timedelta(days=1), time(10, 0), tzinfo=SITE_TIMEZONE)
        observation = Observation(
            site=DEFAULT_SITE,
            service_id=PASSPORT_SERVICE_ID,
            service_count=1,
            office_ids=target.office_ids,
            observed_at=utcnow(),
            slots=[SlotSeen(PASING_OFFICE_ID, PASSPORT_SERVICE_ID, start)],
            source="test",
        )
        record_observation(session, target.id, observation, worker_id="w", duration_ms=1)
    with db.transaction() as session:
        return int(
            session.scalars(select(Notification.slot_id).where(Notification.slot_id.is_not(None))).first()
            or 0
        )


def _detections() -> float:
    """Alerts counted by ``mta_detection_latency_seconds`` in this process so far."""
    return REGISTRY.get_sample_value("mta_detection_latency_seconds_count") or 0.0


def _database_bytes(folder: Path) -> bytes:
    """The SQLite file with its WAL: what a thief of the disk would read."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("mta.db*")))


def _rows(db: Database, channel: str) -> list[Notification]:
    with db.transaction() as session:
        rows = list(session.scalars(select(Notification).where(Notification.channel == channel)))
        session.expunge_all()
        return rows


def test_a_slot_alert_reaches_telegram_and_the_mailbox_in_the_persons_language(
    mail_settings: Settings,
    bot_db: Database,
    fake_telegram: FakeBotApi,
    smtp: SmtpSink,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A German subscriber sets an address with /email (the code comes by mail and is typed back);
    a slot recorded as a worker records it arrives once on Telegram and once by SMTP, both in
    German with the booking link; /export shows the address; no log line names it (every logger at
    INFO, the default). Tried: the recording without the e-mail rows (no mail arrives, the wait
    fails), the e-mail row rendered in English (the German words are missing), Apprise's logger
    left as it is (its "Sent Email to" line names the address) and the mail counted as a detection."""
    caplog.set_level(logging.INFO)
    measured_before = _detections()
    add_users(bot_db, [7101], language="de", office_ids=[PASING_OFFICE_ID])
    chat = UserChat(fake_telegram, 7101, language_code="de")

    async def body(application: Any) -> None:
        await asyncio.to_thread(_set_address, chat, smtp, "anna@example.org", "Fertig")
        await asyncio.to_thread(_record_slot, bot_db)
        application.bot_data["sender"].wake()
        await until(lambda: len(smtp.received()) == 2 and bool(fake_telegram.sent(7101, "sendMessage")))
        await until(lambda: {r.status for r in _rows(bot_db, "email")} == {NotificationStatus.SENT})

    run_bot(mail_settings, bot_db, body)
    alert_mail = smtp.received()[1]
    assert alert_mail["To"] == "anna@example.org"
    assert "Freier Termin" in subject_of(alert_mail)
    content = text_of(alert_mail)
    assert "Personalausweis" in content and "Pasing" in content and "Buchungsseite" in content
    alerts = [
        r for r in fake_telegram.sent(7101, "sendMessage") if "Freier Termin" in str(r["params"]["text"])
    ]
    assert len(alerts) == 1
    assert len(_rows(bot_db, NotificationChannel.EMAIL)) == 1
    assert _detections() == measured_before + 1  # the mail is no second detection
    exported = store.export_user(bot_db, 7101)
    assert exported["user"]["alert_email"] == "anna@example.org"
    output = capfd.readouterr()
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]  # not aiosmtpd's
    assert "anna@example.org" not in "\n".join(ours) + output.out + output.err


def test_a_mail_server_that_is_down_gets_the_alert_once_when_it_is_back(
    mail_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi, smtp: SmtpSink
) -> None:
    """The SMTP server stops before the slot is recorded: the e-mail row is refused (retried, not
    lost, not dead) while Telegram's alert goes out; the server comes back on the same port and the
    mail arrives exactly once. Tried: a notifier that swallowed the failure as delivered (the row is
    sent and no mail ever arrives) and one that raised ``Rejected`` (the row is dead)."""
    add_users(bot_db, [7102], language="en", office_ids=[PASING_OFFICE_ID])
    chat = UserChat(fake_telegram, 7102, language_code="en")

    async def body(application: Any) -> None:
        await asyncio.to_thread(_set_address, chat, smtp, "bert@example.org", "Done")
        smtp.stop()
        await asyncio.to_thread(_record_slot, bot_db)
        application.bot_data["sender"].wake()

        def refused() -> bool:
            rows = _rows(bot_db, "email")
            return bool(rows) and (rows[0].last_error or "").startswith("SMTP server")

        await until(refused)
        assert {r.status for r in _rows(bot_db, "telegram")} == {NotificationStatus.SENT}
        smtp.start()
        await until(lambda: {r.status for r in _rows(bot_db, "email")} == {NotificationStatus.SENT})

    run_bot(mail_settings, bot_db, body)
    alerts = [m for m in smtp.received() if "Free appointment" in subject_of(m)]
    assert len(alerts) == 1 and alerts[0]["To"] == "bert@example.org"
    (row,) = _rows(bot_db, "email")
    assert row.status == NotificationStatus.SENT and row.last_error is None


def test_bad_addresses_and_wrong_codes_change_nothing_and_delete_erases_the_address(
    mail_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi, smtp: SmtpSink, tmp_path: Path
) -> None:
    """With an address confirmed: addresses that are not addresses get a clear answer and no mail;
    a new address whose code is typed wrong five times is dropped and the confirmed one stays; the
    address is stored encrypted (not in the database files); /delete erases it. Tried: accepting
    ``a@b`` (a code mail goes out, the count fails) and clearing the old address when a new one is
    typed (the kept address is gone)."""
    add_users(bot_db, [7103], language="en", office_ids=[PASING_OFFICE_ID])
    chat = UserChat(fake_telegram, 7103, language_code="en")

    async def body(application: Any) -> None:
        await asyncio.to_thread(_set_address, chat, smtp, "carla@example.org", "Done")
        mails = len(smtp.received())
        await asyncio.to_thread(chat.send, "/email", "carla@example.org")
        for bad in ("carla", "a@b", "two words@example.org", "x@@example.org"):
            await asyncio.to_thread(chat.send, bad, "does not look like an e-mail address")
        assert len(smtp.received()) == mails
        await asyncio.to_thread(chat.send, "dora@example.org", "dora@example.org")
        for _ in range(4):
            await asyncio.to_thread(chat.send, "000000x", "not right")
        await asyncio.to_thread(chat.send, "000000x", "Too many wrong codes")
        with bot_db.transaction() as session:
            user = session.get(User, 7103)
            assert (
                user is not None
                and user.alert_email == "carla@example.org"
                and user.alert_email_pending is None
            )
        files = await asyncio.to_thread(_database_bytes, tmp_path)
        assert b"SQLite format 3" in files
        assert b"carla@example.org" not in files and b"dora@example.org" not in files
        await asyncio.to_thread(chat.send, "/delete", "Erase everything")
        await asyncio.to_thread(chat.press, "Yes, erase everything", "everything about you is erased")

    run_bot(mail_settings, bot_db, body)
    with bot_db.transaction() as session:
        assert session.get(User, 7103) is None
        assert session.scalar(select(User.id).where(User.alert_email.is_not(None))) is None


def test_email_is_refused_plainly_without_a_mail_server(
    bot_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi
) -> None:
    """No SMTP settings: /email says so and starts no conversation (text after it gets the usual
    hint). Tried: /email without the check (it asks for an address)."""
    chat = UserChat(fake_telegram, 7104, language_code="en")

    async def body(application: Any) -> None:
        await asyncio.to_thread(chat.send, "/email", "no mail server configured")
        await asyncio.to_thread(chat.send, "me@example.org", "I did not understand that")

    run_bot(bot_settings, bot_db, body)


def test_email_speaks_every_language_and_a_mail_server_that_is_away_changes_nothing(
    mail_settings: Settings, bot_db: Database, fake_telegram: FakeBotApi, smtp: SmtpSink
) -> None:
    """In each of the five languages: /email asks, a bad address is refused, and a good one whose
    code mail cannot go out (the SMTP server is down) is answered with the translated failure; no
    address and no pending code are kept, and the step is over (a code typed now gets the usual
    hint). Tried: keeping the pending code after the failed mail (the database check fails) and
    the English text for every language (the German wait fails)."""
    smtp.stop()
    chats = [
        UserChat(fake_telegram, 7200 + i, language_code=lang) for i, lang in enumerate(SUPPORTED_LANGUAGES)
    ]

    def converse(chat: UserChat) -> None:
        _ = translator(chat.language_code)
        address = f"p{chat.chat_id}@example.org"
        chat.send("/email", expect=_(mail.ASK))
        chat.send("p@", expect=_(mail.BAD_ADDRESS))
        chat.send(address, expect=_(mail.MAIL_FAILED).format(address=address))

    async def body(application: Any) -> None:
        for chat in chats:
            await asyncio.to_thread(converse, chat)
        await asyncio.to_thread(chats[0].send, "123456", "I did not understand that")

    run_bot(mail_settings, bot_db, body)
    with bot_db.transaction() as session:
        users = session.scalars(select(User).where(User.id.in_([c.chat_id for c in chats]))).all()
        assert len(users) == len(SUPPORTED_LANGUAGES)
        assert all(u.alert_email is None and u.alert_email_pending is None for u in users)
    assert not smtp.received()
