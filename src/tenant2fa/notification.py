"""What a notification to a user says: its kind and its facts (pure values).

Delivering one is :mod:`tenant2fa.notify`'s business (the :class:`~tenant2fa.notify.Notifier`
protocol, rendering); the changes that notify store them with themselves (the outbox).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Notification", "NotificationKind"]


class NotificationKind(enum.Enum):
    TWO_FACTOR_ENABLED = "two_factor_enabled"
    """The user confirmed an authenticator (the guide's confirmation email)."""
    TWO_FACTOR_RESET = "two_factor_reset"
    """An owner reset the user's 2FA."""
    TWO_FACTOR_REMOVED = "two_factor_removed"
    """The user removed their own 2FA."""
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    LOCKED_OUT = "locked_out"
    """Too many wrong codes: the user must wait (or, at the hard limit, ask an owner)."""
    TENANT_TWO_FACTOR_CHANGED = "tenant_two_factor_changed"
    """For an owner: two-factor authentication was switched on or off in their tenant."""
    TWO_FACTOR_UNLOCKED = "two_factor_unlocked"
    """An owner (or the operator) cleared the user's failure counter; the authenticator stays."""
    MEMBER_ADDED = "member_added"
    """The user was added to a tenant (so that nobody is added silently)."""
    MEMBER_REMOVED = "member_removed"
    """The user was removed from a tenant, or left it."""
    ROLE_CHANGED = "role_changed"
    """The user's role in a tenant changed."""
    OWNERS_CHANGED = "owners_changed"
    """For an owner: someone became or stopped being an owner of their tenant (added, removed,
    left, promoted, demoted), so that an owner planted or pushed out by a compromised account is
    noticed. ``member_id`` is who; ``role``/``previous_role`` their role after and before
    (``None``: not a member)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A message to ``user_id`` about their account. Carries no secret."""

    notification_id: str
    kind: NotificationKind
    user_id: str
    at: datetime
    tenant_id: str | None = None
    tenant_name: str | None = None
    actor_id: str | None = None
    recovery_codes_left: int | None = None
    retry_at: datetime | None = None
    two_factor_on: bool | None = None
    actor_role: str | None = None
    """What gave ``actor_id`` the authority: a :class:`~tenant2fa.Role` value (``"owner"``...),
    ``"operator"`` for the host application or its operators, ``"self"`` for the user."""
    role: str | None = None
    """For membership notices: the member's role after the change (a Role value)."""
    previous_role: str | None = None
    """For ROLE_CHANGED and MEMBER_REMOVED: the role before the change."""
    member_id: str | None = None
    """For OWNERS_CHANGED: whose ownership changed (``user_id`` is the recipient)."""
