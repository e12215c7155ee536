"""TOTP (RFC 6238) on pyotp's HOTP arithmetic, with the parts pyotp gets wrong done here. Pure.

Lower layer: these functions check nothing about replay or throttling. :class:`tenant2fa.TwoFactor`
is the safe top layer that always adds both; use this module directly only for tests and tools.

- The time step comes from an aware UTC datetime by integer arithmetic, never from pyotp's
  ``at()``/``now()``/``verify()``, which go through naive local time and accept hour-old codes
  across a daylight-saving change.
- Codes follow a strict grammar: after removing ASCII spaces, exactly ``digits`` ASCII digits.
  Unicode digits, signs, underscores, other lengths and non-strings are not codes.
- Candidates are compared with :func:`hmac.compare_digest`, all of them, every time.
- The ``otpauth://`` URI follows Google's Key URI format: issuer as label prefix and parameter,
  percent-encoded with nothing left safe, no Base32 padding, default parameters omitted.
- QR codes are full QR symbols (never Micro QR) at error correction level M or better.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

import pyotp

from tenant2fa.clock import UTC, require_utc
from tenant2fa.errors import ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Algorithm",
    "TotpSettings",
    "check_label_part",
    "code_at",
    "decode_secret",
    "encode_secret",
    "generate_secret",
    "matching_step",
    "normalize_code",
    "provisioning_uri",
    "qr_png",
    "qr_svg",
    "time_step",
]

SECRET_BYTES = 20
"""160-bit secrets: RFC 4226's recommendation and what every authenticator app reads."""
MIN_SECRET_BYTES = 16
"""RFC 4226 R6: a shared secret MUST be at least 128 bits."""
MAX_CODE_INPUT = 64
"""Inputs longer than this are refused before any other work (a 10 MB "code" costs nothing)."""
MAX_URI_LENGTH = 2331
"""The longest ``otpauth://`` URI a QR code holds: 2,331 bytes at error correction level M."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BASE32 = re.compile(r"[A-Z2-7]+", re.ASCII)


class Algorithm(enum.Enum):
    """The HMAC hash. Authenticator apps widely support only SHA1; it is the default."""

    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"

    @property
    def digestmod(self) -> Callable[..., hashlib._Hash]:
        return {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}[
            self.value
        ]

    @property
    def hash_name(self) -> str:
        """The name :func:`hmac.digest` takes (its one-shot fast path wants a name)."""
        return self.value.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpSettings:
    """The TOTP parameters. Defaults are what Google Authenticator and Apple Passwords read."""

    digits: int = 6
    period: int = 30
    algorithm: Algorithm = Algorithm.SHA1
    window: int = 1
    """How many steps before and after the current one are accepted (RFC 6238 §5.2: at most 1)."""

    def __post_init__(self) -> None:
        if self.digits not in (6, 8):
            raise ConfigurationError("digits must be 6 or 8 (the Key URI format allows no other)")
        if not 15 <= self.period <= 300:
            raise ConfigurationError("period must be between 15 and 300 seconds")
        if self.window not in (0, 1):
            raise ConfigurationError("window must be 0 or 1 (RFC 6238 recommends at most 1)")


def time_step(now: datetime, period: int = 30) -> int:
    """The RFC 6238 time step ``T = floor((now - epoch) / period)`` for an aware ``now``.

    Integer arithmetic only: exact past 2038 and at t = 20000000000, and independent of ``TZ``.
    """
    delta = require_utc(now, "now") - _EPOCH
    return delta // timedelta(seconds=period)


def generate_secret() -> bytes:
    """A fresh 160-bit secret from the operating system's CSPRNG."""
    return secrets.token_bytes(SECRET_BYTES)


def encode_secret(secret: bytes) -> str:
    """Base32, uppercase, without padding: the form for ``otpauth://`` and manual entry."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def decode_secret(text: str) -> bytes:
    """Decode a Base32 secret (spaces ignored, any case, padding optional).

    Raises :class:`InvalidInput` for non-Base32 text or a secret shorter than 128 bits; the message
    never repeats the secret.
    """
    if not isinstance(text, str):
        raise InvalidInput("a secret must be a Base32 str")
    canonical = text.replace(" ", "").upper().rstrip("=")
    if not _BASE32.fullmatch(canonical):
        raise InvalidInput("the secret is not valid Base32")
    padded = canonical + "=" * (-len(canonical) % 8)
    try:
        secret = base64.b32decode(padded)
    except binascii.Error:
        raise InvalidInput("the secret is not valid Base32") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidInput("the secret is shorter than 128 bits (RFC 4226 R6)")
    return secret


def normalize_code(raw: object, digits: int = 6) -> str | None:
    """Return the code as ``digits`` ASCII digits, or ``None`` if ``raw`` is not a code.

    The one normalisation: ASCII spaces are removed (users type ``123 456``). Everything else that
    is not exactly ``[0-9]{digits}`` is refused: other whitespace, Unicode digits, signs,
    underscores, NUL, other lengths, and anything that is not a ``str`` (an ``int`` has lost its
    leading zeros).
    """
    if not isinstance(raw, str) or len(raw) > MAX_CODE_INPUT:
        return None
    code = raw.replace(" ", "")
    if len(code) != digits or not code.isascii() or not code.isdigit():
        return None
    return code


def _otp(secret: bytes, settings: TotpSettings) -> pyotp.OTP:
    return pyotp.OTP(
        encode_secret(secret), digits=settings.digits, digest=settings.algorithm.digestmod
    )


def code_at(secret: bytes, step: int, settings: TotpSettings | None = None) -> str:
    """The code for time step ``step`` (HOTP with counter ``step``)."""
    if step < 0:
        raise InvalidInput("a time step cannot be negative")
    return str(_otp(secret, settings or TotpSettings()).generate_otp(step))


def _hotp(secret: bytes, counter: int, digits: int, hash_name: str) -> bytes:
    """RFC 4226 HOTP value of ``counter`` as ``digits`` ASCII digits: HMAC, dynamic truncation,
    modulo. The verifying path computes it with :func:`hmac.digest` directly; :func:`code_at`
    goes through pyotp, so that each checks the other (and the RFC vectors check both)."""
    mac = hmac.digest(secret, counter.to_bytes(8, "big"), hash_name)
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return b"%0*d" % (digits, value % 10**digits)


def matching_step(
    secret: bytes, code: str, step: int, settings: TotpSettings | None = None
) -> int | None:
    """Return the time step within ``step ± window`` whose code equals ``code``, else ``None``.

    ``code`` must already be normalised (see :func:`normalize_code`). Every candidate is computed and
    compared in constant time; if two steps share a code, the newest wins. Replay is *not* checked
    here: the caller must accept the returned step only if it is newer than the last one accepted.
    """
    settings = settings or TotpSettings()
    digits, hash_name = settings.digits, settings.algorithm.hash_name
    given = code.encode("ascii")
    found: int | None = None
    for candidate in range(max(step - settings.window, 0), step + settings.window + 1):
        if hmac.compare_digest(_hotp(secret, candidate, digits, hash_name), given):
            found = candidate
    return found


def check_label_part(value: str, name: str) -> str:
    """Return ``value`` if it may be an issuer or account name in a Key URI, else raise
    :class:`InvalidInput` (empty, a colon, surrounding whitespace, control characters)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty str")
    if ":" in value:
        raise InvalidInput(f"{name} must not contain a colon (Key URI format)")
    if value != value.strip():
        raise InvalidInput(f"{name} must not start or end with whitespace")
    if not value.isprintable():
        raise InvalidInput(f"{name} must not contain control characters")
    return value


def provisioning_uri(
    secret: bytes, *, account_name: str, issuer: str, settings: TotpSettings | None = None
) -> str:
    """The ``otpauth://totp/...`` URI for an authenticator app.

    The label is ``issuer:account_name``, each part percent-encoded with no character left safe,
    and the issuer is repeated as a parameter, as Google's Key URI format recommends. Neither part
    may contain a colon. Parameters equal to the defaults (SHA1, 6 digits, 30 s) are omitted.

    Raises :class:`InvalidInput` if the URI would be too long for a QR code
    (:data:`MAX_URI_LENGTH`): a name of 255 characters outside ASCII can make it so.
    """
    settings = settings or TotpSettings()
    issuer_q = quote(check_label_part(issuer, "issuer"), safe="")
    account_q = quote(check_label_part(account_name, "account_name"), safe="")
    params = [f"secret={encode_secret(secret)}", f"issuer={issuer_q}"]
    if settings.algorithm is not Algorithm.SHA1:
        params.append(f"algorithm={settings.algorithm.value}")
    if settings.digits != 6:
        params.append(f"digits={settings.digits}")
    if settings.period != 30:
        params.append(f"period={settings.period}")
    uri = f"otpauth://totp/{issuer_q}:{account_q}?{'&'.join(params)}"
    # Percent-encoded with nothing left safe, the URI is ASCII: characters are bytes.
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidInput(
            "the issuer and account name make the otpauth:// URI too long for a QR code: "
            "use a shorter account_name"
        )
    return uri


def qr_svg(uri: str, *, scale: int = 4, title: str | None = None) -> str:
    """The URI as a QR code in SVG (a full QR symbol, error correction M or better)."""
    qr = _make_qr(uri)
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=scale, title=title, xmldecl=False, nl=False)
    return out.getvalue().decode("utf-8")


def qr_png(uri: str, *, scale: int = 4) -> bytes:
    """The URI as a QR code in PNG. Safari offers 'Set up verification code' on raster images."""
    qr = _make_qr(uri)
    out = io.BytesIO()
    qr.save(out, kind="png", scale=scale)
    return out.getvalue()


def _make_qr(uri: str) -> segno.QRCode:
    # segno is imported here, not at module level: it pulls in xml.sax and with it urllib.request
    # and socket, which the pure core must not load.
    import segno  # noqa: PLC0415

    qr = segno.make_qr(uri, error="m", boost_error=True)
    if qr.is_micro:  # pragma: no cover - make_qr never returns Micro QR; guard the contract anyway
        raise ConfigurationError("refusing to emit a Micro QR code")
    return qr


if TYPE_CHECKING:
    import segno
