"""Personal data is encrypted at rest: keys, the key file, and what actually lands on disk."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from shared.crypto import (
    Cipher,
    CipherNotConfiguredError,
    DecryptionError,
    InvalidKeyError,
    configure_cipher,
    generate_key,
)
from shared.db.engine import session_scope, wal_checkpoint
from shared.db.models import Booking, BookingProfile, Check, Target, User
from shared.domain import CheckOutcome, utcnow
from shared.settings import Settings

from .conftest import Database

FIRST = "Zephyrine"
LAST = "Quackenbusch-Ødegård"
EMAIL = "zephyrine.quackenbusch@example.org"
PHONE = "+49 170 9876543210"
CUSTOM = "Aktenzeichen XJ-4711-QQ"
AUTH_KEY = "authkey-7f3a9c1e5d"
CANARY = "plaintext-canary-31337"


def test_roundtrip_and_rotation() -> None:
    old, new = generate_key(), generate_key()
    token = Cipher(old).encrypt("Grüß Gott")
    assert "Grüß" not in token
    assert Cipher(f"{new},{old}").decrypt(token) == "Grüß Gott"  # old key still decrypts
    with pytest.raises(DecryptionError, match="cannot be decrypted"):
        Cipher(new).decrypt(token)


def test_invalid_key_is_a_clear_error_without_the_key() -> None:
    with pytest.raises(InvalidKeyError) as info:
        Cipher("not-a-fernet-key-secret123", origin="MTA_ENCRYPTION_KEY")
    assert "MTA_ENCRYPTION_KEY" in str(info.value)
    assert "Fernet" in str(info.value)
    assert "secret123" not in str(info.value)


def test_key_from_settings_wins(tmp_path: Path) -> None:
    key = generate_key()
    cipher = Cipher.from_settings(Settings(data_dir=tmp_path, encryption_key=SecretStr(key)))
    assert Cipher(key).decrypt(cipher.encrypt("x")) == "x"
    assert not (tmp_path / "encryption.key").exists()
    assert key not in repr(cipher)


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = Cipher.from_settings(settings)
    key_file = tmp_path / "data" / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = Cipher.from_settings(settings)
    assert again.decrypt(first.encrypt("same key")) == "same key"
    assert [p.name for p in key_file.parent.iterdir()] == ["encryption.key"]  # no temp files left


def test_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "encryption.key").write_text("garbage\n")
    with pytest.raises(InvalidKeyError, match="key file"):
        Cipher.from_settings(Settings(data_dir=tmp_path))


def test_encrypted_columns_refuse_to_work_without_a_cipher(db: Database) -> None:
    configure_cipher(None)
    # SQLAlchemy wraps errors raised while binding parameters
    with pytest.raises(StatementError) as info, session_scope(db.sessions) as session:
        session.add(User(id=1, profiles=[BookingProfile(first_name=FIRST)]))
        session.flush()
    assert isinstance(info.value.orig, CipherNotConfiguredError)


def _store_profile(db: Database) -> None:
    with session_scope(db.sessions) as session:
        session.add(
            User(
                id=4242,
                profiles=[
                    BookingProfile(
                        first_name=FIRST,
                        last_name=LAST,
                        email=EMAIL,
                        phone=PHONE,
                        custom_fields={"customTextfield": CUSTOM},
                    )
                ],
                bookings=[
                    Booking(service_id=1063475, office_id=102522, process_id="998877", auth_key=AUTH_KEY)
                ],
            )
        )
        target = Target(service_id=1, service_count=1, office_key="1")
        session.add(target)
        session.flush()
        # a value that is NOT encrypted: proves the byte search below would find plaintext
        session.add(
            Check(target_id=target.id, started_at=utcnow(), outcome=CheckOutcome.OK, worker_id=CANARY)
        )


def _assert_reads_back(db: Database) -> None:
    with session_scope(db.sessions) as session:
        profile = session.scalars(select(BookingProfile)).one()
        assert (profile.first_name, profile.last_name, profile.email, profile.phone) == (
            FIRST,
            LAST,
            EMAIL,
            PHONE,
        )
        assert profile.custom_fields == {"customTextfield": CUSTOM}
        assert session.scalars(select(Booking.auth_key)).one() == AUTH_KEY
        assert FIRST not in repr(profile)


SECRETS = [FIRST, LAST, EMAIL, PHONE, CUSTOM, AUTH_KEY, "Quackenbusch", "example.org", "9876543210"]


def test_sqlite_file_holds_no_plaintext(sqlite_db: Database) -> None:
    _store_profile(sqlite_db)
    db_file = Path(str(sqlite_db.engine.url.database))
    wal = db_file.with_name(db_file.name + "-wal")

    wal_bytes = wal.read_bytes()
    assert CANARY.encode() in wal_bytes  # the committed data is in the WAL right now
    for secret in SECRETS:
        assert secret.encode("utf-8") not in wal_bytes, secret

    wal_checkpoint(sqlite_db.engine)
    assert wal.stat().st_size == 0
    db_bytes = db_file.read_bytes()
    assert CANARY.encode() in db_bytes  # checkpointed into the main file
    for secret in SECRETS:
        assert secret.encode("utf-8") not in db_bytes, secret
    _assert_reads_back(sqlite_db)


def test_stored_columns_are_ciphertext(db: Database) -> None:
    _store_profile(db)
    with db.engine.connect() as conn:
        raw = conn.execute(
            text("SELECT first_name, last_name, email, phone, custom_fields FROM booking_profiles")
        ).one()
        raw_auth = conn.execute(text("SELECT process_id, auth_key FROM bookings")).one()
    for value in [*raw, *raw_auth]:
        assert value.startswith("gAAAA")  # Fernet token
        for secret in SECRETS:
            assert secret not in value
    _assert_reads_back(db)


def test_wrong_key_fails_loudly_on_read(db: Database) -> None:
    _store_profile(db)
    configure_cipher(Cipher(generate_key()))
    with pytest.raises(DecryptionError), session_scope(db.sessions) as session:
        session.scalars(select(BookingProfile)).one()
