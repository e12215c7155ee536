"""Notifications to users about security changes, and the in-memory notifier.

The service hands a :class:`Notification` to the host's :class:`Notifier` *after* the change is
stored; a notifier failure is logged and never undoes the change. Notifications carry facts
(who, which tenant, how many recovery codes are left), never a secret, a code or a link with a
token. :func:`render` turns one into a subject, a plain-text body and an HTML body, using the
default templates of :mod:`tenant2fa.templates`; :mod:`tenant2fa.smtp` sends them by e-mail.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = [
    "InMemoryNotifier",
    "Message",
    "Notification",
    "NotificationKind",
    "Notifier",
    "render",
]


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


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications to users (email, chat...). Called after the change is committed.

    Implementations must be safe to call from several threads. An exception is logged by the
    service and does not undo the security change it reports.
    """

    def notify(self, notification: Notification) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A rendered notification: a one-line subject, a plain-text body and an HTML body."""

    subject: str
    text: str
    html: str

    @property
    def body(self) -> str:
        """The plain-text body (the same as :attr:`text`)."""
        return self.text


def render(notification: Notification, *, product: str = "your account") -> Message:
    """The notification as a message, from the default :class:`~tenant2fa.templates.Templates`.

    ``product`` is the host application's name, as users know it.
    """
    # templates.py imports this module for the kinds, so it is imported when first needed.
    from tenant2fa.templates import Templates  # noqa: PLC0415

    return Templates.default().render(notification, product=product)


class InMemoryNotifier:
    """Keeps notifications in a list: for tests, demos and single-process apps. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[Notification] = []

    def notify(self, notification: Notification) -> None:
        with self._lock:
            self._sent.append(notification)

    @property
    def sent(self) -> tuple[Notification, ...]:
        with self._lock:
            return tuple(self._sent)

    def for_user(self, user_id: str) -> tuple[Notification, ...]:
        return tuple(n for n in self.sent if n.user_id == user_id)

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()

    def __repr__(self) -> str:
        return f"InMemoryNotifier(<{len(self.sent)} sent>)"
