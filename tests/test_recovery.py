"""Recovery codes (:mod:`tenant2fa.recovery`): their format, the one normalisation, and the salted
scrypt set that storage keeps instead of the codes."""

from __future__ import annotations

import re

import pytest

from tenant2fa import ConfigurationError, RecoveryCodeHasher
from tenant2fa.recovery import (
    ALPHABET,
    RecoveryCodeSet,
    generate_recovery_codes,
    normalize_recovery_code,
)

DISPLAY = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}")
CHEAP = RecoveryCodeHasher(n=2**4)


def test_the_alphabet_is_crockfords_base32() -> None:
    assert len(ALPHABET) == 32
    assert set(ALPHABET).isdisjoint("ILOU")


@pytest.mark.parametrize("count", [1, 10, 100])
def test_codes_are_distinct_and_shown_in_four_groups_of_four(count: int) -> None:
    codes = generate_recovery_codes(count)
    assert len(codes) == count
    assert len(set(codes)) == count
    assert all(DISPLAY.fullmatch(code) for code in codes)


def test_the_default_is_ten_codes() -> None:
    assert len(generate_recovery_codes()) == 10


@pytest.mark.parametrize("count", [0, -1, 101])
def test_a_count_outside_1_to_100_is_a_configuration_error(count: int) -> None:
    with pytest.raises(ConfigurationError, match="between 1 and 100"):
        generate_recovery_codes(count)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("ABCD-EFGH-JKMN-PQRS", "ABCDEFGHJKMNPQRS"),
        ("abcd efgh jkmn pqrs", "ABCDEFGHJKMNPQRS"),
        ("ABCDEFGHJKMNPQRS", "ABCDEFGHJKMNPQRS"),
        # Crockford's look-alikes, as people copy them by hand.
        ("OOOO-IIII-LLLL-oill", "0000111111110111"),
        ("  0123-4567-89AB-CDEF  ", "0123456789ABCDEF"),
        ("-" * 48 + "0123456789ABCDEF", "0123456789ABCDEF"),
    ],
)
def test_a_typed_code_is_read_in_its_canonical_form(typed: str, canonical: str) -> None:
    assert normalize_recovery_code(typed) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        None,
        1234567890123456,
        b"ABCD-EFGH-JKMN-PQRS",
        "",
        "ABCD-EFGH-JKMN-PQR",
        "ABCD-EFGH-JKMN-PQRST",
        "ABCD-EFGH-JKMN-PQRU",  # U is not in the alphabet
        "ABCD_EFGH_JKMN_PQRS",
        "ABCD-EFGH-JKMN-PQR\u017f",  # long s: upper-cases to an ASCII S
        "-" * 49 + "0123456789ABCDEF",  # longer than any typed code
    ],
)
def test_anything_else_is_not_a_recovery_code(raw: object) -> None:
    assert normalize_recovery_code(raw) is None


@pytest.mark.parametrize("n", [0, 1, 3, 2**14 + 1, -(2**4)])
def test_scrypt_n_must_be_a_power_of_two(n: int) -> None:
    with pytest.raises(ConfigurationError, match="power of two"):
        RecoveryCodeHasher(n=n)


def test_the_default_hasher_is_scrypt_n_2_14_r_8_p_1() -> None:
    assert RecoveryCodeHasher() == RecoveryCodeHasher(n=2**14, r=8, p=1)
    assert RecoveryCodeHasher(n=2).n == 2


def test_a_set_keeps_one_digest_per_code_under_one_fresh_salt() -> None:
    codes = generate_recovery_codes(5)
    stored = CHEAP.new_set(codes)
    assert len(stored.salt) == 16
    assert len(stored.digests) == 5
    assert all(len(digest) == 32 for digest in stored.digests)
    assert len(set(stored.digests)) == 5
    assert CHEAP.new_set(codes).salt != stored.salt


def test_a_typed_code_is_found_by_the_digest_of_its_canonical_form() -> None:
    codes = generate_recovery_codes(3)
    stored = CHEAP.new_set(codes)
    for code, digest in zip(codes, stored.digests, strict=True):
        typed = code.lower().replace("-", " ")
        canonical = normalize_recovery_code(typed)
        assert canonical is not None
        assert CHEAP.digest(canonical, stored.salt) == digest
    assert CHEAP.digest("0" * 16, stored.salt) not in stored.digests


def test_digests_depend_on_the_salt_and_the_cost() -> None:
    salt = bytes(16)
    digest = CHEAP.digest("ABCDEFGHJKMNPQRS", salt)
    assert CHEAP.digest("ABCDEFGHJKMNPQRS", salt) == digest
    assert CHEAP.digest("ABCDEFGHJKMNPQRS", bytes(15) + b"\x01") != digest
    assert RecoveryCodeHasher(n=2**5).digest("ABCDEFGHJKMNPQRS", salt) != digest


def test_the_set_repr_counts_digests_and_shows_neither_salt_nor_digest() -> None:
    stored = CHEAP.new_set(generate_recovery_codes(4))
    text = repr(stored)
    assert text == "RecoveryCodeSet(<4 digests>)"
    assert stored.salt.hex() not in text
    assert RecoveryCodeSet(salt=b"s", digests=()).__repr__() == "RecoveryCodeSet(<0 digests>)"
