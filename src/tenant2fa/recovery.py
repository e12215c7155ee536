"""One-time recovery codes. Pure: no I/O.

A code is 16 characters of Crockford's Base32 (80 bits from the CSPRNG, above NIST SP 800-63B-4's
64-bit floor), shown as ``XXXX-XXXX-XXXX-XXXX``. Only hashes are stored. Because 80 bits is below
112, the hash is a salted memory-hard one (scrypt); all codes of one set share the salt, so checking
an attempt costs exactly one hash however many codes are left, and storage finds the code by its
digest.

Normalisation (the only one): ASCII spaces and hyphens are removed and letters upper-cased;
Crockford's look-alikes ``O``→``0``, ``I``/``L``→``1`` are folded, since people copy codes by hand.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from tenant2fa.errors import ConfigurationError

__all__ = [
    "RecoveryCodeHasher",
    "RecoveryCodeSet",
    "generate_recovery_codes",
    "normalize_recovery_code",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16
_GROUP = 4
_FOLD = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})
_MAX_INPUT = 64


def generate_recovery_codes(count: int = 10) -> tuple[str, ...]:
    """``count`` fresh, distinct codes in display form ``XXXX-XXXX-XXXX-XXXX``."""
    if not 1 <= count <= 100:
        raise ConfigurationError("recovery code count must be between 1 and 100")
    codes: set[str] = set()
    while len(codes) < count:
        raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        codes.add(raw)
    return tuple(
        "-".join(code[i : i + _GROUP] for i in range(0, CODE_LENGTH, _GROUP)) for code in codes
    )


def normalize_recovery_code(raw: object) -> str | None:
    """The canonical 16 characters of a recovery code, or ``None`` if ``raw`` cannot be one."""
    if not isinstance(raw, str) or len(raw) > _MAX_INPUT or not raw.isascii():
        return None
    code = raw.upper().translate(_FOLD)
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryCodeHasher:
    """scrypt with a per-set salt. The defaults cost about 16 MiB and a few tens of milliseconds.

    Lower ``n`` only in your own test suites, never in production.
    """

    n: int = 2**14
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ConfigurationError("scrypt n must be a power of two")

    def digest(self, canonical_code: str, salt: bytes) -> bytes:
        return hashlib.scrypt(
            canonical_code.encode("ascii"),
            salt=salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=2 * 128 * self.r * self.n + 1024 * 1024,
            dklen=32,
        )

    def new_set(self, codes: tuple[str, ...]) -> RecoveryCodeSet:
        """Hash display-form ``codes`` under a fresh salt."""
        salt = secrets.token_bytes(16)
        digests = []
        for code in codes:
            canonical = normalize_recovery_code(code)
            if (
                canonical is None
            ):  # pragma: no cover - generate_recovery_codes emits only valid codes
                raise ConfigurationError("not a recovery code")
            digests.append(self.digest(canonical, salt))
        return RecoveryCodeSet(salt=salt, digests=tuple(digests))


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryCodeSet:
    """What storage keeps of a user's recovery codes: the salt and one digest per code."""

    salt: bytes = field(repr=False)
    digests: tuple[bytes, ...] = field(repr=False)

    def __repr__(self) -> str:
        return f"RecoveryCodeSet(<{len(self.digests)} digests>)"
