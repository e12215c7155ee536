"""The per-user enrollment state machine. Pure: no I/O.

An enrollment belongs to the user account and is shared by all of the user's tenants (DESIGN.md
decision 1). The whole machine is the table :data:`TRANSITIONS`; the docs' diagram is generated from
it, and storage backends apply exactly these moves::

    NONE ──begin──▶ PENDING ──confirm──▶ ACTIVE ──begin──▶ REPLACING ──confirm──▶ ACTIVE
                       │ expire/reset                │ reset       │ expire        │
                       ▼                             ▼             ▼               │
                      NONE                          NONE         ACTIVE   reset ──▶ NONE

A pending secret never counts for login. Beginning again replaces a pending secret; it never
replaces the active one: that only happens when the new secret is confirmed with a code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from tenant2fa.errors import InvalidTransition

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "TRANSITIONS",
    "EnrollmentEvent",
    "EnrollmentState",
    "PendingEnrollment",
    "apply",
    "effective_state",
]


class EnrollmentState(enum.Enum):
    """Where a user's TOTP enrollment is."""

    NONE = "none"
    """No authenticator, nothing pending."""
    PENDING = "pending"
    """A secret was issued and awaits its first code; nothing counts yet."""
    ACTIVE = "active"
    """A confirmed authenticator: every login to a tenant requiring 2FA asks for its code."""
    REPLACING = "replacing"
    """Active, and a replacement secret awaits its first code; the old one keeps working."""

    @property
    def is_enrolled(self) -> bool:
        """True when the user has a confirmed authenticator."""
        # Identity tests: enum equality and hashing cost more, and this runs on every request.
        return self is EnrollmentState.ACTIVE or self is EnrollmentState.REPLACING


class EnrollmentEvent(enum.Enum):
    """What can happen to an enrollment."""

    BEGIN = "begin"
    """A new secret is issued (replacing any pending one)."""
    CONFIRM = "confirm"
    """A valid code from the pending secret makes it the active one."""
    EXPIRE = "expire"
    """The pending secret's time ran out."""
    RESET = "reset"
    """An owner reset the user's 2FA, or the user removed it: back to nothing."""


_S = EnrollmentState
_E = EnrollmentEvent

TRANSITIONS: Mapping[tuple[EnrollmentState, EnrollmentEvent], EnrollmentState] = MappingProxyType(
    {
        (_S.NONE, _E.BEGIN): _S.PENDING,
        (_S.PENDING, _E.BEGIN): _S.PENDING,
        (_S.PENDING, _E.CONFIRM): _S.ACTIVE,
        (_S.PENDING, _E.EXPIRE): _S.NONE,
        (_S.PENDING, _E.RESET): _S.NONE,
        (_S.ACTIVE, _E.BEGIN): _S.REPLACING,
        (_S.ACTIVE, _E.RESET): _S.NONE,
        (_S.REPLACING, _E.BEGIN): _S.REPLACING,
        (_S.REPLACING, _E.CONFIRM): _S.ACTIVE,
        (_S.REPLACING, _E.EXPIRE): _S.ACTIVE,
        (_S.REPLACING, _E.RESET): _S.NONE,
    }
)
"""Every allowed move: ``(state, event) -> new state``. Anything else is illegal."""


def apply(state: EnrollmentState, event: EnrollmentEvent) -> EnrollmentState:
    """Return the state after ``event``; raise :class:`InvalidTransition` if it is not allowed."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingEnrollment:
    """A secret issued by ``begin`` and not confirmed yet.

    ``secret`` is the keyring ciphertext of the TOTP secret (never the secret itself); ``pending_id``
    identifies this issue of it, so a confirm can only activate the secret it was checked against.
    """

    pending_id: str
    secret: bytes = field(repr=False)
    created_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def effective_state(
    *, has_active: bool, pending: PendingEnrollment | None, now: datetime
) -> EnrollmentState:
    """The state a user is in at ``now``, with an expired pending secret counting as gone."""
    live_pending = pending is not None and not pending.is_expired(now)
    if has_active:
        return EnrollmentState.REPLACING if live_pending else EnrollmentState.ACTIVE
    return EnrollmentState.PENDING if live_pending else EnrollmentState.NONE
