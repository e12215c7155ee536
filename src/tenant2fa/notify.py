"""Notifications to users about security changes, and the in-memory notifier.

The service hands a :class:`Notification` to the host's :class:`Notifier` *after* the change is
stored; a notifier failure is logged and never undoes the change. Notifications carry facts
(who, which tenant, how many recovery codes are left), never a secret, a code or a link with a
token. :func:`render` turns one into a subject, a plain-text body and an HTML body, using the
default templates of :mod:`tenant2fa.templates`; :mod:`tenant2fa.smtp` sends them by e-mail.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tenant2fa.notification import Notification, NotificationKind

__all__ = [
    "InMemoryNotifier",
    "Message",
    "Notification",
    "NotificationKind",
    "Notifier",
    "render",
]


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
