"""Bad input and replay through the public service API (bar.md §8 items 1-11).

Every input that is not a code gives a ``MALFORMED`` result: never an exception, never ``ok``, and
never a charge against the user's throttle. A wrong code and a replayed code give ``INVALID`` and
are indistinguishable to the caller.
"""

from __future__ import annotations

import dataclasses

import pytest

from conftest import Enrolled, enroll_bob
from tenant2fa import EnrollmentState, LoginSession, Reason, TwoFactor, VerifyResult, totp
from tenant2fa.testing import FakeClock, code_for, pending_code_for, secret_of

TEN_MEGABYTES = "1" * (10 * 1024 * 1024)

NOT_CODES: list[tuple[str, object]] = [
    # §8.8 length errors
    ("empty", ""),
    ("five-digits", "12345"),
    ("seven-digits", "1234567"),
    ("leading-extra-zero", "0123456"),
    ("eight-digits-when-six", "12345678"),
    ("only-spaces", "      "),
    ("ten-megabytes", TEN_MEGABYTES),
    # §8.9 wrong types
    ("none", None),
    ("int", 123456),
    ("int-lost-leading-zeros", 5924),
    ("bytes", b"123456"),
    ("bytearray", bytearray(b"123456")),
    ("float", 123456.0),
    ("list", ["123456"]),
    ("dict", {"code": "123456"}),
    ("true", True),
    ("false", False),
    # §8.6 non-ASCII digits
    ("full-width", "\uff11\uff12\uff13\uff14\uff15\uff16"),
    ("arabic-indic", "\u0661\u0662\u0663\u0664\u0665\u0666"),
    ("extended-arabic-indic", "\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6"),
    ("devanagari", "\u0967\u0968\u0969\u096a\u096b\u096c"),
    ("superscripts", "\u00b9\u00b2\u00b3\u2074\u2075\u2076"),
    ("superscript-two-at-end", "12345\u00b2"),
    ("mixed-full-width", "12345\uff16"),
    # §8.7 what int() and float() accept
    ("underscores", "1_2_3_4_5_6"),
    ("plus-sign", "+123456"),
    ("minus-sign", "-123456"),
    ("hex", "0x1E240"),
    ("exponent", "1.23456e5"),
    ("decimal-point", "12345.6"),
    # §8.10 invisible and control characters
    ("zero-width-space", "123\u200b456"),
    ("right-to-left-override", "\u202e654321"),
    ("byte-order-mark", "\ufeff123456"),
    ("nul", "123456\x00"),
    ("no-break-space", "123\u00a0456"),
    ("ideographic-space", "123\u3000456"),
    ("trailing-newline", "123456\n"),
    ("leading-tab", "\t123456"),
    ("hyphen", "123-456"),
    # §8.11 autofill junk and injection
    ("autofill-dots", "\u25cf\u25cf\u25cf\u25cf\u25cf\u25cf"),
    ("html-script", "<script>alert(1)</script>"),
    ("html-img", '<img src=x onerror="alert(1)">'),
    ("json-object", '{"code": "123456"}'),
    ("json-string", '"123456"'),
    ("sql", "'; DROP TABLE factors; --"),
    ("template", "${jndi:ldap://x/a}"),
    ("percent-encoded", "%31%32%33%34%35%36"),
]

NOT_RECOVERY_CODES: list[tuple[str, object]] = [
    ("none", None),
    ("int", 123456),
    ("bytes", b"ABCD-EFGH-JKMN-PQRS"),
    ("list", ["ABCD-EFGH-JKMN-PQRS"]),
    ("dict", {"code": "ABCD-EFGH-JKMN-PQRS"}),
    ("true", True),
    ("empty", ""),
    ("too-short", "ABCD-EFGH-JKMN-PQR"),
    ("too-long", "ABCD-EFGH-JKMN-PQRST"),
    ("not-crockford", "ABCD-EFGH-JKMN-PQRU"),
    ("full-width", "\uff21BCD-EFGH-JKMN-PQRS"),
    # Non-ASCII letters that str.upper() turns into ASCII ones: long s -> S, sharp s -> SS.
    ("long-s", "ABCD-EFGH-JKMN-PQR\u017f"),
    ("sharp-s", "ABCD-EFGH-JKMN-PQ\u00df"),
    ("dotless-i", "ABCD-EFGH-JKMN-PQR\u0131"),
    ("sixteen-digit-int", 1234567890123456),
    ("ten-megabytes", TEN_MEGABYTES),
    ("autofill-dots", "\u25cf" * 16),
    ("html-script", "<script>alert(1)</script>"),
    ("six-digit-totp", "123456"),
]


def _ids(cases: list[tuple[str, object]]) -> list[str]:
    return [name for name, _ in cases]


def _values(cases: list[tuple[str, object]]) -> list[object]:
    return [value for _, value in cases]


def _outcome(result: VerifyResult) -> tuple[object, ...]:
    """Every field of a result except the login it carries."""
    return tuple(getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "login")


def _wrong_code(tf: TwoFactor) -> str:
    """A well-formed code that no step within ±2 of now produces for bob."""
    near = {code_for(tf, "bob", offset=k) for k in range(-2, 3)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def _failures(tf: TwoFactor) -> int:
    return tf.user_status("bob").failures


@pytest.fixture
def fresh(clock: FakeClock, enrolled: Enrolled) -> Enrolled:
    """``enrolled``, five steps later: the current step has never been used."""
    clock.advance(seconds=150)
    return enrolled


@pytest.fixture
def pending(tf: TwoFactor, clock: FakeClock) -> LoginSession:
    """Bob's login with an enrollment begun in tenant B (2FA on) but not confirmed."""
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    clock.advance(seconds=1)
    login = tf.start_session("bob")
    tf.begin_enrollment(login)
    return login


# -- inputs that are not codes ---------------------------------------------------------------


@pytest.mark.parametrize("code", _values(NOT_CODES), ids=_ids(NOT_CODES))
def test_verify_code_calls_a_non_code_malformed_and_does_not_charge_it(
    tf: TwoFactor, fresh: Enrolled, code: object
) -> None:
    tf.verify_code(fresh.login, "B", _wrong_code(tf))
    assert _failures(tf) == 1
    result = tf.verify_code(fresh.login, "B", code)
    assert (result.ok, result.reason, result.retry_at) == (False, Reason.MALFORMED, None)
    assert result.login == fresh.login
    assert _failures(tf) == 1
    # The real code still works afterwards: nothing was consumed or locked.
    assert tf.verify_code(fresh.login, "B", code_for(tf, "bob")).ok


@pytest.mark.parametrize("code", _values(NOT_CODES), ids=_ids(NOT_CODES))
def test_confirm_enrollment_calls_a_non_code_malformed_and_keeps_the_pending_secret(
    tf: TwoFactor, pending: LoginSession, code: object
) -> None:
    result = tf.confirm_enrollment(pending, code)
    assert (result.ok, result.reason, result.recovery_codes) == (False, Reason.MALFORMED, ())
    status = tf.user_status("bob")
    assert status.failures == 0
    assert status.state is EnrollmentState.PENDING
    assert tf.confirm_enrollment(pending, pending_code_for(tf, "bob")).ok


@pytest.mark.parametrize("code", _values(NOT_RECOVERY_CODES), ids=_ids(NOT_RECOVERY_CODES))
def test_use_recovery_code_calls_junk_malformed_and_does_not_charge_it(
    tf: TwoFactor, fresh: Enrolled, code: object
) -> None:
    result = tf.use_recovery_code(fresh.login, "B", code)
    assert (result.ok, result.reason, result.recovery_codes_left) == (False, Reason.MALFORMED, None)
    assert _failures(tf) == 0
    assert tf.user_status("bob").recovery_codes_left == len(fresh.recovery_codes)


def test_a_code_with_ascii_spaces_inside_is_the_same_code(tf: TwoFactor, fresh: Enrolled) -> None:
    code = code_for(tf, "bob")
    assert tf.verify_code(fresh.login, "B", f" {code[:3]} {code[3:]} ").ok


# -- wrong, replayed and out-of-window codes -------------------------------------------------


def test_a_wrong_code_is_invalid_and_charged(tf: TwoFactor, fresh: Enrolled) -> None:
    result = tf.verify_code(fresh.login, "B", _wrong_code(tf))
    assert (result.ok, result.reason, result.retry_at) == (False, Reason.INVALID, None)
    assert result.login == fresh.login
    assert _failures(tf) == 1


def test_a_wrong_confirming_code_is_invalid_and_charged(
    tf: TwoFactor, pending: LoginSession
) -> None:
    near = {pending_code_for(tf, "bob", offset=k) for k in range(-1, 2)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in near)
    result = tf.confirm_enrollment(pending, wrong)
    assert (result.ok, result.reason) == (False, Reason.INVALID)
    assert _failures(tf) == 1
    assert tf.user_status("bob").state is EnrollmentState.PENDING


def test_a_replayed_code_and_a_wrong_code_give_equal_results(
    tf: TwoFactor, fresh: Enrolled
) -> None:
    code = code_for(tf, "bob")
    assert tf.verify_code(fresh.login, "B", code).ok
    replayed = tf.verify_code(fresh.login, "B", code)
    wrong = tf.verify_code(fresh.login, "B", _wrong_code(tf))
    assert (replayed.ok, replayed.reason, replayed.retry_at) == (False, Reason.INVALID, None)
    assert _outcome(replayed) == _outcome(wrong)
    assert replayed.login == wrong.login == fresh.login


def test_the_code_that_confirmed_enrollment_cannot_also_log_in(
    tf: TwoFactor, enrolled: Enrolled
) -> None:
    # The clock is still in the step bob confirmed with.
    result = tf.verify_code(enrolled.login, "B", code_for(tf, "bob"))
    assert (result.ok, result.reason) == (False, Reason.INVALID)


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        (" {code}", Reason.INVALID),
        ("{code} ", Reason.INVALID),
        ("{a} {b}", Reason.INVALID),
        ("  {a}  {b}  ", Reason.INVALID),
        ("{code}\n", Reason.MALFORMED),
        ("\t{code}", Reason.MALFORMED),
        ("{a}-{b}", Reason.MALFORMED),
        ("\r\n{code}", Reason.MALFORMED),
        ("{code}\x00", Reason.MALFORMED),
    ],
    ids=[
        "leading-space",
        "trailing-space",
        "space-inside",
        "many-spaces",
        "newline",
        "tab",
        "hyphen",
        "crlf",
        "nul",
    ],
)
def test_variants_of_a_used_code_are_rejected(
    tf: TwoFactor, fresh: Enrolled, variant: str, reason: Reason
) -> None:
    code = code_for(tf, "bob")
    assert tf.verify_code(fresh.login, "B", code).ok
    attempt = variant.format(code=code, a=code[:3], b=code[3:])
    result = tf.verify_code(fresh.login, "B", attempt)
    assert (result.ok, result.reason) == (False, reason)


def test_the_previous_current_and_next_step_are_each_accepted_once_in_order(
    tf: TwoFactor, fresh: Enrolled
) -> None:
    for offset in (-1, 0, 1):
        code = code_for(tf, "bob", offset=offset)
        assert tf.verify_code(fresh.login, "B", code).ok, offset
        again = tf.verify_code(fresh.login, "B", code)
        assert (again.ok, again.reason) == (False, Reason.INVALID), offset


# RFC 6238's SHA1 seed. At the ``fresh_on_a_fixed_secret`` instant (2026-01-01 00:02:31 UTC, time
# step 58907525) its codes from three steps back to three ahead are all different, so an
# out-of-window code is never also the code of a step inside the window.
FIXED_SECRET = b"12345678901234567890"
FIXED_CODES = {
    -3: "582485",
    -2: "283362",
    -1: "822761",
    0: "898039",
    1: "909865",
    2: "477664",
    3: "526424",
}


@pytest.fixture
def fresh_on_a_fixed_secret(
    monkeypatch: pytest.MonkeyPatch, tf: TwoFactor, clock: FakeClock
) -> Enrolled:
    """``fresh``, with bob enrolled on :data:`FIXED_SECRET` instead of a random secret."""
    monkeypatch.setattr(totp, "generate_secret", lambda: FIXED_SECRET)
    enrolled = enroll_bob(tf, clock)
    clock.advance(seconds=150)
    return enrolled


@pytest.mark.parametrize("offset", [-2, 2, -3, 3])
def test_codes_two_or_more_steps_away_are_invalid(
    tf: TwoFactor, fresh_on_a_fixed_secret: Enrolled, offset: int
) -> None:
    assert secret_of(tf, "bob") == FIXED_SECRET
    assert {k: code_for(tf, "bob", offset=k) for k in FIXED_CODES} == FIXED_CODES
    code = code_for(tf, "bob", offset=offset)
    # Otherwise the code would be accepted as the in-window step's, and the test would mean nothing.
    assert code not in {code_for(tf, "bob", offset=k) for k in (-1, 0, 1)}
    result = tf.verify_code(fresh_on_a_fixed_secret.login, "B", code)
    assert (result.ok, result.reason) == (False, Reason.INVALID)
    assert _failures(tf) == 1


def test_an_older_in_window_code_after_a_newer_one_is_rejected(
    tf: TwoFactor, fresh: Enrolled
) -> None:
    newer = code_for(tf, "bob", offset=1)
    older = code_for(tf, "bob")
    assert tf.verify_code(fresh.login, "B", newer).ok
    result = tf.verify_code(fresh.login, "B", older)
    assert (result.ok, result.reason) == (False, Reason.INVALID)


def test_a_code_replayed_one_step_later_inside_the_window_is_rejected(
    tf: TwoFactor, clock: FakeClock, fresh: Enrolled
) -> None:
    code = code_for(tf, "bob")
    assert tf.verify_code(fresh.login, "B", code).ok
    clock.advance(seconds=30)
    result = tf.verify_code(fresh.login, "B", code)
    assert (result.ok, result.reason) == (False, Reason.INVALID)
    # The new step's own code is still fine.
    assert tf.verify_code(fresh.login, "B", code_for(tf, "bob")).ok
