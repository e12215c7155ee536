"""The TOTP layer: RFC 4226/6238 vectors, time steps, the window, secrets, and time-zone safety.

Vectors are from /work/shared/security/vectors.md (RFC 6238 Appendix B with errata 2866's
per-mode seeds, RFC 4226 Appendix D). Where a value is not in an RFC it is checked against
``_reference_hotp``, an independent HOTP written here on :func:`hmac.digest` and itself pinned by
RFC 4226's tables.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import random
import secrets
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Enrolled
from tenant2fa import (
    Algorithm,
    ConfigurationError,
    InvalidInput,
    Reason,
    TotpSettings,
    TwoFactor,
    totp,
)
from tenant2fa.recovery import generate_recovery_codes
from tenant2fa.testing import FakeClock, code_for, secret_of

UTC = timezone.utc

SEED20 = b"12345678901234567890"
SEED32 = SEED20 + b"123456789012"
SEED64 = SEED20 * 3 + b"1234"
SEED_FOR = {Algorithm.SHA1: SEED20, Algorithm.SHA256: SEED32, Algorithm.SHA512: SEED64}

FALL_BACK = 1730615400
"""2024-11-03 06:30 UTC: the second 01:30 in New York, the hour pyotp gets wrong."""


def _at(unix_seconds: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=unix_seconds)


def _reference_hotp(key: bytes, counter: int, digits: int = 6, digest: str = "sha1") -> str:
    """RFC 4226 §5.3 written out: HMAC, dynamic truncation, modulo, zero padding."""
    mac = hmac.digest(key, counter.to_bytes(8, "big"), digest)
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


# -- RFC 6238 Appendix B ---------------------------------------------------------------------

RFC6238_TABLE = [
    (59, 0x1, "94287082", Algorithm.SHA1),
    (59, 0x1, "46119246", Algorithm.SHA256),
    (59, 0x1, "90693936", Algorithm.SHA512),
    (1111111109, 0x23523EC, "07081804", Algorithm.SHA1),
    (1111111109, 0x23523EC, "68084774", Algorithm.SHA256),
    (1111111109, 0x23523EC, "25091201", Algorithm.SHA512),
    (1111111111, 0x23523ED, "14050471", Algorithm.SHA1),
    (1111111111, 0x23523ED, "67062674", Algorithm.SHA256),
    (1111111111, 0x23523ED, "99943326", Algorithm.SHA512),
    (1234567890, 0x273EF07, "89005924", Algorithm.SHA1),
    (1234567890, 0x273EF07, "91819424", Algorithm.SHA256),
    (1234567890, 0x273EF07, "93441116", Algorithm.SHA512),
    (2000000000, 0x3F940AA, "69279037", Algorithm.SHA1),
    (2000000000, 0x3F940AA, "90698825", Algorithm.SHA256),
    (2000000000, 0x3F940AA, "38618901", Algorithm.SHA512),
    (20000000000, 0x27BC86AA, "65353130", Algorithm.SHA1),
    (20000000000, 0x27BC86AA, "77737706", Algorithm.SHA256),
    (20000000000, 0x27BC86AA, "47863826", Algorithm.SHA512),
]


@pytest.mark.parametrize(("unix_seconds", "step", "code", "algorithm"), RFC6238_TABLE)
def test_rfc6238_appendix_b_eight_digit_codes_with_the_per_mode_seeds(
    unix_seconds: int, step: int, code: str, algorithm: Algorithm
) -> None:
    settings = TotpSettings(digits=8, algorithm=algorithm)
    assert totp.time_step(_at(unix_seconds)) == step
    assert totp.code_at(SEED_FOR[algorithm], step, settings) == code
    assert totp.matching_step(SEED_FOR[algorithm], code, step, settings) == step


@pytest.mark.parametrize(
    ("algorithm", "base32"),
    [
        (Algorithm.SHA1, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        (Algorithm.SHA256, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA"),
        (
            Algorithm.SHA512,
            (
                "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
                "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA"
            ),
        ),
    ],
)
def test_rfc_seeds_round_trip_through_unpadded_base32(algorithm: Algorithm, base32: str) -> None:
    assert totp.encode_secret(SEED_FOR[algorithm]) == base32
    assert totp.decode_secret(base32) == SEED_FOR[algorithm]


@pytest.mark.parametrize(
    ("algorithm", "wrong_seed_code"),
    [(Algorithm.SHA256, "32247374"), (Algorithm.SHA512, "69342147")],
)
def test_the_errata_2866_trap_twenty_byte_seed_is_not_what_the_rfc_table_uses(
    algorithm: Algorithm, wrong_seed_code: str
) -> None:
    settings = TotpSettings(digits=8, algorithm=algorithm)
    # The control: the RFC prose's 20-byte seed really does give these values...
    assert totp.code_at(SEED20, 1, settings) == wrong_seed_code
    # ...and the per-mode seed, which reproduces the table, does not.
    assert totp.code_at(SEED_FOR[algorithm], 1, settings) != wrong_seed_code


DERIVED_SIX_DIGIT = [
    (59, 1, "287082", "755224", "359152"),
    (1111111109, 37037036, "081804", "731029", "050471"),
    (1111111111, 37037037, "050471", "081804", "266759"),
    (1234567890, 41152263, "005924", "980357", "590587"),
    (2000000000, 66666666, "279037", "940678", "637009"),
    (20000000000, 666666666, "353130", "952948", "128202"),
]


@pytest.mark.parametrize(("unix_seconds", "step", "code", "before", "after"), DERIVED_SIX_DIGIT)
def test_six_digit_sha1_codes_at_t_and_its_neighbours_keep_leading_zeros(
    unix_seconds: int, step: int, code: str, before: str, after: str
) -> None:
    assert totp.time_step(_at(unix_seconds)) == step
    assert totp.code_at(SEED20, step) == code
    assert totp.code_at(SEED20, step - 1) == before
    assert totp.code_at(SEED20, step + 1) == after
    assert all(len(c) == 6 for c in (code, before, after))


def test_the_code_with_two_leading_zeros_is_a_six_character_string() -> None:
    assert totp.code_at(SEED20, 41152263) == "005924"


# -- RFC 4226 Appendix D ---------------------------------------------------------------------

RFC4226_TABLE = [
    (0, "cc93cf18508d94934c64b65d8ba7667fb7cde4b0", 1284755224, "755224"),
    (1, "75a48a19d4cbe100644e8ac1397eea747a2d33ab", 1094287082, "287082"),
    (2, "0bacb7fa082fef30782211938bc1c5e70416ff44", 137359152, "359152"),
    (3, "66c28227d03a2d5529262ff016a1e6ef76557ece", 1726969429, "969429"),
    (4, "a904c900a64b35909874b33e61c5938a8e15ed1c", 1640338314, "338314"),
    (5, "a37e783d7b7233c083d4f62926c7a25f238d0316", 868254676, "254676"),
    (6, "bc9cd28561042c83f219324d3c607256c03272ae", 1918287922, "287922"),
    (7, "a4fb960c0bc06e1eabb804e5b397cdc4b45596fa", 82162583, "162583"),
    (8, "1b3c89f65e6c9e883012052823443f048b4332db", 673399871, "399871"),
    (9, "1637409809a679dc698207310c8c7fc07290d9e5", 645520489, "520489"),
]


@pytest.mark.parametrize(("count", "hmac_hex", "truncated", "hotp"), RFC4226_TABLE)
def test_rfc4226_table1_hmac_sha1_of_the_eight_byte_counter(
    count: int, hmac_hex: str, truncated: int, hotp: str
) -> None:
    assert hmac.digest(SEED20, count.to_bytes(8, "big"), "sha1").hex() == hmac_hex


@pytest.mark.parametrize(("count", "hmac_hex", "truncated", "hotp"), RFC4226_TABLE)
def test_rfc4226_table2_dynamic_truncation_of_the_table1_hmac(
    count: int, hmac_hex: str, truncated: int, hotp: str
) -> None:
    mac = bytes.fromhex(hmac_hex)
    offset = mac[-1] & 0x0F
    assert int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF == truncated
    assert _reference_hotp(SEED20, count) == hotp


@pytest.mark.parametrize(("count", "hmac_hex", "truncated", "hotp"), RFC4226_TABLE)
def test_rfc4226_table2_hotp_values_from_code_at(
    count: int, hmac_hex: str, truncated: int, hotp: str
) -> None:
    assert totp.code_at(SEED20, count) == hotp


def test_totp_at_59_seconds_is_hotp_count_1() -> None:
    assert totp.code_at(SEED20, totp.time_step(_at(59))) == RFC4226_TABLE[1][3]


# -- time steps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix_seconds", "step"),
    [(0, 0), (29, 0), (30, 1), (59, 1), (60, 2), (1111111109, 37037036), (20000000000, 666666666)],
)
def test_time_step_is_the_floor_of_seconds_over_thirty(unix_seconds: int, step: int) -> None:
    assert totp.time_step(_at(unix_seconds)) == step


def test_time_step_boundary_is_between_29_and_30_seconds_at_microsecond_precision() -> None:
    assert totp.time_step(_at(30) - timedelta(microseconds=1)) == 0
    assert totp.time_step(_at(30)) == 1


def test_time_step_uses_the_configured_period() -> None:
    assert totp.time_step(_at(59), 60) == 0
    assert totp.time_step(_at(60), 60) == 1


def test_times_beyond_32_bits_of_seconds_give_exact_steps() -> None:
    assert 20000000000 > 2**32
    assert totp.time_step(_at(20000000000)) == 20000000000 // 30 == 0x27BC86AA


def test_steps_beyond_32_bits_use_the_full_eight_byte_counter() -> None:
    last_second = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    step = totp.time_step(last_second)
    assert step == 253402300799 // 30
    assert step > 2**32
    assert totp.code_at(SEED20, step) == _reference_hotp(SEED20, step)
    # A 32-bit truncated counter would give a different code.
    assert totp.code_at(SEED20, step) != totp.code_at(SEED20, step % 2**32)


def test_pre_epoch_times_floor_towards_minus_infinity() -> None:
    assert totp.time_step(_at(-1)) == -1
    assert totp.time_step(_at(-30)) == -1
    assert totp.time_step(_at(-31)) == -2


def test_code_for_a_negative_step_is_refused_as_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        totp.code_at(SEED20, -1)


def test_matching_step_skips_negative_candidates_near_the_epoch() -> None:
    assert totp.matching_step(SEED20, totp.code_at(SEED20, 0), 0) == 0
    assert totp.matching_step(SEED20, totp.code_at(SEED20, 0), -1) == 0
    assert totp.matching_step(SEED20, "000000", -5) is None


def test_a_naive_datetime_is_refused_not_guessed_at() -> None:
    naive = datetime(2026, 1, 1, 12, 0)  # noqa: DTZ001 - the naive value is what is under test
    with pytest.raises(InvalidInput):
        totp.time_step(naive)


def test_an_aware_non_utc_datetime_gives_the_step_of_the_same_instant() -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    instant = _at(FALL_BACK)
    assert totp.time_step(instant.astimezone(kolkata)) == totp.time_step(instant) == 57687180


# -- the window ------------------------------------------------------------------------------

T = 37037037


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_matching_step_accepts_the_previous_current_and_next_step(offset: int) -> None:
    code = totp.code_at(SEED20, T + offset)
    assert totp.matching_step(SEED20, code, T) == T + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_matching_step_rejects_codes_two_or_more_steps_away(offset: int) -> None:
    code = totp.code_at(SEED20, T + offset)
    # Guard against a chance collision that would make the test meaningless.
    assert code not in {totp.code_at(SEED20, T + k) for k in (-1, 0, 1)}
    assert totp.matching_step(SEED20, code, T) is None


@pytest.mark.parametrize("offset", [-1, 1])
def test_window_zero_accepts_only_the_current_step(offset: int) -> None:
    strict = TotpSettings(window=0)
    assert totp.matching_step(SEED20, totp.code_at(SEED20, T), T, strict) == T
    assert totp.matching_step(SEED20, totp.code_at(SEED20, T + offset), T, strict) is None


def test_when_two_window_steps_share_a_code_the_newest_step_is_returned() -> None:
    # Found by search: with the RFC seed, steps 153567 and 153569 both give 468457. Returning
    # the older one would let the same code be accepted again one step later.
    assert totp.code_at(SEED20, 153567) == totp.code_at(SEED20, 153569) == "468457"
    assert totp.code_at(SEED20, 153568) != "468457"
    assert totp.matching_step(SEED20, "468457", 153568) == 153569


def test_matching_step_rejects_a_wrong_code() -> None:
    assert totp.matching_step(SEED20, "000000", T) is None


def test_a_code_of_another_algorithm_does_not_match() -> None:
    sha1 = totp.code_at(SEED32, T)
    sha256 = TotpSettings(algorithm=Algorithm.SHA256)
    assert totp.code_at(SEED32, T, sha256) != sha1
    assert totp.matching_step(SEED32, sha1, T, sha256) is None


# -- secrets ---------------------------------------------------------------------------------


def test_generated_secrets_are_160_bits() -> None:
    assert len(totp.generate_secret()) == 20


def test_ten_thousand_generated_secrets_are_all_distinct() -> None:
    drawn = [totp.generate_secret() for _ in range(10**4)]
    assert all(len(s) == 20 for s in drawn)
    assert len(set(drawn)) == len(drawn)


def _poison_random_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("the non-cryptographic random module was used")

    for name in (
        "random",
        "getrandbits",
        "randbytes",
        "randint",
        "randrange",
        "choice",
        "choices",
        "sample",
        "shuffle",
        "seed",
    ):
        monkeypatch.setattr(random, name, refuse)


def test_secrets_and_recovery_codes_never_use_the_random_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _poison_random_module(monkeypatch)
    assert len(totp.generate_secret()) == 20
    codes = generate_recovery_codes(10)
    assert len(set(codes)) == 10


def test_the_secret_comes_from_secrets_token_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int | None] = []

    def fake_token_bytes(nbytes: int | None = None) -> bytes:
        asked.append(nbytes)
        return b"\x07" * (nbytes or 32)

    monkeypatch.setattr(secrets, "token_bytes", fake_token_bytes)
    assert totp.generate_secret() == b"\x07" * 20
    assert asked == [20]


def test_recovery_codes_come_from_secrets_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    def last_symbol(alphabet: str) -> str:
        return alphabet[-1]

    monkeypatch.setattr(secrets, "choice", last_symbol)
    assert generate_recovery_codes(1) == ("ZZZZ-ZZZZ-ZZZZ-ZZZZ",)


def test_decode_secret_accepts_128_bits_in_any_case_with_spaces_and_padding() -> None:
    secret = bytes(range(16))
    text = totp.encode_secret(secret)
    assert "=" not in text
    assert totp.decode_secret(text) == secret
    assert totp.decode_secret(text.lower()) == secret
    assert totp.decode_secret(" ".join(text[i : i + 4] for i in range(0, len(text), 4))) == secret
    assert totp.decode_secret(text + "======") == secret


@pytest.mark.parametrize("length", [1, 10, 15])
def test_decode_secret_rejects_secrets_under_128_bits_without_echoing_them(length: int) -> None:
    text = totp.encode_secret(b"\xa5" * length)
    with pytest.raises(InvalidInput) as caught:
        totp.decode_secret(text)
    assert text not in str(caught.value)
    assert text.lower() not in str(caught.value).lower()


@pytest.mark.parametrize(
    "text",
    [
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ!",
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1",
        "GEZDGNBVGY3TQOJQ=GEZDGNBVGY3TQOJQ",
        "\uff27EZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ\u200b",
        "",
    ],
)
def test_decode_secret_rejects_non_base32_without_echoing_it(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        totp.decode_secret(text)
    message = str(caught.value)
    assert "GEZDGNBV" not in message.upper()
    assert repr(text) not in message


def test_decode_secret_rejects_a_non_string_with_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        totp.decode_secret(SEED20)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["A", "AAA", "AAAAAA", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQA"])
def test_decode_secret_rejects_a_base32_length_no_secret_has_without_echoing_it(
    text: str,
) -> None:
    # Base32 letters only, but 1, 3 or 6 characters past a multiple of 8 encode no whole byte.
    with pytest.raises(InvalidInput) as caught:
        totp.decode_secret(text)
    assert str(caught.value) == "the secret is not valid Base32"


# -- settings --------------------------------------------------------------------------------


def test_the_default_settings_are_what_authenticator_apps_read() -> None:
    assert TotpSettings() == TotpSettings(digits=6, period=30, algorithm=Algorithm.SHA1, window=1)


@pytest.mark.parametrize(
    "kwargs",
    [{"digits": 8}, {"period": 15}, {"period": 300}, {"window": 0}],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_settings_at_their_bounds_are_accepted(kwargs: dict[str, Any]) -> None:
    settings = TotpSettings(**kwargs)
    for name, value in kwargs.items():
        assert getattr(settings, name) == value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digits": 7}, "digits must be 6 or 8 (the Key URI format allows no other)"),
        ({"digits": 10}, "digits must be 6 or 8 (the Key URI format allows no other)"),
        ({"period": 14}, "period must be between 15 and 300 seconds"),
        ({"period": 301}, "period must be between 15 and 300 seconds"),
        ({"window": 2}, "window must be 0 or 1 (RFC 6238 recommends at most 1)"),
        ({"window": -1}, "window must be 0 or 1 (RFC 6238 recommends at most 1)"),
    ],
    ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else "",
)
def test_other_settings_are_a_configuration_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TotpSettings(**kwargs)
    assert str(caught.value) == message


# -- time zones and daylight saving ----------------------------------------------------------

_TZ_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from datetime import datetime, timezone
    from tenant2fa import totp

    t = int(sys.argv[1])
    secret = b"12345678901234567890"
    instant = datetime.fromtimestamp(t, timezone.utc)
    step = totp.time_step(instant)
    hour_ago = totp.code_at(secret, step - 120)
    # The naive-local-time path pyotp takes: shows this environment does trigger the trap.
    naive_step = int(time.mktime(datetime.fromtimestamp(t).timetuple())) // 30
    print(json.dumps({
        "gmtoff": time.localtime(t).tm_gmtoff,
        "step": step,
        "code": totp.code_at(secret, step),
        "accepts_current": totp.matching_step(secret, totp.code_at(secret, step), step),
        "accepts_hour_ago": totp.matching_step(secret, hour_ago, step),
        "naive_step": naive_step,
    }))
    """
)


@pytest.mark.parametrize(
    ("tz", "gmtoff", "naive_step_differs"),
    [("America/New_York", -5 * 3600, True), ("Asia/Kolkata", 5 * 3600 + 1800, False)],
)
def test_time_step_and_code_ignore_the_process_time_zone(
    tz: str, gmtoff: int, naive_step_differs: bool
) -> None:
    expected_step = FALL_BACK // 30
    assert expected_step == 57687180
    expected_code = _reference_hotp(SEED20, expected_step)
    assert expected_code == "066758"
    completed = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT, str(FALL_BACK)],
        env={**os.environ, "TZ": tz},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = json.loads(completed.stdout)
    assert out["gmtoff"] == gmtoff, "the TZ setting did not take effect in the child"
    assert out["step"] == expected_step
    assert out["code"] == expected_code
    assert out["accepts_current"] == expected_step
    assert out["accepts_hour_ago"] is None
    assert (out["naive_step"] != expected_step) is naive_step_differs


_FALL_BACK_LOGIN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from datetime import datetime, timedelta, timezone

    from conftest import enroll_bob
    from tenant2fa import Config, Keyring, MemoryStorage, RecoveryCodeHasher, TwoFactor, totp
    from tenant2fa.testing import FakeClock, code_for

    fall_back = int(sys.argv[1])
    # The conftest ``tf`` fixture's service, in the New York fall-back hour.
    clock = FakeClock(datetime(2024, 11, 3, 6, 30, tzinfo=timezone.utc))
    tf = TwoFactor(
        storage=MemoryStorage(),
        keyring=Keyring.generate(),
        clock=clock,
        config=Config(issuer="Onum", recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    bob = enroll_bob(tf, clock)
    clock.advance(seconds=30)
    hour_old = code_for(tf, "bob", at=clock.now() - timedelta(hours=1))
    current = code_for(tf, "bob")
    refused = tf.verify_code(bob.login, "B", hour_old)
    accepted = tf.verify_code(bob.login, "B", current)
    print(json.dumps({
        "gmtoff": time.localtime(fall_back).tm_gmtoff,
        "step": totp.time_step(clock.now()),
        "codes_differ": hour_old != current,
        "refused": [refused.ok, refused.reason.name],
        "accepted": [accepted.ok, accepted.reason.name],
    }))
    """
)


def test_at_the_fall_back_hour_the_current_code_verifies_and_the_hour_old_one_does_not() -> None:
    # The service runs in a child whose TZ is New York: changing this process's TZ would leak into
    # every test after this one (and into other threads while it ran).
    tests = str(Path(__file__).resolve().parent)  # for conftest.enroll_bob
    python_path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    completed = subprocess.run(
        [sys.executable, "-c", _FALL_BACK_LOGIN_SCRIPT, str(FALL_BACK)],
        env={**os.environ, "TZ": "America/New_York", "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    out = json.loads(completed.stdout)
    assert out["gmtoff"] == -5 * 3600, "the TZ setting did not take effect in the child"
    assert out["step"] == 57687181
    assert out["codes_differ"] is True
    assert out["refused"] == [False, Reason.INVALID.name]
    assert out["accepted"] == [True, Reason.OK.name]


# -- a clock that steps backwards ------------------------------------------------------------


@pytest.mark.parametrize(
    "back",
    [timedelta(seconds=30), timedelta(seconds=60), timedelta(hours=1), timedelta(days=1)],
)
def test_a_clock_stepping_back_never_makes_a_used_code_valid_again(
    tf: TwoFactor, clock: FakeClock, enrolled: Enrolled, back: timedelta
) -> None:
    clock.advance(seconds=150)
    used_at = clock.now()
    code = code_for(tf, "bob")
    assert tf.verify_code(enrolled.login, "B", code).ok

    clock.set(used_at - back)
    replay = tf.verify_code(enrolled.login, "B", code)
    assert (replay.ok, replay.reason) == (False, Reason.INVALID)
    # Nor does the code that the earlier clock reading would show: that step is in the past too.
    earlier = tf.verify_code(enrolled.login, "B", code_for(tf, "bob"))
    assert not earlier.ok

    clock.set(used_at)
    again = tf.verify_code(enrolled.login, "B", code)
    assert (again.ok, again.reason) == (False, Reason.INVALID)


def test_a_pre_epoch_clock_gives_a_non_ok_result_not_an_exception(
    tf: TwoFactor, clock: FakeClock, enrolled: Enrolled
) -> None:
    clock.set(_at(-15))
    # Step -1: the window's only non-negative candidate is step 0, long before bob's last use.
    step_zero = totp.code_at(secret_of(tf, "bob"), 0)
    result = tf.verify_code(enrolled.login, "B", step_zero)
    assert (result.ok, result.reason) == (False, Reason.INVALID)


@settings(max_examples=300, deadline=None)
@given(
    secret=st.binary(min_size=16, max_size=64),
    counter=st.integers(min_value=0, max_value=2**63 - 1),
    digits=st.sampled_from([6, 8]),
    algorithm=st.sampled_from(Algorithm),
)
def test_the_verifying_hotp_agrees_with_pyotp_for_any_secret_and_counter(
    secret: bytes, counter: int, digits: int, algorithm: Algorithm
) -> None:
    """matching_step computes HOTP with hmac.digest itself (the fast path); pyotp, which code_at
    uses, is the oracle, and the RFC tables above pin both."""
    oracle = pyotp.HOTP(
        base64.b32encode(secret).decode(), digits=digits, digest=algorithm.digestmod
    )
    expected = oracle.at(counter)
    assert totp._hotp(secret, counter, digits, algorithm.hash_name) == expected.encode()
    settings = TotpSettings(digits=digits, algorithm=algorithm)
    assert totp.code_at(secret, counter, settings) == expected
    found = totp.matching_step(secret, expected, counter, settings)
    assert found is not None
    assert found >= counter  # the newest step with this code wins (a collision is newer)
