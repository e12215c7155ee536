"""Tenant policy: roles, memberships and the two-factor toggle. Pure: no I/O.

A tenant's policy is one small value. Switching 2FA on or off produces a new value with a bumped
``version`` and, when switching on, a new ``activated_at``; it never touches users, who are
evaluated lazily at their next login (see :mod:`tenant2fa.flow`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tenant2fa.errors import InvalidInput, PermissionDenied

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DEFAULT_TOGGLE_ROLES",
    "Membership",
    "Role",
    "TenantPolicy",
    "check_identifier",
    "check_may_toggle",
    "switch_two_factor",
]

MAX_IDENTIFIER_LENGTH = 255


class Role(enum.Enum):
    """A member's role in a tenant."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


DEFAULT_TOGGLE_ROLES: frozenset[Role] = frozenset({Role.OWNER})


def check_identifier(value: object, name: str) -> str:
    """Return ``value`` if it is a usable tenant or user id; raise :class:`InvalidInput` otherwise.

    Ids are opaque strings chosen by the host: 1 to 255 characters, no control characters.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidInput(f"{name} must be 1 to {MAX_IDENTIFIER_LENGTH} characters long")
    if not value.isprintable():
        raise InvalidInput(f"{name} must not contain control characters")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """A user's membership of a tenant, with its role."""

    tenant_id: str
    user_id: str
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantPolicy:
    """A tenant and its authentication policy.

    ``activated_at`` is the time 2FA was last switched on (it stays set after switching off, and is
    only meaningful while ``two_factor_required``). ``grace_period``, when set, lets users postpone
    enrolling until ``activated_at + grace_period``. ``version`` grows by one on every change and
    makes concurrent toggles safe (compare-and-set in storage).
    """

    tenant_id: str
    name: str
    two_factor_required: bool = False
    activated_at: datetime | None = None
    grace_period: timedelta | None = None
    version: int = 0

    def enrollment_deadline(self) -> datetime | None:
        """When users of this tenant must have enrolled; ``None`` if 2FA is off."""
        if not self.two_factor_required or self.activated_at is None:
            return None
        return self.activated_at + (self.grace_period or timedelta(0))


def check_may_toggle(membership: Membership | None, allowed_roles: Iterable[Role]) -> None:
    """Raise :class:`PermissionDenied` unless ``membership`` has one of ``allowed_roles``."""
    if membership is None or membership.role not in frozenset(allowed_roles):
        raise PermissionDenied("only a tenant owner may change its two-factor authentication")


def switch_two_factor(
    policy: TenantPolicy,
    *,
    enabled: bool,
    now: datetime,
    grace_period: timedelta | None = None,
) -> TenantPolicy:
    """Return ``policy`` with 2FA switched to ``enabled`` at ``now`` and its version bumped.

    Switching on records ``now`` as the activation time (users whose identity was last checked
    before it must verify it again before enrolling). Switching off keeps ``activated_at`` for the
    record and clears the grace period.
    """
    if grace_period is not None and grace_period < timedelta(0):
        raise InvalidInput("grace_period must not be negative")
    if enabled:
        return dataclasses.replace(
            policy,
            two_factor_required=True,
            activated_at=now,
            grace_period=grace_period,
            version=policy.version + 1,
        )
    return dataclasses.replace(
        policy, two_factor_required=False, grace_period=None, version=policy.version + 1
    )
