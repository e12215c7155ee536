"""The otpauth:// provisioning URI and its QR code (bar.md §8 items 36-39, §4.4).

The URI follows Google's Key URI format: ``otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...``
with both label parts percent-encoded with nothing left safe, no Base32 padding, and default
parameters left out. pyotp's ``parse_uri`` is used as an independent reader.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

import pyotp
import pytest

from tenant2fa import (
    Algorithm,
    EnrollmentState,
    InvalidInput,
    LoginSession,
    Provisioning,
    TotpSettings,
    TwoFactor,
    totp,
)
from tenant2fa.testing import FakeClock, secret_of

SECRET = bytes(range(20))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _query(uri: str) -> dict[str, str]:
    pairs = parse_qsl(urlsplit(uri).query, keep_blank_values=True, strict_parsing=True)
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate parameters in {keys}"
    return dict(pairs)


def _label(uri: str) -> tuple[str, str]:
    path = urlsplit(uri).path
    assert path.startswith("/")
    assert "/" not in path[1:], "the label must be one path segment (encoded with safe='')"
    encoded_issuer, colon, encoded_account = path[1:].partition(":")
    assert colon == ":"
    assert ":" not in encoded_account, "the label must have exactly one literal colon"
    return unquote(encoded_issuer, errors="strict"), unquote(encoded_account, errors="strict")


@pytest.fixture
def login(tf: TwoFactor, clock: FakeClock) -> LoginSession:
    """Bob, freshly signed in, member of tenant B which requires 2FA; not enrolled."""
    tf.create_tenant("B", name="Tenant B", owner_id="olga")
    tf.add_member("B", "bob", operator="host")
    tf.set_two_factor("B", actor_id="olga", enabled=True)
    clock.advance(seconds=1)
    return tf.start_session("bob")


@pytest.fixture
def provisioning(tf: TwoFactor, login: LoginSession) -> Provisioning:
    return tf.begin_enrollment(login)


# -- the URI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [16, 20, 32, 64])
def test_the_secret_parameter_is_unpadded_base32(length: int) -> None:
    secret = hashlib.sha512(b"seed").digest()[:length]
    uri = totp.provisioning_uri(secret, account_name="bob", issuer="Onum")
    value = _query(uri)["secret"]
    assert "=" not in value
    assert "%3D" not in uri.upper()
    assert value == totp.encode_secret(secret)
    assert totp.decode_secret(value) == secret


def test_the_label_prefix_equals_the_issuer_parameter(provisioning: Provisioning) -> None:
    issuer, account = _label(provisioning.uri)
    assert issuer == _query(provisioning.uri)["issuer"] == "Onum"
    assert account == "bob"
    assert (provisioning.issuer, provisioning.account_name) == ("Onum", "bob")


def test_default_parameters_are_left_out(provisioning: Provisioning) -> None:
    assert set(_query(provisioning.uri)) == {"secret", "issuer"}


def test_non_default_parameters_are_written() -> None:
    settings = TotpSettings(digits=8, period=60, algorithm=Algorithm.SHA512)
    uri = totp.provisioning_uri(SECRET, account_name="bob", issuer="Onum", settings=settings)
    query = _query(uri)
    assert query["algorithm"] == "SHA512"
    assert query["digits"] == "8"
    assert query["period"] == "60"
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.digits, parsed.interval) == (8, 60)
    # pyotp, reading only the URI, computes the codes we would accept.
    for step in (0, 1, 57687180):
        assert parsed.generate_otp(step) == totp.code_at(SECRET, step, settings)


@pytest.mark.parametrize(
    ("algorithm", "digits", "period", "present"),
    [
        (Algorithm.SHA256, 6, 30, {"algorithm"}),
        (Algorithm.SHA1, 8, 30, {"digits"}),
        (Algorithm.SHA1, 6, 45, {"period"}),
    ],
)
def test_only_the_parameters_that_differ_from_the_defaults_are_written(
    algorithm: Algorithm, digits: int, period: int, present: set[str]
) -> None:
    settings = TotpSettings(digits=digits, period=period, algorithm=algorithm)
    uri = totp.provisioning_uri(SECRET, account_name="bob", issuer="Onum", settings=settings)
    assert set(_query(uri)) == {"secret", "issuer"} | present


def test_pyotp_reads_back_the_same_secret_issuer_and_name(
    tf: TwoFactor, provisioning: Provisioning
) -> None:
    parsed = pyotp.parse_uri(provisioning.uri)
    assert parsed.secret == totp.encode_secret(secret_of(tf, "bob", pending=True))
    assert parsed.issuer == "Onum"
    assert parsed.name == "bob"


TRICKY_NAMES = [
    "Ac/me",
    "alice/../bob",
    "what?",
    "a#b",
    "ACME&evil=1",
    "x=y",
    "100%",
    "%3A",
    "%41",
    "a+b",
    "a b",
    "a;b",
    "Zürich",
    "東京",
    "جامعة",
    "🔐 Vault",
    "bob@example.com",
]


@pytest.mark.parametrize("name", TRICKY_NAMES)
@pytest.mark.parametrize("part", ["issuer", "account_name"])
def test_special_characters_in_issuer_or_account_give_a_uri_that_round_trips(
    name: str, part: str
) -> None:
    issuer, account = (name, "bob") if part == "issuer" else ("Onum", name)
    uri = totp.provisioning_uri(SECRET, account_name=account, issuer=issuer)
    assert uri.isascii()
    assert " " not in uri
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.fragment) == ("otpauth", "totp", "")
    assert _label(uri) == (issuer, account)
    query = _query(uri)
    assert set(query) == {"secret", "issuer"}
    assert query["issuer"] == issuer
    assert parse_qs(parts.query)["secret"] == [totp.encode_secret(SECRET)]
    parsed = pyotp.parse_uri(uri)
    assert (parsed.secret, parsed.issuer, parsed.name) == (
        totp.encode_secret(SECRET),
        issuer,
        account,
    )


@pytest.mark.parametrize("part", ["issuer", "account_name"])
@pytest.mark.parametrize("value", ["Ac:me", ":", "bob:", ":bob", "a\uff1ab:c"])
def test_a_colon_in_issuer_or_account_is_refused(part: str, value: str) -> None:
    issuer, account = (value, "bob") if part == "issuer" else ("Onum", value)
    with pytest.raises(InvalidInput):
        totp.provisioning_uri(SECRET, account_name=account, issuer=issuer)


@pytest.mark.parametrize("part", ["issuer", "account_name"])
@pytest.mark.parametrize(
    "value",
    [" Onum", "Onum ", "\tOnum", "Onum\n", "\u3000Onum", "Onum\u00a0", "", "a\x00b", "a\nb"],
)
def test_surrounding_whitespace_empty_and_control_characters_are_refused(
    part: str, value: str
) -> None:
    issuer, account = (value, "bob") if part == "issuer" else ("Onum", value)
    with pytest.raises(InvalidInput):
        totp.provisioning_uri(SECRET, account_name=account, issuer=issuer)


def test_begin_enrollment_refuses_a_colon_account_name_and_stores_nothing(
    tf: TwoFactor, login: LoginSession
) -> None:
    with pytest.raises(InvalidInput):
        tf.begin_enrollment(login, account_name="bob:evil")
    assert tf.user_status("bob").state is EnrollmentState.NONE


def test_begin_enrollment_uses_the_given_account_name_in_the_label(
    tf: TwoFactor, login: LoginSession
) -> None:
    provisioning = tf.begin_enrollment(login, account_name="bob@example.com")
    assert _label(provisioning.uri) == ("Onum", "bob@example.com")
    assert provisioning.account_name == "bob@example.com"


# -- the URI really provisions the pending secret --------------------------------------------


def test_a_code_from_the_secret_in_the_uri_confirms_the_enrollment(
    tf: TwoFactor, clock: FakeClock, login: LoginSession, provisioning: Provisioning
) -> None:
    secret = totp.decode_secret(_query(provisioning.uri)["secret"])
    code = totp.code_at(secret, totp.time_step(clock.now()))
    result = tf.confirm_enrollment(login, code)
    assert result.ok, result.reason
    assert tf.user_status("bob").state is EnrollmentState.ACTIVE


def test_the_manual_key_is_the_same_secret_as_the_uri(provisioning: Provisioning) -> None:
    assert totp.decode_secret(provisioning.manual_key) == totp.decode_secret(
        _query(provisioning.uri)["secret"]
    )
    assert provisioning.manual_key.replace(" ", "") == _query(provisioning.uri)["secret"]


def test_the_provisioning_repr_shows_neither_the_secret_nor_the_uri(
    tf: TwoFactor, provisioning: Provisioning
) -> None:
    text = repr(provisioning)
    key = totp.encode_secret(secret_of(tf, "bob", pending=True))
    assert "otpauth" not in text
    assert key not in text
    assert key.lower() not in text.lower()
    assert provisioning.manual_key not in text
    assert key[:8] not in text
    assert str(provisioning) == text
    assert provisioning.pending_id in text


# -- the QR code -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "otpauth://totp/a:b?secret=AAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=a",
        totp.provisioning_uri(SECRET, account_name="bob", issuer="Onum"),
        totp.provisioning_uri(
            bytes(64),
            account_name="a-long-account-name@example.com",
            issuer="An Issuer With A Long Name",
            settings=TotpSettings(digits=8, period=60, algorithm=Algorithm.SHA512),
        ),
    ],
    ids=["tiny", "typical", "long"],
)
def test_the_qr_code_is_a_full_symbol_at_level_m_or_better(uri: str) -> None:
    qr = totp._make_qr(uri)
    assert qr.is_micro is False
    assert qr.error in {"M", "Q", "H"}


def test_the_png_starts_with_the_png_signature(provisioning: Provisioning) -> None:
    png = provisioning.qr_png()
    assert png.startswith(PNG_SIGNATURE)
    assert png.endswith(b"IEND\xaeB`\x82")


def test_the_svg_is_a_well_formed_svg_document(provisioning: Provisioning) -> None:
    svg = provisioning.qr_svg()
    root = ET.fromstring(svg)  # noqa: S314 - parsing our own output, not untrusted XML
    assert root.tag in {"svg", "{http://www.w3.org/2000/svg}svg"}
    assert "otpauth" not in svg


def test_the_scale_grows_the_images(provisioning: Provisioning) -> None:
    assert len(provisioning.qr_svg(scale=8)) >= len(provisioning.qr_svg(scale=2))
    small = ET.fromstring(provisioning.qr_svg(scale=2))  # noqa: S314 - our own output
    large = ET.fromstring(provisioning.qr_svg(scale=8))  # noqa: S314 - our own output
    assert int(large.attrib["width"]) == 4 * int(small.attrib["width"])
