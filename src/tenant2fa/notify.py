"""Notifications to users about security changes, and the in-memory notifier.

The service hands a :class:`Notification` to the host's :class:`Notifier` *after* the change is
stored; a notifier failure is logged and never undoes the change. Notifications carry facts
(who, which tenant, how many recovery codes are left), never a secret, a code or a link with a
token. :func:`render` turns one into a subject and a plain-text body.
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


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications to users (email, chat...). Called after the change is committed.

    Implementations must be safe to call from several threads. An exception is logged by the
    service and does not undo the security change it reports.
    """

    def notify(self, notification: Notification) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    subject: str
    body: str


def render(notification: Notification, *, product: str = "your account") -> Message:
    """A plain-text subject and body for ``notification``."""
    n = notification
    where = f" in {n.tenant_name or n.tenant_id}" if (n.tenant_name or n.tenant_id) else ""
    if n.kind is NotificationKind.TWO_FACTOR_ENABLED:
        return Message(
            subject=f"Two-factor authentication enabled for {product}",
            body=(
                "You've enabled two-factor authentication for your user. From now on you'll be "
                "asked for a 6-digit code from your authenticator app when you log in.\n\n"
                "If this wasn't you, contact your administrator immediately."
            ),
        )
    if n.kind is NotificationKind.TWO_FACTOR_RESET:
        return Message(
            subject=f"Two-factor authentication reset for {product}",
            body=(
                f"An owner ({n.actor_id}){where} reset two-factor authentication for your user. "
                "You'll be asked to set it up again at your next login.\n\n"
                "If you didn't ask for this, contact your administrator immediately."
            ),
        )
    if n.kind is NotificationKind.TWO_FACTOR_REMOVED:
        return Message(
            subject=f"Two-factor authentication removed for {product}",
            body=(
                "You removed two-factor authentication from your user.\n\n"
                "If this wasn't you, change your password and contact your administrator."
            ),
        )
    if n.kind is NotificationKind.RECOVERY_CODE_USED:
        return Message(
            subject=f"A recovery code was used to log in to {product}",
            body=(
                f"A recovery code was used to log in{where}. You have {n.recovery_codes_left} "
                "recovery codes left.\n\nIf this wasn't you, contact your administrator immediately."
            ),
        )
    if n.kind is NotificationKind.RECOVERY_CODES_REGENERATED:
        return Message(
            subject=f"New recovery codes for {product}",
            body=(
                "New recovery codes were generated for your user; the old ones no longer work.\n\n"
                "If this wasn't you, contact your administrator immediately."
            ),
        )
    retry = (
        f"You can try again after {n.retry_at:%Y-%m-%d %H:%M} UTC."
        if n.retry_at is not None
        else "Ask an owner of your tenant to reset your two-factor authentication."
    )
    return Message(
        subject=f"Too many wrong codes for {product}",
        body=(
            f"Too many wrong two-factor codes were entered for your user{where}. {retry}\n\n"
            "If this wasn't you, someone may know your password: change it."
        ),
    )


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
