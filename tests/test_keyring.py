"""The keyring (:class:`tenant2fa.Keyring`): AES-256-GCM with key ids, rotation, binding to a
purpose and a user, MACs for login values, and refusals that never leak key material."""

from __future__ import annotations

import base64

import pytest

from tenant2fa import ConfigurationError, Keyring, KeyringError

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def _ring() -> Keyring:
    return Keyring({"2025-01": KEY_A, "2026-01": KEY_B})


# -- building a keyring --------------------------------------------------------------------


def test_the_newest_key_encrypts_unless_another_primary_is_named() -> None:
    assert _ring().primary_key_id == "2026-01"
    assert _ring().key_ids == ("2025-01", "2026-01")
    older = Keyring({"2025-01": KEY_A, "2026-01": KEY_B}, primary="2025-01")
    assert older.primary_key_id == "2025-01"
    blob = older.encrypt(b"x", purpose="p", context="c")
    assert older.key_id_of(blob) == "2025-01"


def test_a_keyring_needs_a_key() -> None:
    with pytest.raises(ConfigurationError, match="at least one key"):
        Keyring({})


@pytest.mark.parametrize("key_id", ["", "a" * 65, "key id", "clé", "a:b", 7])
def test_key_ids_are_1_to_64_safe_ascii_characters(key_id: object) -> None:
    with pytest.raises(ConfigurationError, match="key ids are 1 to 64 characters"):
        Keyring({key_id: KEY_A})  # type: ignore[dict-item]


def test_the_longest_key_id_is_accepted() -> None:
    ring = Keyring({"a" * 64: KEY_A})
    assert ring.key_id_of(ring.encrypt(b"x", purpose="p", context="c")) == "a" * 64


@pytest.mark.parametrize("key", [bytes(31), bytes(33), bytes(16), "k" * 32, bytearray(32)])
def test_keys_are_exactly_32_bytes(key: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Keyring({"k1": key})  # type: ignore[dict-item]
    assert str(caught.value) == "key 'k1' must be 32 bytes"


def test_a_primary_key_id_outside_the_ring_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="primary key id 'k9' is not in the keyring"):
        Keyring({"k1": KEY_A}, primary="k9")


def test_generated_keys_are_fresh_256_bit_keys() -> None:
    assert len(Keyring.new_key()) == 32
    assert Keyring.new_key() != Keyring.new_key()
    ring = Keyring.generate("demo")
    assert ring.key_ids == ("demo",)
    assert Keyring.generate().key_ids == ("k1",)


def test_keys_round_trip_through_their_string_form_oldest_first() -> None:
    entries = [Keyring.encode_key("2025-01", KEY_A), Keyring.encode_key("2026-01", KEY_B)]
    assert all("=" not in entry for entry in entries)  # unpadded base64url
    ring = Keyring.from_strings(entries)
    assert ring.key_ids == ("2025-01", "2026-01")
    assert ring.primary_key_id == "2026-01"
    # The same keys: what one ring sealed, the other opens.
    blob = _ring().encrypt(b"secret", purpose="p", context="u")
    assert ring.decrypt(blob, purpose="p", context="u") == b"secret"


def test_the_string_form_tolerates_surrounding_whitespace_and_padding() -> None:
    padded = "k1:" + base64.urlsafe_b64encode(KEY_A).decode()
    ring = Keyring.from_strings([f"  {padded}\n"])
    assert ring.key_ids == ("k1",)
    assert (
        Keyring.from_strings([Keyring.encode_key("k1", KEY_A)]).decrypt(
            ring.encrypt(b"x", purpose="p", context="c"), purpose="p", context="c"
        )
        == b"x"
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["no-colon-here"], "keyring entries look like 'key_id:base64url-key'"),
        (["k1:" + "A" * 43, "k1:" + "B" * 43], "key id 'k1' appears twice"),
        (["k1:" + "A" * 41], "key 'k1' is not valid base64url"),
        (["k1:" + "A" * 42], "key 'k1' must be 32 bytes"),
        (["k1:Zm9v\u00e9"], "key 'k1' is not valid base64url"),
        ([], "a keyring needs at least one key"),
    ],
)
def test_a_bad_string_form_is_a_configuration_error_without_the_key(
    entries: list[str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Keyring.from_strings(entries)
    assert str(caught.value) == message


# -- encryption ----------------------------------------------------------------------------


def test_a_ciphertext_opens_only_for_its_purpose_and_context() -> None:
    ring = _ring()
    blob = ring.encrypt(b"totp secret", purpose="totp-secret", context="bob")
    assert ring.decrypt(blob, purpose="totp-secret", context="bob") == b"totp secret"
    assert b"totp secret" not in blob
    for purpose, context in [("totp-secret", "alice"), ("other", "bob"), ("totp-secretb", "ob")]:
        with pytest.raises(KeyringError, match="failed authentication"):
            ring.decrypt(blob, purpose=purpose, context=context)


def test_each_encryption_uses_a_fresh_nonce() -> None:
    ring = _ring()
    first = ring.encrypt(b"same", purpose="p", context="c")
    second = ring.encrypt(b"same", purpose="p", context="c")
    assert first != second
    assert ring.decrypt(first, purpose="p", context="c") == ring.decrypt(
        second, purpose="p", context="c"
    )


def test_the_ciphertext_layout_is_version_key_id_nonce_and_body() -> None:
    ring = _ring()
    blob = ring.encrypt(b"12345", purpose="p", context="c")
    assert blob[0] == 1
    assert blob[1] == len("2026-01")
    assert blob[2:9] == b"2026-01"
    assert len(blob) == 2 + 7 + 12 + 5 + 16  # nonce, body, GCM tag


def test_a_tampered_ciphertext_does_not_open() -> None:
    ring = _ring()
    blob = bytearray(ring.encrypt(b"secret", purpose="p", context="c"))
    blob[-1] ^= 1
    with pytest.raises(KeyringError, match="failed authentication"):
        ring.decrypt(bytes(blob), purpose="p", context="c")


def test_a_ciphertext_of_a_key_the_ring_lacks_names_the_key_id_only() -> None:
    blob = Keyring({"gone": KEY_A}).encrypt(b"secret", purpose="p", context="c")
    with pytest.raises(KeyringError) as caught:
        _ring().decrypt(blob, purpose="p", context="c")
    assert str(caught.value) == "no key with id 'gone' in the keyring"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        ("not bytes", "not a tenant2fa ciphertext"),
        (bytearray(40), "not a tenant2fa ciphertext"),
        (b"", "not a tenant2fa ciphertext"),
        (b"\x01", "not a tenant2fa ciphertext"),
        (b"\x02\x02k1" + bytes(28), "not a tenant2fa ciphertext"),
        (b"\x01\x02k1" + bytes(27), "ciphertext is truncated"),
        (b"\x01\xffk1" + bytes(40), "ciphertext is truncated"),
        (b"\x01\x02\xff\xfe" + bytes(28), "not a tenant2fa ciphertext"),
    ],
    ids=[
        "str",
        "bytearray",
        "empty",
        "version-only",
        "version-2",
        "one-byte-short",
        "key-id-longer-than-blob",
        "non-ascii-key-id",
    ],
)
def test_what_is_not_a_whole_ciphertext_is_a_keyring_error(blob: object, message: str) -> None:
    ring = _ring()
    with pytest.raises(KeyringError) as caught:
        ring.decrypt(blob, purpose="p", context="c")  # type: ignore[arg-type]
    assert str(caught.value) == message
    with pytest.raises(KeyringError):
        ring.key_id_of(blob)  # type: ignore[arg-type]


def test_the_shortest_well_formed_ciphertext_is_parsed_then_fails_authentication() -> None:
    blob = b"\x01\x07" + b"2026-01" + bytes(12 + 16)  # an empty body: only a (wrong) GCM tag
    assert _ring().key_id_of(blob) == "2026-01"
    with pytest.raises(KeyringError, match="failed authentication"):
        _ring().decrypt(blob, purpose="p", context="c")


# -- rotation ------------------------------------------------------------------------------


def test_rotation_adds_a_primary_and_old_ciphertexts_still_open_and_can_be_rewrapped() -> None:
    old = Keyring({"2025-01": KEY_A})
    blob = old.encrypt(b"secret", purpose="totp-secret", context="bob")
    new = old.with_key("2026-01", KEY_B)
    assert new.key_ids == ("2025-01", "2026-01")
    assert new.primary_key_id == "2026-01"
    assert old.key_ids == ("2025-01",)  # a new ring; the old one is unchanged
    assert new.decrypt(blob, purpose="totp-secret", context="bob") == b"secret"
    rewrapped = new.reencrypt(blob, purpose="totp-secret", context="bob")
    assert new.key_id_of(rewrapped) == "2026-01"
    assert new.decrypt(rewrapped, purpose="totp-secret", context="bob") == b"secret"
    with pytest.raises(KeyringError):
        old.decrypt(rewrapped, purpose="totp-secret", context="bob")


def test_rotating_to_an_existing_key_id_replaces_that_key_and_makes_it_primary() -> None:
    ring = _ring().with_key("2025-01", bytes(32))
    assert ring.key_ids == ("2026-01", "2025-01")
    assert ring.primary_key_id == "2025-01"


def test_reencrypting_a_ciphertext_bound_elsewhere_fails_like_decrypting_it() -> None:
    blob = _ring().encrypt(b"secret", purpose="p", context="alice")
    with pytest.raises(KeyringError):
        _ring().reencrypt(blob, purpose="p", context="bob")


# -- MACs ----------------------------------------------------------------------------------


def test_a_mac_verifies_under_its_key_id_purpose_and_message_only() -> None:
    ring = _ring()
    key_id, tag = ring.mac(b"message", purpose="login")
    assert key_id == "2026-01"
    assert len(tag) == 32
    assert ring.mac(b"message", purpose="login") == (key_id, tag)  # deterministic
    assert ring.check_mac(key_id, b"message", tag, purpose="login")
    assert not ring.check_mac(key_id, b"message!", tag, purpose="login")
    assert not ring.check_mac(key_id, b"message", tag, purpose="seal")
    assert not ring.check_mac("2025-01", b"message", tag, purpose="login")
    assert not ring.check_mac("unknown", b"message", tag, purpose="login")
    assert not ring.check_mac(key_id, b"message", tag[:-1], purpose="login")


def test_a_mac_made_before_a_rotation_still_verifies_after_it() -> None:
    old = Keyring({"2025-01": KEY_A})
    key_id, tag = old.mac(b"login", purpose="login")
    rotated = old.with_key("2026-01", KEY_B)
    assert rotated.check_mac(key_id, b"login", tag, purpose="login")
    assert rotated.mac(b"login", purpose="login")[0] == "2026-01"
    assert rotated.mac(b"login", purpose="login")[1] != tag


def test_mac_keys_are_not_the_encryption_keys() -> None:
    ring = Keyring({"k1": KEY_A})
    _, tag = ring.mac(b"", purpose="")
    assert KEY_A not in tag


def test_the_repr_names_key_ids_and_never_a_key() -> None:
    text = repr(_ring())
    assert text == "Keyring(key_ids=['2025-01', '2026-01'], primary='2026-01')"
    for key in (KEY_A, KEY_B):
        assert key.hex() not in text
        assert base64.urlsafe_b64encode(key).decode().rstrip("=") not in text
