"""The values the service returns. Expected outcomes are results, not exceptions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tenant2fa import totp

if TYPE_CHECKING:
    from tenant2fa.enrollment import EnrollmentState
    from tenant2fa.session import LoginSession

__all__ = [
    "EnrollmentResult",
    "Provisioning",
    "Reason",
    "RotationReport",
    "UserStatus",
    "VerifyResult",
]


class Reason(enum.Enum):
    """Why a code was or was not accepted.

    A wrong code, a replayed code, a code for a user without 2FA and a code from another secret all
    give ``INVALID``: the answer tells an attacker nothing about which it was.
    """

    OK = "ok"
    INVALID = "invalid"
    """Not accepted: wrong, replayed, outside the window, or no such factor/recovery code."""
    MALFORMED = "malformed"
    """Not a code at all (wrong length, non-ASCII digits, not a string...). Not counted."""
    LOCKED = "locked"
    """Too many failures: not evaluated. See ``retry_at``."""
    NOT_PENDING = "not_pending"
    """confirm_enrollment with nothing pending (expired, never begun, or already confirmed)."""
    UNAVAILABLE = "unavailable"
    """Storage or decryption failed: not verified (fail closed). Safe to retry later."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """The outcome of ``verify_code`` or ``use_recovery_code``.

    ``login`` is the session to keep: updated with the second-factor proof when ``ok``, else the one
    passed in.
    """

    ok: bool
    reason: Reason
    login: LoginSession
    retry_at: datetime | None = None
    recovery_codes_left: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollmentResult:
    """The outcome of ``confirm_enrollment``. Show ``recovery_codes`` once; they are not kept."""

    ok: bool
    reason: Reason
    login: LoginSession
    recovery_codes: tuple[str, ...] = field(default=(), repr=False)
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioning:
    """What the enrollment page shows: a QR code, the key for manual entry, the otpauth link.

    ``uri`` and ``manual_key`` contain the secret: render them to the user, never log or store them.
    """

    uri: str = field(repr=False)
    manual_key: str = field(repr=False)
    pending_id: str
    expires_at: datetime
    issuer: str
    account_name: str

    def qr_svg(self, *, scale: int = 4) -> str:
        """The QR code as an inline SVG document."""
        return totp.qr_svg(self.uri, scale=scale)

    def qr_png(self, *, scale: int = 4) -> bytes:
        """The QR code as PNG bytes."""
        return totp.qr_png(self.uri, scale=scale)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserStatus:
    """A user's 2FA state, for an admin page or an operator CLI. Contains no secret."""

    user_id: str
    state: EnrollmentState
    activated_at: datetime | None
    recovery_codes_left: int
    failures: int
    locked: bool
    retry_at: datetime | None
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationReport:
    """Progress of :meth:`TwoFactor.rotate_keys` (also passed to its ``progress`` callback).

    ``rewrapped``: users whose ciphertexts were re-encrypted with the primary key; ``current``:
    already under it (an earlier, interrupted run did them); ``changed``: re-enrolled or reset
    while we worked (their new ciphertext is already under the primary key); ``failed``: user ids
    whose ciphertexts no key of the ring opens. ``last_user_id`` is where a resumed run may start.
    """

    rewrapped: int = 0
    current: int = 0
    changed: int = 0
    failed: tuple[str, ...] = ()
    last_user_id: str | None = None

    @property
    def processed(self) -> int:
        return self.rewrapped + self.current + self.changed + len(self.failed)
