"""Key rotation: every stored secret re-encrypted under the newest key, resumable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenant2fa import (
    AuditKind,
    Config,
    ConfigurationError,
    Keyring,
    Reason,
    RecoveryCodeHasher,
    RotationReport,
    TwoFactor,
)
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.testing import FakeClock, code_for, pending_code_for

CONFIG = Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4))
USERS = [f"user-{i:02d}" for i in range(12)]


class Interrupted(Exception):
    pass


def _world(path: Path) -> tuple[TwoFactor, FakeClock]:
    clock = FakeClock()
    tf = TwoFactor(
        storage=SQLiteStorage(path),
        keyring=Keyring({"2025": Keyring.new_key()}),
        clock=clock,
        config=CONFIG,
    )
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    for user in USERS:
        tf.add_member("B", user, operator="host")
        login = tf.start_session(user)
        tf.begin_enrollment(login)
        assert tf.confirm_enrollment(login, pending_code_for(tf, user)).ok
    # Someone is in the middle of enrolling: a pending ciphertext to re-encrypt too.
    tf.begin_enrollment(tf.start_session("newcomer"))
    clock.advance(seconds=30)
    return tf, clock


def _key_ids(tf: TwoFactor) -> set[str]:
    ids = set()
    for sealed in tf.storage.sealed_secrets(after_user_id=None, limit=1000):
        for blob in (sealed.secret, sealed.pending_secret):
            if blob is not None:
                ids.add(tf.keyring.key_id_of(blob))
    return ids


def test_rotation_reencrypts_every_secret_and_codes_keep_working(tmp_path: Path) -> None:
    old, clock = _world(tmp_path / "k.sqlite3")
    ring = old.keyring.with_key("2026", Keyring.new_key())
    tf = TwoFactor(storage=old.storage, keyring=ring, clock=clock, config=CONFIG)
    assert _key_ids(tf) == {"2025"}
    report = tf.rotate_keys(batch=5)
    assert report == RotationReport(rewrapped=len(USERS) + 1, last_user_id=report.last_user_id)
    assert _key_ids(tf) == {"2026"}
    # The old key can now leave the ring: a keyring with only the new key still verifies codes.
    only_new = TwoFactor(
        storage=old.storage,
        keyring=Keyring({"2026": ring_key(ring, "2026")}),
        clock=clock,
        config=CONFIG,
    )
    login = only_new.start_session(USERS[3])
    assert only_new.verify_code(login, "B", code_for(only_new, USERS[3])).ok
    (record,) = tf.audit_log(kinds=frozenset({AuditKind.KEYS_ROTATED}))
    assert record.detail["key_id"] == "2026"
    assert record.detail["rewrapped"] == str(len(USERS) + 1)


def ring_key(ring: Keyring, key_id: str) -> bytes:
    # Tests only: read a key back out of the ring to build a smaller one.
    return ring._keys[key_id]


def test_an_interrupted_rotation_resumes_where_it_stopped(tmp_path: Path) -> None:
    old, clock = _world(tmp_path / "k.sqlite3")
    ring = old.keyring.with_key("2026", Keyring.new_key())
    tf = TwoFactor(storage=old.storage, keyring=ring, clock=clock, config=CONFIG)
    seen: list[RotationReport] = []

    def stop_after_first_batch(report: RotationReport) -> None:
        seen.append(report)
        raise Interrupted

    with pytest.raises(Interrupted):
        tf.rotate_keys(batch=4, progress=stop_after_first_batch)
    assert seen[0].rewrapped == 4
    assert _key_ids(tf) == {"2025", "2026"}  # half done, and everything still works meanwhile
    for user in (USERS[0], USERS[-1]):
        assert tf.verify_code(tf.start_session(user), "B", code_for(tf, user)).ok

    resumed = tf.rotate_keys(batch=4)
    assert resumed.current == 4  # the first batch is recognised as done, not re-encrypted
    assert resumed.rewrapped == len(USERS) + 1 - 4
    assert _key_ids(tf) == {"2026"}
    again = tf.rotate_keys(batch=4, after_user_id=None)
    assert (again.rewrapped, again.current) == (0, len(USERS) + 1)


def test_a_secret_no_key_opens_is_reported_and_left_alone(tmp_path: Path) -> None:
    old, clock = _world(tmp_path / "k.sqlite3")
    stranger = TwoFactor(
        storage=old.storage, keyring=Keyring({"other": Keyring.new_key()}), clock=clock
    )
    report = stranger.rotate_keys()
    assert report.rewrapped == 0
    assert len(report.failed) == len(USERS) + 1
    assert _key_ids(old) == {"2025"}
    assert old.verify_code(old.start_session(USERS[1]), "B", code_for(old, USERS[1])).reason is (
        Reason.OK
    )


def test_a_ring_with_the_right_key_id_but_the_wrong_key_is_reported_not_taken_for_done(
    tmp_path: Path,
) -> None:
    old, clock = _world(tmp_path / "k.sqlite3")
    impostor = TwoFactor(
        storage=old.storage, keyring=Keyring({"2025": Keyring.new_key()}), clock=clock
    )
    report = impostor.rotate_keys()
    assert report.current == 0
    assert len(report.failed) == len(USERS) + 1


def test_a_key_id_given_twice_is_refused() -> None:
    entry = Keyring.encode_key("k1", Keyring.new_key())
    with pytest.raises(ConfigurationError, match="twice"):
        Keyring.from_strings([entry, Keyring.encode_key("k1", Keyring.new_key())])
    assert Keyring.from_strings([entry]).key_ids == ("k1",)
