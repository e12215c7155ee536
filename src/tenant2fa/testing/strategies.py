"""Hypothesis strategies for property tests of tenant2fa and of applications that embed it.

Needs the ``testing`` extra (``pip install tenant2fa[testing]``)::

    from hypothesis import given
    from tenant2fa.testing import strategies as t2st

    @given(t2st.code_inputs())
    def test_code_page_never_crashes(client, code): ...

Every datetime drawn here is timezone-aware UTC, as the library requires. The identifiers of
:func:`tenant_ids` and :func:`user_ids` are valid for every public call (1 to 255 printable
characters, no colon, no leading or trailing whitespace, so they also work as the account label of an
``otpauth://`` URI).

The ``extreme_*`` and :func:`hostile_identifiers` strategies draw what a careless or hostile caller
passes instead: values at and past every bound, and values of the wrong type. Every public call must
answer them with a result or a :class:`~tenant2fa.errors.Tenant2FAError`, never another exception.
"""

from __future__ import annotations

import string
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from tenant2fa.clock import UTC
from tenant2fa.policy import Membership, Role, TenantPolicy
from tenant2fa.session import LoginSession

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "clock_moves",
    "code_inputs",
    "extreme_datetimes",
    "extreme_timedeltas",
    "hostile_identifiers",
    "login_sessions",
    "malformed_codes",
    "memberships",
    "recovery_code_inputs",
    "roles",
    "tenant_ids",
    "tenant_policies",
    "user_ids",
    "utc_datetimes",
    "well_formed_codes",
]

_ASCII_ID_CHARS = string.ascii_letters + string.digits + "-_.@+"
_EARLIEST = datetime(2000, 1, 1)  # noqa: DTZ001 - hypothesis wants naive bounds; tz is added
_LATEST = datetime(2100, 1, 1)  # noqa: DTZ001 - hypothesis wants naive bounds; tz is added


def _label_safe(text: str) -> bool:
    return bool(text) and ":" not in text and text == text.strip() and text.isprintable()


def _identifiers(prefix: str) -> SearchStrategy[str]:
    readable = st.integers(min_value=1, max_value=10**6).map(lambda n: f"{prefix}{n}")
    ascii_ids = st.text(_ASCII_ID_CHARS, min_size=1, max_size=40)
    emails = st.emails().filter(lambda e: len(e) <= 255)
    unicode_ids = st.text(
        st.characters(
            codec="utf-8",
            categories=("L", "N", "P", "S"),
            include_characters=" ",
            exclude_characters=":",
        ),
        min_size=1,
        max_size=40,
    )
    return st.one_of(readable, ascii_ids, emails, unicode_ids).filter(_label_safe)


def tenant_ids() -> SearchStrategy[str]:
    """Tenant ids a host might use: ``t123``, slugs, e-mail-like and Unicode names.

    Each is accepted by every public call that takes a tenant id.
    """
    return _identifiers("t")


def user_ids() -> SearchStrategy[str]:
    """User ids a host might use: ``u123``, slugs, e-mail addresses and Unicode names.

    Each is accepted by every public call that takes a user id, including
    ``begin_enrollment`` without an ``account_name`` (the id becomes the authenticator's label).
    """
    return _identifiers("u")


def roles() -> SearchStrategy[Role]:
    """Any :class:`~tenant2fa.Role`."""
    return st.sampled_from(Role)


def memberships(
    *,
    tenant_id: SearchStrategy[str] | None = None,
    user_id: SearchStrategy[str] | None = None,
    role: SearchStrategy[Role] | None = None,
) -> SearchStrategy[Membership]:
    """:class:`~tenant2fa.Membership` values; pass strategies to fix any of the three parts,
    e.g. ``memberships(tenant_id=st.just("acme"), role=st.just(Role.OWNER))``."""
    return st.builds(
        Membership,
        tenant_id=tenant_id if tenant_id is not None else tenant_ids(),
        user_id=user_id if user_id is not None else user_ids(),
        role=role if role is not None else roles(),
    )


def utc_datetimes(
    *, min_value: datetime | None = None, max_value: datetime | None = None
) -> SearchStrategy[datetime]:
    """Aware UTC datetimes between ``min_value`` and ``max_value`` (default 2000 to 2100).

    The bounds may be aware (any zone) or naive (read as UTC).
    """

    def naive_utc(value: datetime | None, default: datetime) -> datetime:
        if value is None:
            return default
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    return st.datetimes(
        min_value=naive_utc(min_value, _EARLIEST),
        max_value=naive_utc(max_value, _LATEST),
        timezones=st.just(UTC),
    )


_tenant_names = st.text(
    st.characters(codec="utf-8", categories=("L", "N"), include_characters=" "),
    min_size=1,
    max_size=40,
).filter(_label_safe)


@st.composite
def _tenant_policies(
    draw: st.DrawFn,
    tenant_id: SearchStrategy[str],
    required: SearchStrategy[bool],
    *,
    grace: bool,
    at: SearchStrategy[datetime],
) -> TenantPolicy:
    two_factor_required = draw(required)
    if two_factor_required:
        activated_at: datetime | None = draw(at)
        grace_period = (
            draw(st.none() | st.timedeltas(timedelta(0), timedelta(days=30))) if grace else None
        )
    else:
        # Off: never switched on, or switched on and off again (activated_at stays set).
        activated_at = draw(st.none() | at)
        grace_period = None
    if two_factor_required:
        # On after 2k+1 switches: 1, 3, 5...
        version = draw(st.integers(min_value=0, max_value=50)) * 2 + 1
    elif activated_at is not None:
        version = draw(st.integers(min_value=1, max_value=50)) * 2
    else:
        version = 0
    return TenantPolicy(
        tenant_id=draw(tenant_id),
        name=draw(_tenant_names),
        two_factor_required=two_factor_required,
        activated_at=activated_at,
        grace_period=grace_period,
        version=version,
    )


def tenant_policies(
    *,
    tenant_id: SearchStrategy[str] | None = None,
    two_factor_required: bool | None = None,
    grace_periods: bool = True,
    activated_at: SearchStrategy[datetime] | None = None,
) -> SearchStrategy[TenantPolicy]:
    """Valid :class:`~tenant2fa.TenantPolicy` values, as a sequence of toggles could leave them.

    - ``two_factor_required``: fix it, or ``None`` for both.
    - A policy that is on has an ``activated_at`` and an odd ``version``; one that is off has
      either never been on (``activated_at is None``, version 0) or was switched off again
      (``activated_at`` kept, even version >= 2) and has no grace period.
    - ``grace_periods=False`` draws no grace period (``None``); otherwise 0 to 30 days or ``None``.
    - ``activated_at`` draws the activation time (default :func:`utc_datetimes`).
    """
    return _tenant_policies(
        tenant_id if tenant_id is not None else tenant_ids(),
        st.booleans() if two_factor_required is None else st.just(two_factor_required),
        grace=grace_periods,
        at=activated_at if activated_at is not None else utc_datetimes(),
    )


def well_formed_codes(digits: int = 6) -> SearchStrategy[str]:
    """Strings that *look like* a code: ``digits`` ASCII digits, sometimes with ASCII spaces
    (``"123 456"``, ``" 123456"``), the one normalisation the library applies.

    Whether one is *right* depends on the secret and the time; almost all are wrong.
    """
    plain = st.text(string.digits, min_size=digits, max_size=digits)

    @st.composite
    def spaced(draw: st.DrawFn) -> str:
        code = draw(plain)
        cut = draw(st.integers(min_value=0, max_value=digits))
        left = draw(st.sampled_from(["", " ", "  "]))
        middle = draw(st.sampled_from(["", " "]))
        right = draw(st.sampled_from(["", " "]))
        return f"{left}{code[:cut]}{middle}{code[cut:]}{right}"

    return st.one_of(plain, spaced())


def _run_of_digits(zero: int) -> str:
    return "".join(chr(zero + i) for i in range(10))


# Characters that str.isdigit(), int() or NFKC treat as digits but that are not ASCII digits.
_UNICODE_DIGIT_SETS = (
    _run_of_digits(0xFF10),  # full-width
    _run_of_digits(0x0660),  # Arabic-Indic
    _run_of_digits(0x06F0),  # Extended Arabic-Indic
    _run_of_digits(0x0966),  # Devanagari
    _run_of_digits(0x1D7CE),  # mathematical bold
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",  # superscripts
)
# Every whitespace or invisible character except the ASCII space (which is normalised away).
_NON_SPACE_WHITESPACE = (
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\x0c",
    "\xa0",
    "\u2009",
    "\u3000",
    "\u200b",
    "\u202e",
    "\ufeff",
    "\x00",
)


@st.composite
def _malformed_strings(draw: st.DrawFn, digits: int) -> str:
    code = draw(st.text(string.digits, min_size=digits, max_size=digits))
    kind = draw(st.integers(min_value=0, max_value=8))
    if kind == 0:  # one or more Unicode digits standing in for ASCII ones
        table = draw(st.sampled_from(_UNICODE_DIGIT_SETS))
        positions = draw(st.sets(st.integers(0, digits - 1), min_size=1))
        return "".join(table[int(c)] if i in positions else c for i, c in enumerate(code))
    if kind == 1:  # whitespace other than the ASCII space, anywhere
        where = draw(st.integers(0, digits))
        junk = draw(st.sampled_from(_NON_SPACE_WHITESPACE))
        return code[:where] + junk + code[where:]
    if kind == 2:  # the int() traps and separators
        return draw(
            st.sampled_from(
                [
                    "_".join(code),
                    "+" + code,
                    "-" + code,
                    code[:3] + "-" + code[3:],
                    "0x1E240",
                    "1.23456e5",
                    code + ".0",
                ]
            )
        )
    if kind == 3:  # wrong length
        n = draw(st.integers(0, 12).filter(lambda k: k != digits))
        return draw(st.text(string.digits, min_size=n, max_size=n))
    if kind == 4:  # one too many, with a leading zero
        return "0" + code
    if kind == 5:  # autofill junk and injection attempts
        return draw(
            st.sampled_from(
                [
                    "●" * digits,
                    "<script>alert(1)</script>",
                    '{"code": "123456"}',
                    "' OR 1=1 --",
                    "null",
                    "undefined",
                    "NaN",
                ]
            )
        )
    if kind == 6:  # a huge input
        return code * draw(st.integers(20, 2000))
    if kind == 7:  # letters mixed in
        where = draw(st.integers(0, digits - 1))
        return code[:where] + draw(st.sampled_from("aOlI")) + code[where + 1 :]
    # arbitrary text that is not digits-and-spaces
    return draw(
        st.text(min_size=1, max_size=20).filter(
            lambda s: not (s.replace(" ", "").isascii() and s.replace(" ", "").isdigit())
        )
    )


def malformed_codes(digits: int = 6) -> SearchStrategy[object]:
    """Inputs that are not a code at all (bar.md §8 items 5 to 11): Unicode digits, whitespace
    other than ASCII spaces, signs and underscores, wrong lengths, huge strings, injection
    strings, and wrong types (``None``, ``int``, ``bytes``, ``bool``, lists, dicts, floats).

    The library must answer each with ``Reason.MALFORMED``: not counted, never an exception.
    """
    code = st.text(string.digits, min_size=digits, max_size=digits)
    wrong_types: SearchStrategy[object] = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        code.map(int),
        code.map(str.encode),
        code.map(lambda c: bytearray(c.encode())),
        st.lists(code, max_size=2),
        st.dictionaries(st.just("code"), code, max_size=1),
        code.map(lambda c: (c,)),
    )
    return st.one_of(_malformed_strings(digits), wrong_types)


def code_inputs(digits: int = 6) -> SearchStrategy[object]:
    """What a code field can receive: well-formed codes (:func:`well_formed_codes`) and junk
    (:func:`malformed_codes`), mixed."""
    return st.one_of(well_formed_codes(digits), malformed_codes(digits))


def clock_moves(*, backwards: bool = True) -> SearchStrategy[timedelta]:
    """How far a clock jumps between two requests.

    A mix of: less than one 30-second time step, a few steps, minutes (past the re-authentication
    and pending-enrollment windows), hours (past throttle delays), and, unless
    ``backwards=False``, small backward jumps of up to 90 seconds (an NTP step).
    """
    moves = [
        st.timedeltas(timedelta(0), timedelta(seconds=29)),
        st.integers(min_value=1, max_value=6).map(lambda n: timedelta(seconds=30 * n)),
        st.timedeltas(timedelta(minutes=1), timedelta(minutes=30)),
        st.timedeltas(timedelta(hours=1), timedelta(hours=48)),
    ]
    if backwards:
        moves.append(st.timedeltas(timedelta(seconds=-90), timedelta(seconds=-1)))
    return st.one_of(*moves)


@st.composite
def _login_sessions(
    draw: st.DrawFn,
    user_id: SearchStrategy[str],
    at: SearchStrategy[datetime],
    epoch: SearchStrategy[int],
) -> LoginSession:
    authenticated_at = draw(at)
    identity_at = authenticated_at + draw(st.timedeltas(timedelta(0), timedelta(hours=12)))
    method = draw(st.sampled_from(["password", "google", "microsoft"]))
    second_factor_at = draw(
        st.none()
        | st.timedeltas(timedelta(0), timedelta(hours=12)).map(lambda d: authenticated_at + d)
    )
    deferred = draw(
        st.none()
        | st.timedeltas(timedelta(0), timedelta(days=30)).map(lambda d: authenticated_at + d)
    )
    return LoginSession(
        session_id=draw(st.text(_ASCII_ID_CHARS, min_size=8, max_size=22)),
        user_id=draw(user_id),
        authenticated_at=authenticated_at,
        method=method,
        identity_verified_at=identity_at,
        identity_method=draw(st.sampled_from([method, "password", "google"])),
        second_factor_at=second_factor_at,
        second_factor_epoch=None if second_factor_at is None else draw(epoch),
        enrollment_deferred_until=deferred,
    )


def login_sessions(
    *,
    user_id: SearchStrategy[str] | None = None,
    authenticated_at: SearchStrategy[datetime] | None = None,
    epoch: SearchStrategy[int] | None = None,
) -> SearchStrategy[LoginSession]:
    """*Unsigned* :class:`~tenant2fa.LoginSession` values with consistent times, for the pure
    :func:`tenant2fa.flow.next_step`.

    Identity re-checks and second-factor proofs come at or after the sign-in; a proof carries an
    epoch drawn from ``epoch`` (default 0 to 3). The values have no tag: every ``TwoFactor``
    method refuses them with :class:`~tenant2fa.InvalidSession`, which is itself worth testing.
    """
    return _login_sessions(
        user_id if user_id is not None else user_ids(),
        authenticated_at if authenticated_at is not None else utc_datetimes(),
        epoch if epoch is not None else st.integers(min_value=0, max_value=3),
    )


# -- values at and past every bound -------------------------------------------------------------

_FOUR_BYTE_CHAR = "\U0001f600"  # four bytes of UTF-8, two code units of UTF-16
_NOT_TEXT: tuple[object, ...] = (
    None,
    True,
    0,
    -1,
    2**64,
    1.5,
    float("nan"),
    b"bytes",
    bytearray(b"bytes"),
    ["a"],
    ("a",),
    {"a": "b"},
    Role.OWNER,
    datetime(2026, 1, 1, tzinfo=UTC),
    object(),
)
_EDGE_IDENTIFIERS = (
    # At the bound (accepted) and one past it (refused), in one-, two- and four-byte UTF-8.
    "a",
    "a" * 255,
    "\u00e9" * 255,
    _FOUR_BYTE_CHAR * 255,
    "",
    "a" * 256,
    _FOUR_BYTE_CHAR * 256,
    "a" * 100_000,
    # Control, invisible and bidirectional characters.
    "\x00",
    "a\x00b",
    "a\nb",
    "\t",
    "\x7f",
    "\u200b",
    "\u202eevil",
    # Lone surrogates: valid in a Python str, but no UTF-8 database can store them.
    "\ud800",
    "a\udfffb",
    "\udc80",
    # Accepted as ids, though not as the account label of an otpauth:// URI.
    " ",
    " leading",
    "trailing ",
    "colon:id",
)


def _any_text(max_size: int) -> SearchStrategy[str]:
    # st.characters() leaves out surrogates unless asked for them.
    return st.text(st.characters() | st.characters(categories=["Cs"]), max_size=max_size)


def hostile_identifiers() -> SearchStrategy[object]:
    """What an id or name parameter may receive from a careless or hostile caller.

    Text of 0, 1, 255, 256 and 100,000 characters (in one-, two- and four-byte UTF-8), lengths around
    the 255-character bound, control characters, NUL, invisible and bidirectional characters, lone
    surrogates, arbitrary text, and values that are not a ``str`` at all. Every public call must
    accept such a value or refuse it with :class:`~tenant2fa.errors.InvalidInput`.
    """
    return st.one_of(
        st.sampled_from(_EDGE_IDENTIFIERS),
        st.integers(min_value=250, max_value=260).map(lambda n: "x" * n),
        _any_text(max_size=20),
        st.sampled_from(_NOT_TEXT),
        st.integers(),
        st.binary(max_size=8),
    )


_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXTREME_INSTANTS = (
    _FIRST,
    _FIRST + timedelta(microseconds=1),
    _FIRST + timedelta(seconds=30),
    _UNIX_EPOCH - timedelta(microseconds=1),
    _UNIX_EPOCH,
    datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),  # 2**31 seconds after the epoch
    _LAST - timedelta(seconds=30),
    _LAST - timedelta(microseconds=1),
    _LAST,  # 9999-12-31T23:59:59.999999 UTC
)


def extreme_datetimes() -> SearchStrategy[datetime]:
    """Aware UTC datetimes at the ends of :class:`~datetime.datetime`'s range (the year 1 and
    9999-12-31T23:59:59.999999), around the Unix epoch and 2038, and anywhere in between.

    For clocks set wrong, and for the stored times that later arithmetic must not overflow on.
    """
    return st.one_of(st.sampled_from(_EXTREME_INSTANTS), st.datetimes(timezones=st.just(UTC)))


_EXTREME_DELTAS = (
    timedelta.min,
    timedelta.max,
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(microseconds=-1),
    timedelta(days=-1),
    timedelta(days=90),
    timedelta(days=90, microseconds=1),
    timedelta(days=3650),
    timedelta(days=10**6),
    _LAST - _FIRST,
)


def extreme_timedeltas() -> SearchStrategy[timedelta]:
    """:class:`~datetime.timedelta` values at the ends of its range (``timedelta.min`` and
    ``timedelta.max``), zero, one microsecond either way, around the 90-day grace-period bound, the
    whole span of :class:`~datetime.datetime`, and anywhere in between."""
    return st.one_of(st.sampled_from(_EXTREME_DELTAS), st.timedeltas())


_RECOVERY_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NOT_RECOVERY_CODES = (
    "",
    "ABCD-EFGH-JKMN-PQR",
    "ABCD-EFGH-JKMN-PQRST",
    "ABCD-EFGH-JKMN-PQRU",  # U is not in Crockford's alphabet
    "ABCD_EFGH_JKMN_PQRS",
    "ABCD-EFGH-JKMN-PQRS\x00",
    "\uff21BCD-EFGH-JKMN-PQRS",  # a full-width A
    # Non-ASCII letters that str.upper() turns into ASCII ones: long s, sharp s, dotless i.
    "ABCD-EFGH-JKMN-PQR\u017f",
    "ABCD-EFGH-JKMN-PQ\u00df",
    "ABCD-EFGH-JKMN-PQR\u0131",
    "\ud800" * 16,
    "123456",
    "A" * 100_000,
)


@st.composite
def _typed_recovery_codes(draw: st.DrawFn) -> str:
    # O, I and L are Crockford look-alikes the library folds to 0, 1 and 1.
    raw = draw(st.text(_RECOVERY_ALPHABET + "OIL", min_size=16, max_size=16))
    separator = draw(st.sampled_from(["-", " ", ""]))
    text = separator.join(raw[i : i + 4] for i in range(0, 16, 4))
    return draw(st.sampled_from([text, text.lower(), f" {text} "]))


def recovery_code_inputs() -> SearchStrategy[object]:
    """What a recovery-code field can receive.

    Codes in the shapes people type them (grouped by hyphens or spaces or not at all, any case,
    with the look-alikes O, I and L), almost all of them wrong; and junk: wrong lengths, letters
    outside Crockford's alphabet, non-ASCII letters that ``str.upper()`` folds to ASCII, full-width
    forms, lone surrogates, huge strings, TOTP codes, arbitrary text, and values that are not a
    ``str``.
    """
    return st.one_of(
        _typed_recovery_codes(),
        st.sampled_from(_NOT_RECOVERY_CODES),
        _any_text(max_size=40),
        st.sampled_from(_NOT_TEXT),
        st.integers(),
    )
